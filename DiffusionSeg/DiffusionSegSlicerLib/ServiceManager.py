"""The panel's warm worker: a local `serve` process started on first use, or a remote server.

Local: the first Apply starts `<worker python> -m DiffusionSegLib serve` with the same
interpreter choice as one-shot jobs, a random token in a 0600 file of a private temporary
folder, the temporary root as the only --allow-root (the panel exports volumes there), and
--exit-with-parent so a crashed Slicer never leaves it behind. Later jobs reuse it (the model
stays loaded). If it died, the next job says so and starts a new one. `stop()` ends it (the
Stop button, module cleanup, Slicer exit).

Remote: a URL and token typed by the user; the volume is uploaded, so it is used only after
the user has agreed to send images to that host (`consentText`).

No Qt and no torch here; the HTTP client is DiffusionSegLib.serve.client (standard library only).
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass

from DiffusionSegLib.api import ServiceClient, ServiceError

from .Process import WorkerProcess
from .Signal import Signal

MODES = ("local", "remote", "off")  # off: one worker process per job (the one-shot `run` path)


@dataclass
class ServiceSettings:
    mode: str = "local"
    remoteUrl: str = ""
    remoteToken: str = ""
    remoteConsent: bool = False   # the user agreed that volumes are uploaded to remoteUrl

    @property
    def enabled(self) -> bool:
        return self.mode in ("local", "remote")


def consentText(url: str) -> str:
    """The line the user agrees to before anything is uploaded."""
    host = urllib.parse.urlparse(url).hostname or url or "the remote server"
    return (f"The input volume (pixels and geometry, no patient name) is uploaded to {host} for every "
            f"segmentation, and the result is downloaded from it.")


class ServiceManager:
    def __init__(self, temporaryRoot: str | None = None, startTimeout: float = 300.0):
        self.temporaryRoot = temporaryRoot
        self.startTimeout = startTimeout
        self.log = Signal("level", "message")
        self._lock = threading.RLock()
        self._process: WorkerProcess | None = None
        self._launcherKey = None
        self._ready: dict | None = None
        self._token = ""
        self._tokenDir: str | None = None
        self._stopping = False
        self.restarts = 0
        # Folders whose models the local server may load. None: any (this server is the panel's
        # own, loopback with its token in a 0600 file, and loads what the user picks, as a
        # one-shot worker would); the browser app gives its --allow-root folders instead.
        self.modelRoots: list[str] | None = None
        atexit.register(self.stop)

    # -- connecting ----------------------------------------------------------------------------

    def connect(self, launcher, settings: ServiceSettings, timeout: float | None = None) -> tuple[ServiceClient, bool]:
        """(client, upload): a client of the server the settings name, started and ready. Blocks
        while a local server starts (call it from a worker thread, not the GUI)."""
        if settings.mode == "remote":
            return self.remoteClient(settings), True
        return ServiceClient(self.ensureLocal(launcher, timeout), self._token), False

    @staticmethod
    def remoteClient(settings: ServiceSettings) -> ServiceClient:
        url = settings.remoteUrl.strip()
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"The remote server URL {url!r} is not an http(s) address, e.g. https://gpu-host:8765.")
        if not settings.remoteConsent:
            raise ValueError("Agree to send the volume to the remote server first: " + consentText(url))
        if not settings.remoteToken.strip():
            raise ValueError("The remote server needs its access token (printed in its token file).")
        return ServiceClient(url, settings.remoteToken.strip())

    def ensureLocal(self, launcher, timeout: float | None = None) -> str:
        """The URL of a ready local server for this interpreter, starting one if needed."""
        key = (launcher.executable, launcher.isExternal)
        with self._lock:
            if self._process is not None and self._process.isRunning() and self._launcherKey == key:
                if self._ready is None:
                    self._waitReady(timeout)
                return self._ready["url"]
            if self._process is not None and not self._process.isRunning() and not self._stopping:
                self.restarts += 1
                tail = self._process.stderrTail(5)
                self.log.emit("warning", f"The local DiffusionSeg server stopped unexpectedly (exit code "
                                         f"{self._process.returnCode}); starting it again. The warm model is lost, "
                                         f"so this job loads it once more." + (f"\n{tail}" if tail else ""))
            elif self._process is not None and self._launcherKey != key:
                self.log.emit("info", "The worker Python changed; restarting the local DiffusionSeg server.")
            self._stopLocked()
            self._start(launcher, key)
            self._waitReady(timeout)
            return self._ready["url"]

    def _start(self, launcher, key) -> None:
        self._stopping = False
        self._tokenDir = tempfile.mkdtemp(prefix="DiffusionSeg-server-", dir=self.temporaryRoot)
        tokenFile = os.path.join(self._tokenDir, "token")
        self._token = secrets.token_urlsafe(32)
        handle = os.open(tokenFile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(self._token + "\n")
        allowRoot = os.path.realpath(self.temporaryRoot or tempfile.gettempdir())
        modelRoots = [os.path.abspath(os.sep)] if self.modelRoots is None else self.modelRoots
        command = launcher.command("serve", "--token-file", tokenFile, "--allow-root", allowRoot,
                                   *(arg for root in modelRoots for arg in ("--allow-model-root", root)),
                                   "--exit-with-parent", str(os.getpid()))
        self._process = WorkerProcess(command, env=launcher.environment("auto"), cwd=self._tokenDir)
        self._launcherKey = key
        self._ready = None
        self.log.emit("info", "Starting the local DiffusionSeg server (once per session; the model then stays loaded).")
        self._process.start()

    def _waitReady(self, timeout: float | None) -> None:
        deadline = time.monotonic() + (timeout or self.startTimeout)
        while time.monotonic() < deadline:
            for event in self._process.readEvents():
                if event.get("event") == "ready":
                    self._ready = event
                    self.log.emit("info", f"DiffusionSeg server ready at {event['url']} (pid {event.get('pid')}).")
                    return
            if not self._process.isRunning():
                tail = self._process.stderrTail(15)
                raise ServiceError("server_failed", f"The local DiffusionSeg server could not start (exit code "
                                                    f"{self._process.returnCode}).", tail or None)
            time.sleep(0.05)
        self._stopLocked()
        raise ServiceError("server_timeout", "The local DiffusionSeg server did not start in time.",
                           "Check the worker Python (Advanced > Check), or try again.")

    # -- state and stopping ----------------------------------------------------------------------

    @property
    def isRunning(self) -> bool:
        return self._process is not None and self._process.isRunning()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.isRunning else None

    @property
    def url(self) -> str | None:
        return self._ready["url"] if self._ready and self.isRunning else None

    def health(self, settings: ServiceSettings | None = None, timeout: float = 2.0) -> dict | None:
        """The server's /v1/health (model loaded, device, memory), or None when none answers."""
        try:
            if settings is not None and settings.mode == "remote":
                client = ServiceClient(settings.remoteUrl.strip(), timeout=timeout)
            elif self.url:
                client = ServiceClient(self.url, timeout=timeout)
            else:
                return None
            return client.health()
        except (ServiceError, ValueError):
            return None

    def stop(self) -> None:
        """End the local server (SIGTERM: it cancels its job and deletes its files; killed after a
        grace period) and remove its token. Does not wait for a server that is still starting
        (the job waiting for it then fails with "could not start"), so the GUI never blocks here."""
        self._stopLocked()

    def _stopLocked(self) -> None:
        self._stopping = True
        if self._process is not None and self._process.isRunning():
            self._process.cancel(gracePeriod=5.0)
            self._process.wait(10.0)
        self._ready = None
        if self._tokenDir:
            shutil.rmtree(self._tokenDir, ignore_errors=True)
            self._tokenDir = None


def describeHealth(health: dict | None) -> str:
    """One line for the panel: device, warm models and memory."""
    if not health:
        return "Server: not running."
    device = health.get("device", {})
    name = device.get("cuda_name") or device.get("default", "?")
    models = health.get("models") or []
    warm = ", ".join(os.path.basename(str(m.get("key", ["?"])[0]).split("#")[0]) for m in models) or "no model loaded"
    memory = health.get("memory", {})
    parts = [f"Server: {name}", warm, f"worker RAM {memory.get('process_rss_bytes', 0) / 2**30:.1f} GB"]
    if "gpu_free_bytes" in device:
        parts.append(f"GPU free {device['gpu_free_bytes'] / 2**30:.1f} GB")
    if health.get("running"):
        parts.append(f"busy, {health.get('queued', 0)} queued")
    return " · ".join(parts)
