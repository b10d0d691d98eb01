"""The worker process: started without a shell, read by threads, cancelled as a whole tree.

No Qt here: the widget polls `WorkerProcess.readEvents()` from a QTimer, tests poll it in a loop.
Pattern from MONAIAuto3DSeg (reader thread -> queue -> GUI-thread poll, psutil tree kill).
"""

from __future__ import annotations

import collections
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from typing import Iterable

STDERR_TAIL_LINES = 200


class WorkerProcess:
    """One run of `<python> -m DiffusionSegLib run --request job.json`.

    Events are the JSON lines of the job contract; any other stdout line becomes a log event so
    nothing the worker prints is lost. stderr is kept (last lines) to explain crashes.
    """

    def __init__(self, command: list[str], env: dict[str, str] | None = None, cwd: str | None = None):
        self.command = [str(part) for part in command]
        self.env = env
        self.cwd = cwd
        self._process: subprocess.Popen | None = None
        self._events: queue.Queue = queue.Queue()
        self._stderrTail: collections.deque = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._threads: list[threading.Thread] = []
        self.cancelRequested = False

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        if self._process is not None:
            raise RuntimeError("The worker was already started.")
        creationflags = subprocess.CREATE_NEW_PROCESS_GROUP if sys.platform == "win32" else 0
        # stdin: a pipe we never write to. When this process ends — even killed — the pipe closes
        # and the worker (DiffusionSegLib.worker_entry) sees end-of-file and stops: no orphan.
        self._process = subprocess.Popen(
            self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=self.env, cwd=self.cwd, creationflags=creationflags,
            start_new_session=(sys.platform != "win32"))
        self._threads = [
            threading.Thread(target=self._readStdout, name="DiffusionSeg-stdout", daemon=True),
            threading.Thread(target=self._readStderr, name="DiffusionSeg-stderr", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def isRunning(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def isFinished(self) -> bool:
        """True once the process has exited AND both pipes are drained."""
        if self._process is None or self._process.poll() is None:
            return False
        self._closeStdin()
        return not any(thread.is_alive() for thread in self._threads)

    def _closeStdin(self) -> None:
        if self._process is not None and self._process.stdin is not None and not self._process.stdin.closed:
            try:
                self._process.stdin.close()
            except OSError:
                pass

    @property
    def returnCode(self) -> int | None:
        return self._process.poll() if self._process else None

    def stderrTail(self, lines: int = 30) -> str:
        return "\n".join(list(self._stderrTail)[-lines:])

    def readEvents(self) -> list[dict]:
        """Every event that arrived since the last call; never blocks."""
        events = []
        while True:
            try:
                events.append(self._events.get_nowait())
            except queue.Empty:
                return events

    def wait(self, timeout: float | None = None) -> int | None:
        if self._process is None:
            return None
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        for thread in self._threads:
            thread.join(timeout)
        self._closeStdin()
        return self._process.returncode

    def cancel(self, gracePeriod: float = 3.0) -> None:
        """Ask the worker and all its descendants to stop (SIGTERM lets the worker clean up) and
        kill whatever is still alive after `gracePeriod` seconds. Returns at once: the kill is
        scheduled on a background thread, so the GUI never waits here."""
        self.cancelRequested = True
        if not self.isRunning():
            return
        descendants = _descendants(self._process.pid)
        _signalTree(self._process, descendants, kill=False)
        threading.Thread(target=self._killAfter, args=(descendants, gracePeriod),
                         name="DiffusionSeg-cancel", daemon=True).start()

    def _killAfter(self, descendants: list, gracePeriod: float) -> None:
        deadline = time.monotonic() + gracePeriod
        while time.monotonic() < deadline:
            if self._process.poll() is not None and not any(_alive(p) for p in descendants):
                return
            time.sleep(0.05)
        _signalTree(self._process, descendants, kill=True)

    # -- reader threads --------------------------------------------------------------------------

    def _readStdout(self) -> None:
        for line in _decodedLines(self._process.stdout):
            event = parseEventLine(line)
            if event is not None:
                self._events.put(event)

    def _readStderr(self) -> None:
        for line in _decodedLines(self._process.stderr):
            self._stderrTail.append(line)


def _decodedLines(stream) -> Iterable[str]:
    with stream:
        for raw in iter(stream.readline, b""):
            # A non-UTF-8 locale must not kill the reader: replace undecodable bytes.
            yield raw.decode("utf-8", errors="replace").rstrip("\r\n")


def parseEventLine(line: str) -> dict | None:
    """A contract event, or a log event wrapping a stray line; None for blank lines."""
    if not line.strip():
        return None
    try:
        event = json.loads(line)
    except ValueError:
        event = None
    if isinstance(event, dict) and isinstance(event.get("event"), str):
        return event
    return {"event": "log", "level": "info", "message": line}


def _descendants(pid: int) -> list:
    """psutil processes of every descendant (empty without psutil, see _signalTree)."""
    try:
        import psutil

        return psutil.Process(pid).children(recursive=True)
    except Exception:  # ImportError, NoSuchProcess, AccessDenied
        return []


def _alive(process) -> bool:
    try:
        return process.is_running() and process.status() != "zombie"
    except Exception:
        return False


def _signalTree(popen: subprocess.Popen, descendants: list, kill: bool) -> None:
    """Signal the worker through its Popen (so its exit code is not reaped by anyone else) and
    every descendant; the kill also goes to the worker's process group on POSIX (the worker
    leads its own session). SIGTERM goes to the worker once: its handler cancels the job."""
    try:
        popen.kill() if kill else popen.terminate()
    except OSError:
        pass
    if kill and sys.platform != "win32":
        try:  # also catches children that psutil could not list
            os.killpg(popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    elif kill:
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(popen.pid)], capture_output=True)
    for process in descendants:
        try:
            process.kill() if kill else process.terminate()
        except Exception:
            pass


def workerEnvironment(baseEnvironment: dict[str, str], libraryParentDir: str,
                      externalInterpreter: bool, device: str = "auto") -> dict[str, str]:
    """Environment for the worker.

    `libraryParentDir` is the folder holding the DiffusionSegLib package (source tree or
    Slicer's qt-scripted-modules). For another interpreter (a conda env), Slicer's own
    PYTHONHOME/PYTHONPATH must not leak into it, so they are dropped before adding ours.
    """
    env = dict(baseEnvironment)
    if externalInterpreter:
        for name in ("PYTHONHOME", "PYTHONPATH", "PYTHONNOUSERSITE", "PYTHONSTARTUP"):
            env.pop(name, None)
    paths = [libraryParentDir] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = "-1"
    return env
