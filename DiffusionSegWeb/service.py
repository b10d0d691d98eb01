"""The app's connection to a DiffusionSeg `serve`: a local one it starts, or a remote one it is given.

The token stays in this process: it is read from the token file (or generated for the local
service) and only ever sent to the service, never put in the page state. A local service is
started with the same Python as the app, confined to the app's private folder (`--allow-root`),
and stopped when the app exits.
"""

from __future__ import annotations

import atexit
import json
import secrets
import subprocess
import sys
import threading
from pathlib import Path

READY_TIMEOUT_S = 300.0


class ServiceUnavailable(RuntimeError):
    """The service could not be started or reached; the message says what to check."""


def readToken(path: str | Path) -> str:
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ServiceUnavailable(f"Cannot read the service token file {path}: {exc.strerror}.") from exc
    if not token:
        raise ServiceUnavailable(f"The service token file {path} is empty.")
    return token


def connect(url: str, token: str):
    """A client of the service at `url` (DiffusionSegLib's own stdlib client)."""
    from DiffusionSegLib.client import ServiceClient

    return ServiceClient(url, token)


class LocalService:
    """`python -m DiffusionSegLib serve` on 127.0.0.1, port chosen by the OS, a fresh token."""

    def __init__(self, workspace, extraArgs: list[str] | None = None):
        self.workspace = workspace
        self.tokenFile = workspace.root / "service-token"
        token = secrets.token_urlsafe(32)
        self.tokenFile.touch(mode=0o600)
        self.tokenFile.write_text(token, encoding="utf-8")
        command = [sys.executable, "-m", "DiffusionSegLib", "serve", "--host", "127.0.0.1", "--port", "0",
                   "--token-file", str(self.tokenFile), "--allow-root", str(workspace.root), *(extraArgs or [])]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=None, text=True,
                                        stdin=subprocess.DEVNULL)
        atexit.register(self.stop)
        self.url = self._waitReady()
        self.token = token

    def _waitReady(self) -> str:
        ready: dict = {}

        def read():
            for line in self.process.stdout:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict) and event.get("event") == "ready":
                    ready.update(event)
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(READY_TIMEOUT_S)
        if not ready:
            code = self.process.poll()
            self.stop()
            raise ServiceUnavailable("The local DiffusionSeg service did not start "
                                     + (f"(exit code {code}); " if code is not None else "in time; ")
                                     + "see the messages above, or give --server URL --token-file F.")
        # Keep draining stdout so the service never blocks on a full pipe.
        threading.Thread(target=lambda: [None for _ in self.process.stdout], daemon=True).start()
        return ready.get("url") or f"http://127.0.0.1:{ready['port']}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
