"""One segmentation job from volume node to segmentation node, without Qt.

start(): export the input through a storage node, write the request, start the worker.
processEvents(): called by the widget's QTimer (or a test loop); forwards progress and log
events and, once the worker has exited, imports the result or reports the failure.
The temporary folder is removed in every outcome.
"""

from __future__ import annotations

import os

from .JobSettings import JobSettings, buildJobRequest
from .SegmentationImport import SegmentationImporter
from .VolumeIO import checkInputVolume, exportVolume, roiToIjkBox
from .Worker import WorkerLauncher
from .WorkerJob import WorkerJob


class SegmentationJob(WorkerJob):
    cancelledMessage = "Cancelled; the scene was not changed."
    successFailureCode = "import_failed"

    def __init__(self, scene, settings: JobSettings, inputVolumeNode, roiNode=None,
                 targetSegmentationNode=None, launcher: WorkerLauncher | None = None,
                 importer: SegmentationImporter | None = None, methodInfo=None,
                 temporaryRoot: str | None = None):
        super().__init__(temporaryRoot)
        self.scene = scene
        self.settings = settings
        self.inputVolumeNode = inputVolumeNode
        self.roiNode = roiNode
        self.targetSegmentationNode = targetSegmentationNode
        self.launcher = launcher or WorkerLauncher(settings.pythonInterpreter)
        self.importer = importer or SegmentationImporter()
        self.methodInfo = methodInfo
        self.segmentationNode = None
        self.segmentIds: list[str] = []

    # -- start -----------------------------------------------------------------------------------

    def checkInputs(self):
        """The ROI as an IJK box (or None); raises for an unusable input volume."""
        checkInputVolume(self.inputVolumeNode)
        return roiToIjkBox(self.roiNode, self.inputVolumeNode) if self.roiNode is not None else None

    def _createProcess(self, roiIjk):
        request = self._prepareRequest(roiIjk)
        requestPath = os.path.join(self.workDir, "request.json")
        request.save(requestPath)
        return self.launcher.runCommand(requestPath, self.settings.device)

    def _prepareRequest(self, roiIjk):
        """Export the input volume into the job folder; returns the request that reads it (shared
        with the server-backed job, ServiceJob.py)."""
        inputPath = os.path.join(self.workDir, "input.nrrd")
        outputPath = os.path.join(self.workDir, "output.nrrd")
        request = buildJobRequest(self.settings, inputPath, outputPath, roiIjk, self.methodInfo)
        self.log.emit("info", f"Exporting '{self.inputVolumeNode.GetName()}'.")
        exportVolume(self.inputVolumeNode, inputPath)
        self.log.emit("debug", "Settings: " + self.settings.toJson())
        return request

    def _onSuccess(self) -> None:
        outputPath = os.path.join(self.workDir, "output.nrrd")   # ours, whatever the event says
        names = {}
        for segment in self.result.get("segments") or []:
            try:
                names[int(segment["label"])] = str(segment.get("name") or "")
            except (KeyError, TypeError, ValueError):
                continue
        fallback = self.settings.prompt.strip() or self.settings.method
        names = {label: name or fallback for label, name in names.items()} or {1: fallback}
        nodeName = f"{self.inputVolumeNode.GetName()} {fallback}"
        self.segmentationNode, self.segmentIds = self.importer.importLabelmap(
            self.scene, outputPath, self.inputVolumeNode, names, self.targetSegmentationNode, nodeName)
        if self.segmentationNode is None:
            self.log.emit("warning", "The model found nothing to segment; no segmentation was added.")
            return
        self.log.emit("info", f"Imported {len(self.segmentIds)} segment(s) into "
                              f"'{self.segmentationNode.GetName()}' in {self.elapsed:.1f} s.")
