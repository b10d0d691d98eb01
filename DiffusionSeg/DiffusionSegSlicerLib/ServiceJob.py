"""A segmentation job run by the warm server instead of a new worker process.

`ServiceJobProcess` has the interface of `Process.WorkerProcess` (start, readEvents,
isFinished, returnCode, cancel, stderrTail), so `WorkerJob`'s life cycle — polling, cancel,
errors, import, temporary folder removal — is shared unchanged. Its thread connects to the
server (starting the local one if needed), submits the request (the exported volume by path
for the local server, uploaded for a remote one), forwards the events, downloads the labelmap
and every bundle file the result lists (evidence, proposals, scores…) into the job's folder, under
the names the one-shot job's worker writes, so `SegmentationJob._onSuccess` imports the evidence
and sets up re-selection exactly as for a one-shot job; then it tells the server to forget the
job (its copy is deleted).
"""

from __future__ import annotations

import ntpath
import queue
import threading

from DiffusionSegLib.api import EXIT_CANCELLED, ServiceError

from .Process import WorkerProcess
from .SegmentationLogic import SegmentationJob, listedBundlePaths


class ServiceJobProcess:
    def __init__(self, connect, request: dict, inputPath: str, outputPath: str):
        self.command = ["DiffusionSeg server job"]
        self.cancelRequested = False
        self._connect, self._request = connect, request
        self._inputPath, self._outputPath = inputPath, outputPath
        self._events: queue.Queue = queue.Queue()
        self._done = threading.Event()
        self._returnCode: int | None = None
        self._client = None
        self._jobId: str | None = None
        self._errorText = ""
        self._thread = threading.Thread(target=self._run, name="DiffusionSeg-service-job", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def isRunning(self) -> bool:
        return self._thread.is_alive()

    def isFinished(self) -> bool:
        return self._done.is_set()

    @property
    def returnCode(self) -> int | None:
        return self._returnCode

    readEvents = WorkerProcess.readEvents  # the same non-blocking drain of self._events

    def stderrTail(self, lines: int = 30) -> str:
        return self._errorText

    def wait(self, timeout: float | None = None) -> int | None:
        self._done.wait(timeout)
        return self._returnCode

    def cancel(self, gracePeriod: float = 3.0) -> None:
        """Ask the server to cancel (it stops within a UNet block); returns at once."""
        self.cancelRequested = True
        client, jobId = self._client, self._jobId
        if client is not None and jobId is not None:
            threading.Thread(target=self._cancelQuietly, args=(client, jobId), daemon=True).start()

    @staticmethod
    def _cancelQuietly(client, jobId) -> None:
        try:
            client.cancel(jobId)
        except ServiceError:
            pass  # the job may have ended meanwhile

    # -- the thread ------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._returnCode = self._follow()
        except (ServiceError, ValueError) as error:
            self._errorText = str(error)
            self._events.put({"event": "error", "code": getattr(error, "code", "invalid_request"),
                              "message": getattr(error, "message", str(error)), "hint": getattr(error, "hint", None)})
            self._returnCode = EXIT_CANCELLED if self.cancelRequested else 1
        except Exception as error:  # noqa: BLE001 - the job must end, whatever happened
            self._errorText = f"{type(error).__name__}: {error}"
            self._events.put({"event": "error", "code": "internal", "message": self._errorText})
            self._returnCode = 1
        finally:
            self._done.set()

    def _follow(self) -> int:
        client, upload = self._connect()
        self._client = client
        if self.cancelRequested:
            return EXIT_CANCELLED
        request = dict(self._request)
        if upload:
            request.pop("input", None)
            self._events.put({"event": "log", "level": "info", "message": f"Uploading the volume to {client.url}."})
        self._jobId = client.submit(request, image=self._inputPath if upload else None)
        if self.cancelRequested:
            self._cancelQuietly(client, self._jobId)
        for event in client.events(self._jobId):
            kind = event.get("event")
            if kind == "queued":
                if event.get("position"):
                    self._events.put({"event": "log", "level": "info",
                                      "message": f"Waiting for the server: {event['position']} job(s) ahead."})
                continue
            if kind == "result":
                client.download(self._jobId, self._outputPath, overwrite=True)
                self._downloadBundle(client, event.get("outputs"))
                self._events.put(event)
                self._cancelQuietly(client, self._jobId)  # finished: the server deletes its copy
                return 0
            self._events.put(event)
            if kind == "error":
                return EXIT_CANCELLED if event.get("code") == "cancelled" else 1
        raise ServiceError("disconnected", "The connection to the DiffusionSeg server ended before the job did.",
                           "If the local server crashed, the next Apply starts it again.")

    def _downloadBundle(self, client, outputs) -> None:
        """Each listed bundle file, by the plain file name the server gave it (its path may be a
        Windows or POSIX one; the server serves only names of the job's own files)."""
        for name, destination in listedBundlePaths(self._outputPath, outputs).items():
            serverName = ntpath.basename(str(outputs[name]))  # ntpath splits on both / and \\
            client.download(self._jobId, destination, name=serverName, overwrite=True)


class ServiceSegmentationJob(SegmentationJob):
    """SegmentationJob whose worker is the warm server (`ServiceManager`)."""

    def __init__(self, *args, serviceManager=None, serviceSettings=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.serviceManager = serviceManager
        self.serviceSettings = serviceSettings

    def checkInputs(self):
        if self.serviceSettings.mode == "remote":  # URL, token and consent before anything is exported
            self.serviceManager.remoteClient(self.serviceSettings)
        return super().checkInputs()

    def _createProcess(self, roiIjk):
        request = self._prepareRequest(roiIjk)
        manager, settings, launcher = self.serviceManager, self.serviceSettings, self.launcher
        return ServiceJobProcess(lambda: manager.connect(launcher, settings), request.to_dict(),
                                 request.input, request.output)
