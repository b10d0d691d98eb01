"""The module logic: method metadata and job creation. Usable from the Python console:

    logic = DiffusionSegLogic(slicer.mrmlScene)
    job = logic.createJob(JobSettings(method="adzus", prompt="liver"), volumeNode)
    job.start(); job.waitForFinished()
"""

from __future__ import annotations

import logging

from .FineTuneLogic import FineTuneJob, FineTuneSettings
from .JobSettings import JobSettings
from .SegmentationImport import SegmentationImporter
from .SegmentationLogic import SegmentationJob
from .ServiceJob import ServiceSegmentationJob
from .ServiceManager import ServiceManager, ServiceSettings
from .TempFolders import removeOrphanedWorkDirs
from .Worker import WorkerLauncher
from .WorkerSettings import WorkerPythonSettings


def methodCatalog() -> dict:
    """name -> MethodInfo of every backend method (metadata only: no torch is imported)."""
    try:
        from DiffusionSegLib.api import available_methods

        return {name: cls.info for name, cls in available_methods().items()}
    except Exception as exc:  # a broken method module must not break the panel
        logging.error(f"DiffusionSeg: could not read the method list: {exc}")
        return {}


def intensityPresets() -> dict:
    """name -> label of the backend's intensity presets (data/intensity_presets.json)."""
    try:
        from DiffusionSegLib.api import presets

        return {name: preset.get("label", name) for name, preset in presets().items()}
    except Exception as exc:
        logging.error(f"DiffusionSeg: could not read the intensity presets: {exc}")
        return {"auto": "Automatic"}


class DiffusionSegLogic:
    def __init__(self, scene, temporaryRoot: str | None = None, cleanEnvironment: dict | None = None,
                 importer: SegmentationImporter | None = None, workerSettings: WorkerPythonSettings | None = None):
        self.scene = scene
        self.temporaryRoot = temporaryRoot
        self.cleanEnvironment = cleanEnvironment
        self.importer = importer or SegmentationImporter()
        self.workerSettings = workerSettings or WorkerPythonSettings()
        self._methods = None
        removeOrphanedWorkDirs(temporaryRoot)   # what a killed Slicer left behind
        # The warm server (ServiceManager.py): "off" here keeps the one-shot `run` process per job
        # for scripts and tests; the panel switches it to its stored choice (default: local).
        self.serviceSettings = ServiceSettings(mode="off")
        self._serviceManager = None

    @property
    def serviceManager(self) -> ServiceManager:
        if self._serviceManager is None:
            self._serviceManager = ServiceManager(self.temporaryRoot)
        return self._serviceManager

    def stopService(self) -> None:
        if self._serviceManager is not None:
            self._serviceManager.stop()

    @property
    def methods(self) -> dict:
        if self._methods is None:
            self._methods = methodCatalog()
        return self._methods

    @staticmethod
    def intensityPresets() -> dict:
        return intensityPresets()

    def launcher(self, settings: JobSettings) -> WorkerLauncher:
        """The worker for these settings: the per-user worker Python, or another path only after
        the user confirmed it (WorkerSettings.py)."""
        return self.launcherFor(settings.pythonInterpreter)

    def launcherFor(self, pythonInterpreter: str = "") -> WorkerLauncher:
        return WorkerLauncher(self.workerSettings.resolve(pythonInterpreter), cleanEnvironment=self.cleanEnvironment)

    def createJob(self, settings: JobSettings, inputVolumeNode, roiNode=None,
                  targetSegmentationNode=None) -> SegmentationJob:
        info = self.methods.get(settings.method)
        if info is None:
            known = ", ".join(self.methods) or "none installed"
            raise ValueError(f"Unknown method '{settings.method}' (available: {known}).")
        arguments = dict(launcher=self.launcher(settings), importer=self.importer, methodInfo=info,
                         temporaryRoot=self.temporaryRoot)
        if self.serviceSettings.enabled:
            return ServiceSegmentationJob(self.scene, settings, inputVolumeNode, roiNode, targetSegmentationNode,
                                          serviceManager=self.serviceManager, serviceSettings=self.serviceSettings,
                                          **arguments)
        return SegmentationJob(self.scene, settings, inputVolumeNode, roiNode, targetSegmentationNode, **arguments)

    def createFineTuneJob(self, settings: FineTuneSettings, volumeNode, segmentationNode,
                          segmentIds=None) -> FineTuneJob:
        """Learning from corrections: fine-tune an SDSeg checkpoint on the volume and its
        corrected segmentation (default: its visible segments as foreground)."""
        return FineTuneJob(self.scene, settings, volumeNode, segmentationNode, segmentIds,
                           launcher=self.launcherFor(settings.pythonInterpreter),
                           temporaryRoot=self.temporaryRoot)

    def segment(self, settings: JobSettings, inputVolumeNode, roiNode=None, targetSegmentationNode=None,
                timeout: float | None = None) -> SegmentationJob:
        """Run a job to the end (blocking; for scripts and tests). Raises JobFailed on failure."""
        job = self.createJob(settings, inputVolumeNode, roiNode, targetSegmentationNode)
        job.start()
        job.waitForFinished(timeout)
        if job.error is not None:
            raise job.error
        return job
