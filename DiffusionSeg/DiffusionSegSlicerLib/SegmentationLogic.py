"""One segmentation job from volume node to segmentation node, without Qt.

start(): export the input through a storage node, write the request, start the worker.
processEvents(): called by the widget's QTimer (or a test loop); forwards progress and log
events and, once the worker has exited, imports the result or reports the failure.
The temporary folder is removed in every outcome.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

from DiffusionSegLib.errors import EXIT_CANCELLED

from .JobSettings import JobSettings, buildJobRequest
from .SegmentationImport import SegmentationImporter
from .Signal import Signal
from .VolumeIO import checkInputVolume, exportVolume, roiToIjkBox
from .Worker import WorkerLauncher


class JobFailed(Exception):
    """A job that ended without a result; message and hint are meant for the user."""

    def __init__(self, code: str, message: str, hint: str | None = None, exitCode: int | None = None):
        super().__init__(message)
        self.code, self.message, self.hint, self.exitCode = code, message, hint, exitCode

    def __str__(self) -> str:
        return f"{self.message}\n{self.hint}" if self.hint else self.message


class SegmentationJob:
    IDLE, RUNNING, SUCCEEDED, FAILED, CANCELLED = "idle", "running", "succeeded", "failed", "cancelled"

    def __init__(self, scene, settings: JobSettings, inputVolumeNode, roiNode=None,
                 targetSegmentationNode=None, launcher: WorkerLauncher | None = None,
                 importer: SegmentationImporter | None = None, methodInfo=None,
                 temporaryRoot: str | None = None):
        self.scene = scene
        self.settings = settings
        self.inputVolumeNode = inputVolumeNode
        self.roiNode = roiNode
        self.targetSegmentationNode = targetSegmentationNode
        self.launcher = launcher or WorkerLauncher(settings.pythonInterpreter)
        self.importer = importer or SegmentationImporter()
        self.methodInfo = methodInfo
        self.temporaryRoot = temporaryRoot
        self.progress = Signal("stage", "done", "total", "elapsed")
        self.log = Signal("level", "message")
        self.finished = Signal("job")
        self.state = self.IDLE
        self.error: JobFailed | None = None
        self.segmentationNode = None
        self.segmentIds: list[str] = []
        self.workDir: str | None = None
        self.process = None
        self._result: dict | None = None
        self._errorEvent: dict | None = None
        self._startTime = 0.0
        self._endTime: float | None = None

    @property
    def elapsed(self) -> float:
        if not self._startTime:
            return 0.0
        return (self._endTime or time.monotonic()) - self._startTime

    def isRunning(self) -> bool:
        return self.state == self.RUNNING

    # -- start -----------------------------------------------------------------------------------

    def start(self) -> None:
        """Prepare the files and start the worker. Raises (with the scene untouched) when the
        inputs are not usable; returns at once, the worker runs on."""
        checkInputVolume(self.inputVolumeNode)
        roiIjk = roiToIjkBox(self.roiNode, self.inputVolumeNode) if self.roiNode is not None else None
        self._startTime = time.monotonic()
        self.workDir = tempfile.mkdtemp(prefix="DiffusionSeg-", dir=self.temporaryRoot)
        try:
            inputPath = os.path.join(self.workDir, "input.nrrd")
            outputPath = os.path.join(self.workDir, "output.nrrd")
            requestPath = os.path.join(self.workDir, "request.json")
            request = buildJobRequest(self.settings, inputPath, outputPath, roiIjk, self.methodInfo)
            self.log.emit("info", f"Exporting '{self.inputVolumeNode.GetName()}'.")
            exportVolume(self.inputVolumeNode, inputPath)
            request.save(requestPath)
            self.process = self.launcher.runCommand(requestPath, self.settings.device)
            self.log.emit("info", "Worker: " + " ".join(self.process.command))
            self.log.emit("debug", "Settings: " + self.settings.toJson())
            self.process.start()
        except BaseException:
            self._removeWorkDir()
            raise
        self.state = self.RUNNING

    # -- running ---------------------------------------------------------------------------------

    def processEvents(self) -> bool:
        """Forward new events; finish the job once the worker has exited. True while running."""
        if self.state != self.RUNNING:
            return False
        for event in self.process.readEvents():
            self._handleEvent(event)
        if self.process.isFinished():
            for event in self.process.readEvents():
                self._handleEvent(event)
            self._finish(self.process.returnCode)
        return self.state == self.RUNNING

    def cancel(self) -> None:
        """End the whole worker process tree; the job finishes as CANCELLED on the next
        processEvents() and leaves the scene unchanged."""
        if self.state == self.RUNNING:
            self.log.emit("info", "Cancelling…")
            self.process.cancel()

    def waitForFinished(self, timeout: float | None = None, pollInterval: float = 0.05) -> str:
        """Blocking loop for scripts, tests and the self-test (never used by the GUI)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.processEvents():
            if deadline is not None and time.monotonic() > deadline:
                self.cancel()
                deadline = None
            time.sleep(pollInterval)
        return self.state

    def _handleEvent(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "progress":
            self.progress.emit(str(event.get("stage", "")), int(event.get("done", 0)),
                               int(event.get("total", 0)), float(event.get("elapsed", self.elapsed)))
        elif kind == "log":
            self.log.emit(str(event.get("level", "info")), str(event.get("message", "")))
        elif kind == "result":
            self._result = event
        elif kind == "error":
            self._errorEvent = event
            self.log.emit("error", str(event.get("message", "")))

    def _finish(self, returnCode: int | None) -> None:
        self._endTime = time.monotonic()
        try:
            if self.process.cancelRequested or returnCode == EXIT_CANCELLED:
                self.state = self.CANCELLED
                self.log.emit("info", "Cancelled; the scene was not changed.")
            elif returnCode == 0 and self._result is not None:
                self._importResult()
                self.state = self.SUCCEEDED
            else:
                self.error = self._failure(returnCode)
                self.state = self.FAILED
        except Exception as exc:  # import failures: scene already restored by the importer
            self.error = exc if isinstance(exc, JobFailed) else JobFailed("import_failed", str(exc))
            self.state = self.FAILED
        finally:
            self._removeWorkDir()
        self.finished.emit(self)

    def _failure(self, returnCode: int | None) -> JobFailed:
        if self._errorEvent is not None:
            return JobFailed(str(self._errorEvent.get("code", "error")), str(self._errorEvent.get("message", "")),
                             self._errorEvent.get("hint"), returnCode)
        tail = self.process.stderrTail(15)
        if returnCode == 0:
            return JobFailed("no_result", "The worker finished without reporting a result.", tail or None, 0)
        return JobFailed("worker_crashed", f"The worker stopped unexpectedly (exit code {returnCode}).",
                         tail or None, returnCode)

    def _importResult(self) -> None:
        outputPath = os.path.join(self.workDir, "output.nrrd")   # ours, whatever the event says
        names = {}
        for segment in self._result.get("segments") or []:
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

    def _removeWorkDir(self) -> None:
        if self.workDir and os.path.isdir(self.workDir):
            shutil.rmtree(self.workDir, ignore_errors=True)
