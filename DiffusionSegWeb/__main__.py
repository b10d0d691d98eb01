"""python -m DiffusionSegWeb [--host 127.0.0.1] [--port P] [--server URL --token-file F]"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys

from . import SLICER_MODULE_DIR  # noqa: F401  (puts DiffusionSegSlicerLib on the import path)

log = logging.getLogger("DiffusionSegWeb")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m DiffusionSegWeb",
                                description="DiffusionSeg in the browser (trame-slicer), a client of `serve`.")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; see docs/web.md before "
                        "binding elsewhere)")
    p.add_argument("--port", type=int, default=8080, help="port of the page (0: any free port)")
    p.add_argument("--server", metavar="URL",
                   help="a running DiffusionSeg service; without it a local one is started")
    p.add_argument("--token-file", metavar="F", help="the service's token file (with --server)")
    p.add_argument("--allow-root", action="append", default=[], metavar="DIR",
                   help="folder whose files the page may open by path on this server (repeatable; "
                        "default: none, uploads only)")
    p.add_argument("--max-upload-mb", type=float, default=1024.0,
                   help="largest upload accepted, in MB (default 1024)")
    p.add_argument("--max-disk-mb", type=float, default=0.0,
                   help="most the app's private folder may hold at once: uploads, jobs' copies, results "
                        "(default: three times --max-upload-mb)")
    p.add_argument("--worker-python", default="", metavar="PYTHON",
                   help="interpreter of the local service (default: this one), e.g. a conda env with CUDA torch")
    return p


def isLoopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("DiffusionSegWeb").setLevel(logging.INFO)
    if bool(args.server) != bool(args.token_file):
        parser().error("--server and --token-file go together.")
    if not isLoopback(args.host):
        log.warning("Listening on %s: anyone who can reach this address can open the page, see and segment "
                    "the images loaded in it. Put it behind a reverse proxy with TLS and authentication "
                    "(docs/web.md).", args.host)

    from .files import Workspace
    from .service import ServiceUnavailable, describe, serviceSettings, warmUp

    try:
        settings = serviceSettings(args.server, args.token_file)
    except ServiceUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    workspace = Workspace(int(args.max_upload_mb * 1e6), args.allow_root, int(args.max_disk_mb * 1e6) or None)
    log.info("Private folder (removed on exit): %s", workspace.root)

    if not os.environ.get("DISPLAY") and sys.platform.startswith("linux"):
        # No X server: render off-screen through EGL at once, instead of VTK trying X first and
        # printing "bad X server connection" (VTK reads this before its first render window).
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    # Uploads come as whole files over the websocket: allow the upload limit plus framing. trame
    # reads its own options from the command line too: it gets none of ours.
    os.environ["TRAME_WS_MAX_MSG_SIZE"] = str(int(args.max_upload_mb * 1e6) + 1_000_000)
    sys.argv = sys.argv[:1]
    from .app import WebApp

    app = None
    try:
        app = WebApp(workspace=workspace, serviceSettings=settings, serviceLabel=describe(settings),
                     pythonInterpreter=args.worker_python)
        if settings.mode == "local":
            warmUp(app.logic, args.worker_python)
        app.server.start(host=args.host, port=args.port, open_browser=False, timeout=0,
                         show_connection_info=True)
    finally:
        if app is not None:
            app.logic.stopService()
        workspace.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
