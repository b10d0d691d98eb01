"""A real `python -m DiffusionSegLib serve` process for tests (server, client and Slicer logic)."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
SERVE_ENV = {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def read_ready(process: subprocess.Popen, timeout: float = 120.0) -> dict:
    """The ready line: the first (and only) line serve prints on stdout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"serve exited with {process.returncode}: {process.stderr.read()[-2000:]}")
        ready, _, _ = select.select([process.stdout], [], [], 0.2)
        if ready:
            return json.loads(process.stdout.readline())
    raise TimeoutError("serve did not print its ready line")


@contextmanager
def running_server(tmp_path: Path, *arguments: str, command: list[str] | None = None
                   ) -> Iterator[tuple[dict, str, subprocess.Popen]]:
    """(ready event, token, process); the server is stopped with SIGTERM (by its pid) at the end.
    `command`: how to start the CLI (default `python -m DiffusionSegLib`)."""
    token_file = tmp_path / "token"
    cli = command or [sys.executable, "-m", "DiffusionSegLib"]
    process = subprocess.Popen([*cli, "serve", "--token-file", str(token_file), *arguments], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, **SERVE_ENV})
    try:
        ready = read_ready(process)
        yield ready, token_file.read_text().strip(), process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
