"""`serve`: a warm worker over HTTP (see docs/service.md).

Prints exactly one line on stdout, `{"event": "ready", "url": …, "port": …, "token_file": …}`,
once the server accepts connections (on a terminal, without --json: the same in words);
everything else (uvicorn's log included) goes to stderr.
Binds 127.0.0.1 unless --host says otherwise. SIGTERM/SIGINT cancel the running job, stop the
server and delete its work folder.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from pathlib import Path

from ...contract.errors import DiffusionSegError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1: this machine only; anything else exposes the "
                             "worker to the network, protected by the token alone)")
    parser.add_argument("--port", type=int, default=0, help="port (0: any free port, reported in the ready line)")
    parser.add_argument("--token-file", help="file holding the bearer token; created (0600, random token) when "
                                             "missing. Default: a new file in the temporary folder")
    parser.add_argument("--allow-root", action="append", default=[], metavar="FOLDER",
                        help="folder whose files jobs may name as input paths (repeatable); without any, "
                             "inputs must be uploaded")
    parser.add_argument("--allow-model-root", action="append", default=[], metavar="FOLDER",
                        help="folder whose model folders jobs may name (repeatable); without any, only Hugging Face "
                             "repo ids and built-in references (random:…) are loaded")
    parser.add_argument("--work-dir", help="folder for uploads and results (default: a temporary folder, "
                                           "deleted on exit); what a killed server left there is removed at start")
    parser.add_argument("--max-queue", type=int, default=32,
                        help="jobs that may wait at once; more are answered 429 with Retry-After (default 32)")
    parser.add_argument("--model-budget-gb", type=float, default=0.0,
                        help="unload least recently used models above this many GB (0: no limit)")
    parser.add_argument("--idle-unload-minutes", type=float, default=30.0,
                        help="unload a model unused for this long (0: never)")
    parser.add_argument("--cache-gb", type=float, default=1.0, help="per-image cache size (latents, proposals)")
    parser.add_argument("--max-upload-mb", type=float, default=4096.0, help="largest accepted upload")
    parser.add_argument("--keep-results-minutes", type=float, default=60.0,
                        help="how long finished jobs keep their result files")
    parser.add_argument("--json", action="store_true",
                        help="print the ready line as JSON even on a terminal (as a pipe gets it)")
    parser.add_argument("--exit-with-parent", type=int, metavar="PID",
                        help="stop when process PID ends (the Slicer panel passes its own, so a crashed "
                             "Slicer never leaves a server holding GPU memory)")


# the packages `serve` needs (pip name → import names): dependencies of DiffusionSegLib, but an
# environment set up by hand (Slicer's Python, an older install) may lack them
SERVE_PACKAGES = {"fastapi": ("fastapi",), "uvicorn": ("uvicorn",), "python-multipart": ("python_multipart", "multipart")}


def missing_packages() -> list[str]:
    import importlib.util

    return [name for name, modules in SERVE_PACKAGES.items()
            if not any(importlib.util.find_spec(module) for module in modules)]


def main(args: argparse.Namespace) -> int:
    missing = missing_packages()
    if missing:  # before anything else: a clear sentence, not a ModuleNotFoundError traceback
        print(f"error: serve needs {', '.join(missing)}, which this Python ({sys.executable}) does not have.\n"
              f"  Install them: {sys.executable} -m pip install {' '.join(missing)}\n"
              f"  (they come with DiffusionSegLib: `pip install -e .` in a checkout installs them)", file=sys.stderr)
        return 2
    import uvicorn

    from ...jobs.runner import Runner
    from ...serve.app import create_app
    from ...serve.auth import load_or_create_token
    from ...serve.inputs import remove_folder
    from ...serve.jobs import JobService
    from ...serve.workdir import prepare_work_dir, release_work_dir
    from ..console import is_terminal
    from ..protocol import isolate_stdout

    events = isolate_stdout()
    if args.host not in LOOPBACK:
        print(f"warning: serving on {args.host}: other machines can reach this worker; only the bearer token "
              "protects it, and traffic is not encrypted (put it behind TLS, e.g. an SSH tunnel).", file=sys.stderr)
    roots = [Path(root) for root in args.allow_root]
    model_roots = [Path(root) for root in args.allow_model_root]
    for option, folders in (("--allow-root", roots), ("--allow-model-root", model_roots)):
        for root in folders:
            if not root.is_dir():
                print(f"error: {option} {root} is not a folder.", file=sys.stderr)
                return 2
    if args.max_queue < 1:
        print(f"error: --max-queue must be at least 1; got {args.max_queue}.", file=sys.stderr)
        return 2
    try:
        work_dir, owned, swept = prepare_work_dir(args.work_dir)
    except DiffusionSegError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if swept:
        print(f"Removed {len(swept)} folder(s) a killed DiffusionSeg server had left: "
              f"{', '.join(str(p) for p in swept[:5])}", file=sys.stderr)
    token, token_path = load_or_create_token(args.token_file)
    runner = Runner(model_budget_bytes=int(args.model_budget_gb * 2**30) or None,
                    idle_seconds=args.idle_unload_minutes * 60 or None,
                    feature_budget_bytes=int(args.cache_gb * 2**30))
    service = JobService(runner, work_dir, roots, int(args.max_upload_mb * 2**20),
                         keep_seconds=args.keep_results_minutes * 60, max_queue=args.max_queue,
                         model_roots=model_roots)
    sock = _bind(args.host, args.port)
    port = sock.getsockname()[1]
    host = f"[{args.host}]" if ":" in args.host else args.host
    def shut_down() -> None:
        service.close()
        release_work_dir(work_dir, owned)
        if not args.token_file:  # the generated token dies with the server
            remove_folder(token_path.parent)

    config = uvicorn.Config(create_app(service, token, shut_down), log_level="warning", timeout_graceful_shutdown=3,
                            access_log=False)
    server = uvicorn.Server(config)

    def announce() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.02)
        if server.started:
            ready = {"event": "ready", "url": f"http://{host}:{port}", "port": port, "token_file": str(token_path),
                     "pid": _pid(), "version": _version()}
            if is_terminal(events) and not args.json:  # a person started it: say it in words
                events.write(f"DiffusionSeg worker {ready['version']} ready at {ready['url']} (pid {ready['pid']}); "
                             f"its bearer token is in {ready['token_file']}. Ctrl+C stops it.\n")
            else:
                events.write(json.dumps(ready) + "\n")
            events.flush()

    threading.Thread(target=announce, daemon=True).start()
    if args.exit_with_parent:
        threading.Thread(target=_watch_parent, args=(args.exit_with_parent, server), daemon=True).start()
    try:
        server.run(sockets=[sock])
    finally:
        shut_down()  # also when startup failed; closing twice is harmless
    return 0


def _watch_parent(pid: int, server: "object") -> None:
    import psutil

    while not getattr(server, "should_exit", False):
        try:
            alive = psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            alive = False
        if not alive:
            print(f"Parent process {pid} is gone; stopping.", file=sys.stderr)
            server.should_exit = True
            return
        time.sleep(1.0)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _pid() -> int:
    import os

    return os.getpid()


def _version() -> str:
    from ... import __version__

    return __version__
