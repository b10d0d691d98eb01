"""The life cycle every background job shares, without Qt: a worker process speaking the job
contract, its events turned into signals, cancel, and the end-of-job bookkeeping.

A subclass checks its inputs in `checkInputs()`, writes its files and builds the worker process
in `_createProcess()`, and turns a successful result into scene changes or files in
`_onSuccess()`. Everything else — polling, cancel, errors,
removing the temporary folder in every outcome — is here, once.
"""

from __future__ import annotations

import json
import signal
import time

from DiffusionSegLib.api import EXIT_CANCELLED

from .Signal import Signal
from .TempFolders import createWorkDir, registerJob, removeWorkDir


class JobFailed(Exception):
    """A job that ended without a result; message and hint are meant for the user."""

    def __init__(self, code: str, message: str, hint: str | None = None, exitCode: int | None = None):
        super().__init__(message)
        self.code, self.message, self.hint, self.exitCode = code, message, hint, exitCode

    def __str__(self) -> str:
        return f"{self.message}\n{self.hint}" if self.hint else self.message


class WorkerJob:
    IDLE, RUNNING, SUCCEEDED, FAILED, CANCELLED = "idle", "running", "succeeded", "failed", "cancelled"
    cancelledMessage = "Cancelled; nothing was changed."
    workDirPrefix = "DiffusionSeg-"
    successFailureCode = "output_failed"   # error code when _onSuccess itself fails

    def __init__(self, temporaryRoot: str | None = None):
        self.temporaryRoot = temporaryRoot
        self.progress = Signal("stage", "done", "total", "elapsed")
        self.log = Signal("level", "message")
        self.finished = Signal("job")
        self.state = self.IDLE
        self.error: JobFailed | None = None
        self.result: dict | None = None       # the worker's result event
        self.warnings: list[str] = []         # the worker's warning events (e.g. an empty result)
        self.workDir: str | None = None
        self.process = None
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

    def checkInputs(self):
        """Raise (ValueError, JobFailed) for inputs that cannot work; return what
        `_createProcess` needs. Runs before anything is written."""
        raise NotImplementedError

    def _createProcess(self, checked):
        """Write the job's files into `self.workDir` and return the (not yet started) worker."""
        raise NotImplementedError

    def _onSuccess(self) -> None:
        """Use `self.result` and the files in `self.workDir` (runs before the folder is removed)."""
        raise NotImplementedError

    def _onPartial(self, event: dict) -> None:
        """A `partial` event (finished slices while the job runs); jobs that show them override."""

    def _release(self) -> None:
        """Remove what the job showed while running (its preview); called in every outcome."""

    def start(self) -> None:
        """Check the inputs, prepare the files and start the worker; returns at once. Raises with
        no process started, no file left behind and the scene unchanged when inputs are unusable."""
        checked = self.checkInputs()
        self._startTime = time.monotonic()
        self.workDir = createWorkDir(self.workDirPrefix, self.temporaryRoot)
        registerJob(self)
        try:
            self.process = self._createProcess(checked)
            self.log.emit("info", "Worker: " + " ".join(_shortArgument(a) for a in self.process.command))
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
            self._handleEventSafely(event)
        if self.process.isFinished():
            for event in self.process.readEvents():
                self._handleEventSafely(event)
            self._finish(self.process.returnCode)
        return self.state == self.RUNNING

    def abandon(self, timeout: float = 2.0) -> None:
        """Slicer is closing: stop the worker tree (SIGTERM, kill after `timeout`), wait for it
        and remove the temporary folder, whatever state the job is in."""
        if self.state == self.RUNNING and self.process is not None:
            self.process.cancel(gracePeriod=timeout)
            self.process.wait(timeout + 1.0)
            self.state = self.CANCELLED
        self._release()
        self._removeWorkDir()

    def cancel(self) -> None:
        """End the whole worker process tree; the job finishes as CANCELLED on the next
        processEvents(), leaving scene and output as they were."""
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

    def _handleEventSafely(self, event: dict) -> None:
        """One malformed event is logged and skipped; the events around it still count."""
        try:
            self._handleEvent(event)
        except (TypeError, ValueError, AttributeError, KeyError, OverflowError) as exc:
            self.log.emit("warning", f"Skipped a malformed event from the worker ({exc}): "
                                     f"{json.dumps(event, default=str)[:300]}")

    def _handleEvent(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "progress":
            self.progress.emit(str(event.get("stage", "")), int(event.get("done", 0)),
                               int(event.get("total", 0)), float(event.get("elapsed", self.elapsed)))
        elif kind == "log":
            self.log.emit(str(event.get("level", "info")), str(event.get("message", "")))
        elif kind == "warning":
            self.warnings.append(str(event.get("message", "")))
            self.log.emit("warning", self.warnings[-1])
        elif kind == "partial":
            self._onPartial(event)
        elif kind == "result":
            self.result = event
        elif kind == "error":
            self._errorEvent = event
            self.log.emit("error", str(event.get("message", "")))

    def _finish(self, returnCode: int | None) -> None:
        self._endTime = time.monotonic()
        try:
            self._release()   # the preview goes first: the result (if any) replaces it
            if self.process.cancelRequested or returnCode == EXIT_CANCELLED:
                self.state = self.CANCELLED
                self.log.emit("info", self.cancelledMessage)
            elif returnCode == 0 and self.result is not None:
                self._onSuccess()
                self.state = self.SUCCEEDED
            else:
                self.error = self._failure(returnCode)
                self.state = self.FAILED
        except Exception as exc:  # _onSuccess leaves the scene/output as it was when it fails
            self.error = exc if isinstance(exc, JobFailed) else JobFailed(self.successFailureCode, str(exc))
            self.state = self.FAILED
        finally:
            self._removeWorkDir()
        self.finished.emit(self)

    def _failure(self, returnCode: int | None) -> JobFailed:
        if self._errorEvent is not None:
            return JobFailed(str(self._errorEvent.get("code", "error")), str(self._errorEvent.get("message", "")),
                             self._errorEvent.get("hint"), returnCode)
        tail = self.process.stderrTail(60)
        if returnCode == 0:
            return JobFailed("no_result", "The worker finished without reporting a result.",
                             crashHint(returnCode, tail), 0)
        return JobFailed("worker_crashed", crashMessage(returnCode), crashHint(returnCode, tail), returnCode)

    def _removeWorkDir(self) -> None:
        removeWorkDir(self.workDir)


def crashMessage(returnCode: int | None) -> str:
    if returnCode is not None and returnCode < 0:
        try:
            name = signal.Signals(-returnCode).name
        except ValueError:
            name = f"signal {-returnCode}"
        return f"The worker was killed ({name})."
    return f"The worker stopped unexpectedly (exit code {returnCode})."


def crashHint(returnCode: int | None, stderrTail: str) -> str | None:
    """What explains a crash: the worker's last traceback, if it printed one. A worker killed by
    a signal printed nothing about it, so its last stderr line (a library warning, say) would be
    a false lead; it gets the usual causes instead."""
    lines = stderrTail.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")]
    if starts:
        return "\n".join(lines[starts[-1]:][-20:])
    if returnCode is not None and returnCode < 0:
        return ("Nothing was written. A killed worker is most often the system running out of memory "
                "(try a smaller batch size or the CPU) or another program ending it.")
    if returnCode not in (None, 0) and lines:
        return "Last lines the worker printed:\n" + "\n".join(lines[-5:])
    return None


def _shortArgument(argument: str) -> str:
    """The log shows the command line; the bootstrap code is long and always the same."""
    return argument if len(argument) <= 120 else argument[:60] + "…"
