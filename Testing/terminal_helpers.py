"""Run the CLI the way a person or a program would: stdout and stderr each on a real
pseudo-terminal or on a pipe, so the process decides by itself (isatty) what to print."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
import threading
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Ran:
    code: int
    stdout: str  # what reached stdout (a pipe, or the stdout terminal)
    stderr: str  # what reached stderr (a pipe, or the stderr terminal; "" when it shares stdout's)


def _terminal(columns: int) -> tuple[int, int]:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))  # rows, columns
    return master, slave


def _drain(master: int, chunks: list[bytes]) -> threading.Thread:
    def read() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # the terminal closed: the process has exited
                return
            if not data:
                return
            chunks.append(data)
    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def run_cli(*args: str, stdout: str = "pipe", stderr: str = "pipe", columns: int = 120,
            timeout: float = 300) -> Ran:
    """stdout/stderr: "pipe", "tty" (a terminal of its own) or, for stderr, "same" (stdout's
    terminal: what a person at one terminal sees, in the order it was written)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "COLUMNS": str(columns), "TERM": "xterm"}
    env.pop("TQDM_DISABLE", None)
    terminals, opened = {}, []
    if stdout == "tty":
        terminals["out"] = _terminal(columns)
    if stderr == "tty":
        terminals["err"] = _terminal(columns)
    out_fd = terminals["out"][1] if "out" in terminals else subprocess.PIPE
    if stderr == "same":
        err_fd = out_fd
    else:
        err_fd = terminals["err"][1] if "err" in terminals else subprocess.PIPE
    proc = subprocess.Popen([sys.executable, "-m", "DiffusionSegLib", *args], cwd=ROOT, env=env,
                            stdout=out_fd, stderr=err_fd, stdin=subprocess.DEVNULL)
    screens: dict[str, list[bytes]] = {}
    for name, (master, slave) in terminals.items():
        os.close(slave)
        screens[name] = []
        opened.append((master, _drain(master, screens[name])))
    piped_out, piped_err = proc.communicate(timeout=timeout)
    for master, reader in opened:
        reader.join(timeout=10)
        os.close(master)

    def text(name: str, piped: bytes | None) -> str:
        if name in screens:
            return b"".join(screens[name]).decode(errors="replace").replace("\r\n", "\n")
        return (piped or b"").decode(errors="replace")
    return Ran(proc.returncode, text("out", piped_out), text("err", piped_err))


def json_lines(text: str) -> list[dict]:
    """Every line is one JSON event (fails otherwise)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def no_json_line(text: str) -> bool:
    return not any(line.lstrip("\r").startswith("{") for line in text.splitlines())
