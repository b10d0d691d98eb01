"""Mock logic and jobs for the panel tests (SlicerNNUnet's MockSegmentationLogic idea): the
backend's real method metadata and terminology, jobs the test finishes by hand."""

from __future__ import annotations

from unittest.mock import MagicMock

from DiffusionSegSlicerLib.Logic import intensityPresets, methodCatalog
from DiffusionSegSlicerLib.SegmentationImport import SegmentationImporter
from DiffusionSegSlicerLib.ServiceManager import ServiceSettings
from DiffusionSegSlicerLib.Signal import Signal
from DiffusionSegSlicerLib.WorkerJob import WorkerJob


class MockJob:
    """A job the test finishes by hand (the logic's job signals and states)."""

    RUNNING, SUCCEEDED, FAILED, CANCELLED = WorkerJob.RUNNING, WorkerJob.SUCCEEDED, WorkerJob.FAILED, WorkerJob.CANCELLED

    def __init__(self, settings, volume, target=None):
        self.settings, self.inputVolumeNode, self.targetSegmentationNode = settings, volume, target
        self.progress, self.log, self.finished = Signal("progress"), Signal("log"), Signal("job")
        self.partial = Signal("previewNode", "slicesDone")
        self.removed = False
        self.state, self.elapsed, self.cancelled = "idle", 0.0, False
        self.segmentationNode, self.segmentIds, self.warnings, self.error = None, [], [], None
        self.evidenceNodes, self.outputPath = {}, ""
        self.raiseOnPoll = None

    def start(self):
        self.state = self.RUNNING

    def isRunning(self):
        return self.state == self.RUNNING

    def cancel(self):
        self.cancelled = True

    def processEvents(self):
        if self.raiseOnPoll:
            raise self.raiseOnPoll
        return self.isRunning()

    def hasResult(self):
        return self.state == self.SUCCEEDED and bool(self.segmentIds) and not self.removed

    def removeResult(self):
        self.removed = True
        return len(self.segmentIds)

    def finish(self, state, **attributes):
        for name, value in attributes.items():
            setattr(self, name, value)
        self.state = state
        self.finished.emit(self)


class MockLogic:
    """Interfaces.PanelLogic with the backend's real method metadata and a recorded job list."""

    def __init__(self):
        self.methods = methodCatalog()
        self.importer = SegmentationImporter()
        self.workerSettings = MagicMock()
        self.workerSettings.chosenPython.return_value = ""
        self.serviceSettings = ServiceSettings(mode="off")
        self.serviceManager = MagicMock(isRunning=False)
        self.serviceManager.log = Signal("level", "message")
        self.serviceManager.health.return_value = None
        self.jobs, self.fineTuneJobs, self.createError = [], [], None

    def intensityPresets(self):
        return intensityPresets()

    def createJob(self, settings, volume, roi=None, target=None):
        if self.createError:
            raise self.createError
        self.jobs.append(MockJob(settings, volume, target))
        return self.jobs[-1]

    def createFineTuneJob(self, settings, volume, segmentation, segmentIds=None):
        self.fineTuneJobs.append(MockJob(settings, volume))
        return self.fineTuneJobs[-1]

    def launcher(self, settings):
        return MagicMock(checkInterpreter=MagicMock(return_value="Python 3.11, torch 2.13 (CPU)"))

    def stopService(self):
        pass
