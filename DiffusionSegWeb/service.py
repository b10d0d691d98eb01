"""Which DiffusionSeg service the app uses: the Slicer module's own ServiceManager, unchanged.

Local (no --server): `ServiceManager` starts `python -m DiffusionSegLib serve` on 127.0.0.1 on the
first Apply (or at start-up, see `warmUp`) with a random token in a 0600 file, confined to the
app's private folder (--allow-root), restarts it after a crash and stops it on exit. Remote
(--server URL --token-file F): volumes are uploaded to that server; the operator who named it on
the command line has given the consent the Slicer panel asks its user for.

The token stays in this process: it is only ever sent to the service, never put in the page state.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

log = logging.getLogger(__name__)


class ServiceUnavailable(RuntimeError):
    """The service settings cannot work; the message says what to check."""


def readToken(path: str | Path) -> str:
    try:
        token = Path(path).expanduser().read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ServiceUnavailable(f"Cannot read the service token file {path}: {exc.strerror}.") from exc
    if not token:
        raise ServiceUnavailable(f"The service token file {path} is empty.")
    return token


def serviceSettings(url: str | None, tokenFile: str | None):
    from DiffusionSegSlicerLib.ServiceManager import ServiceSettings

    if not url:
        return ServiceSettings(mode="local")
    settings = ServiceSettings(mode="remote", remoteUrl=url, remoteToken=readToken(tokenFile), remoteConsent=True)
    from DiffusionSegSlicerLib.ServiceManager import ServiceManager

    try:
        ServiceManager.remoteClient(settings)   # the same checks as the panel: URL shape, token
    except ValueError as exc:
        raise ServiceUnavailable(str(exc)) from exc
    return settings


def describe(settings) -> str:
    return (f"Service: {settings.remoteUrl} (volumes are uploaded to it)" if settings.mode == "remote"
            else "Service: local, started by this app on 127.0.0.1")


def warmUp(logic, pythonInterpreter: str = "") -> threading.Thread:
    """Start the local service in the background now, so the first Apply does not wait for it."""
    from DiffusionSegSlicerLib.JobSettings import JobSettings

    def start():
        try:
            logic.serviceManager.ensureLocal(logic.launcher(JobSettings(pythonInterpreter=pythonInterpreter)))
        except Exception as exc:  # the first Apply reports it (and tries again)
            log.warning("The local DiffusionSeg service did not start: %s", exc)

    thread = threading.Thread(target=start, name="DiffusionSeg-service-start", daemon=True)
    thread.start()
    return thread
