"""The event protocol around a job: stdout kept for JSON-lines events (a person at a terminal
gets the human view instead: console.py), cancellation, error events and exit codes. Every
command that speaks the job contract runs through here.

Cancellation is one mechanism: SIGTERM/SIGINT (or the parent's disappearance, see
`exit_when_stdin_closes`) only *sets* the job's CancelToken; the job stops at its next safe
point (between slices, UNet calls, training steps) and unwinds normally. Nothing is raised from
a signal handler: inside library code (a diffusers model load) such an exception was wrapped,
swallowed or reported as a bug. When the job does not reach a safe point within the grace
period, a watchdog thread ends it: it takes the job's final-step lock (so a result being
committed is finished first), removes the temporary and claim files in flight, emits the
`cancelled` error event and leaves with `os._exit(130)` after flushing — which also skips the
1–2 s of interpreter teardown. That is safe because outputs are only ever renamed into place
after a verified write (output_files.py).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import stat
import sys
import threading
from typing import Any, Callable, NoReturn, TextIO

from ..contract.errors import EXIT_BAD_REQUEST, EXIT_CANCELLED, EXIT_OK, JobCancelled
from ..contract.events import CancelToken, JsonLinesWriter, error_event, error_for
from ..io.output_files import discard_pending
from . import console

CANCEL_GRACE_S = 1.0         # time a job gets to reach a safe point after a cancel request
PARENT_GONE_GRACE_S = 0.3    # nobody reads the events any more: stop almost at once
CANCELLED_MESSAGE = "The job was cancelled; nothing was written."

_current: "_Cancellation | None" = None   # the job this process runs (for the stdin watcher)


def isolate_stdout() -> TextIO:
    """Keep stdout for events only: anything else printed (by us, diffusers, C libraries) goes to
    stderr, so the reader of the event stream never sees a stray line."""
    sys.stdout.flush()
    events = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return events


class _Events:
    """The job's event callback; `close()` after the last event so a late progress line from the
    job's thread can never follow the `cancelled` event."""

    def __init__(self, writer: JsonLinesWriter):
        self._writer = writer
        self._lock = threading.Lock()
        self._closed = False
        self.on_reader_gone: Callable[[], None] = lambda: None

    def __call__(self, event: dict) -> None:
        gone = False
        with self._lock:
            if self._closed:
                return
            try:
                self._writer(event)
            except (BrokenPipeError, ConnectionResetError):
                self._closed = gone = True   # nobody reads the events any more: the parent is gone
        if gone:
            self.on_reader_gone()

    def last(self, event: dict) -> None:
        with self._lock:
            if not self._closed:
                try:
                    self._writer(event)
                except (OSError, ValueError):
                    pass
            self._closed = True


class _Cancellation:
    """One job's cancel state: the token, and the watchdog that ends a job stuck outside safe points."""

    def __init__(self, emit: _Events, token: CancelToken, hard_exit: bool, grace: float):
        self.emit, self.token, self.hard_exit, self.grace = emit, token, hard_exit, grace
        self.ending = threading.Lock()     # whoever holds it writes the last event
        self._watchdog: threading.Thread | None = None
        self._deadline = threading.Event()  # set to cut a running watchdog's wait short
        self._starting = threading.RLock()

    def request(self, grace: float | None = None) -> None:
        """Set the flag; in a CLI process also start (or hurry) the watchdog. Signal-safe: no
        exception, no I/O."""
        self.token.cancel()
        if not self.hard_exit:
            return
        with self._starting:   # re-entrant: a signal handler may interrupt the main thread here
            if self._watchdog is None:
                self._watchdog = threading.Thread(target=self._watch, args=(self.grace if grace is None else grace,),
                                                  name="DiffusionSeg-cancel-watchdog", daemon=True)
                self._watchdog.start()
            elif grace is not None and grace < self.grace:
                self._deadline.set()

    def _watch(self, grace: float) -> None:
        self._deadline.wait(grace)
        if not self.ending.acquire(blocking=False):
            return   # the job is ending on its own right now
        if not self.token.stop_before_final():
            self.ending.release()
            return   # its result is complete: let it end normally
        self.finish_cancelled()

    def finish_cancelled(self) -> NoReturn:
        discard_pending()
        self.emit.last(error_event("cancelled", CANCELLED_MESSAGE))
        _hard_exit(EXIT_CANCELLED)


class _SignalWakeup:
    """Hears SIGTERM/SIGINT the moment they arrive, in a thread of its own.

    A Python signal handler runs only when the *main* thread returns to the interpreter; a signal
    delivered to another thread (torch's, say) while the main thread sits in a long C call (a
    model load, a sleep) waits for that call to end. Python's C-level handler also writes the
    signal number to the wakeup descriptor at once, whichever thread took it; this thread reads it
    and starts the cancel (a second signal: no grace)."""

    def __init__(self, cancellation: "_Cancellation"):
        self._cancellation = cancellation
        self._read, self._write = socket.socketpair()
        self._write.setblocking(False)
        self._previous = signal.set_wakeup_fd(self._write.fileno(), warn_on_full_buffer=False)
        self._count = 0
        threading.Thread(target=self._listen, name="DiffusionSeg-signal-wakeup", daemon=True).start()

    def _listen(self) -> None:
        while True:
            try:
                data = self._read.recv(64)
            except OSError:
                return
            if not data:
                return
            for number in data:
                if number in (signal.SIGTERM, signal.SIGINT):
                    self._count += 1
                    self._cancellation.request(0.0 if self._count > 1 else None)

    def close(self) -> None:
        signal.set_wakeup_fd(self._previous)
        for end in (self._write, self._read):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            end.close()


def _hard_exit(code: int) -> NoReturn:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def cancel_before_job_starts() -> None:
    """Until a job installs its own handlers: a cancel while Python still imports and parses
    arguments ends at once with the same `cancelled` event and exit 130 (nothing has started)."""

    json_lines = wants_json_lines()

    def on_signal(signum: int, frame: Any) -> None:
        if json_lines:
            line, fd = json.dumps(error_event("cancelled", CANCELLED_MESSAGE)) + "\n", 1
        else:  # a person at the terminal pressed Ctrl+C
            line, fd = f"\nCancelled: {CANCELLED_MESSAGE}\n", 2
        try:
            os.write(fd, line.encode("utf-8"))
        except OSError:
            pass
        os._exit(EXIT_CANCELLED)

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, on_signal)


def run_with_events(work: Callable[[Callable[[dict], None], CancelToken], Any],
                    stream: TextIO | None = None, *, hard_exit: bool | None = None,
                    grace: float = CANCEL_GRACE_S, quiet: bool = False, json_lines: bool = False,
                    command: str = "segment") -> int:
    """Run a job with the event protocol, cancellation and exit codes around it.

    The events go to stdout (or `stream`) as JSON lines when it is not a terminal or `json_lines`
    (`--json`) asks for them; a person at a terminal gets the human view of `command` instead
    (console.py; `quiet` keeps only its warnings and errors). `hard_exit` (default: when this call
    owns the process's stdout, i.e. the CLI) lets a cancel end the process with os._exit(130);
    in-process callers get the exit code back instead."""
    global _current
    hard_exit = stream is None if hard_exit is None else hard_exit
    out = stream or isolate_stdout()
    view = console.choose_view(out, json_flag=json_lines, quiet=quiet)
    emit = _Events(console.attach(JsonLinesWriter(out), view, command))
    token = CancelToken()
    cancellation = _Cancellation(emit, token, hard_exit, grace)
    emit.on_reader_gone = lambda: cancellation.request(PARENT_GONE_GRACE_S)

    def on_signal(signum: int, frame: Any) -> None:
        cancellation.request()   # only the flag (and the watchdog); _SignalWakeup saw it already

    previous, wakeup = {}, None
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        wakeup = _SignalWakeup(cancellation)
    _current = cancellation
    try:
        work(emit, token)
        cancellation.ending.acquire()   # a watchdog already ending the job keeps it cancelled
        return EXIT_OK
    except JobCancelled:
        cancellation.ending.acquire()   # blocks for good if the watchdog is ending the job
        if hard_exit:
            cancellation.finish_cancelled()
        emit.last(error_event("cancelled", CANCELLED_MESSAGE))
        return EXIT_CANCELLED
    except BaseException as error:  # noqa: BLE001 - the contract needs an error event for anything
        cancellation.ending.acquire()
        if token.cancelled or isinstance(error, KeyboardInterrupt):
            # whatever a library made of the interruption, the job was cancelled
            if hard_exit:
                cancellation.finish_cancelled()
            emit.last(error_event("cancelled", CANCELLED_MESSAGE))
            return EXIT_CANCELLED
        if not isinstance(error, Exception):
            raise
        return _report(error, emit)
    finally:
        _current = None
        if wakeup is not None:
            wakeup.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _report(error: Exception, emit: _Events) -> int:
    event, status = error_for(error)
    emit.last(event)
    return status


def exit_when_stdin_closes() -> threading.Thread | None:
    """For workers started by the Slicer module: their stdin is a pipe the parent never writes
    to, so end-of-file means the parent is gone (closed or killed). Then cancel the running job
    (temporary files removed, exit 130) within PARENT_GONE_GRACE_S; portable, no polling.
    Nothing is watched when stdin is not a pipe (a terminal, /dev/null: no parent to lose)."""
    try:
        if not stat.S_ISFIFO(os.fstat(0).st_mode):
            return None
    except OSError:
        return None

    def watch() -> None:
        # the raw descriptor, not sys.stdin: a daemon thread blocked inside a buffered reader
        # makes interpreter shutdown abort ("could not acquire lock … at interpreter shutdown")
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        current = _current
        if current is not None:
            current.request(PARENT_GONE_GRACE_S)
        else:
            discard_pending()
            _hard_exit(EXIT_CANCELLED)

    thread = threading.Thread(target=watch, name="DiffusionSeg-parent-watch", daemon=True)
    thread.start()
    return thread


class JsonErrorArgumentParser(argparse.ArgumentParser):
    """argparse that reports a usage error as the contract's `invalid_request` error event on
    stdout (and the usual usage text on stderr), before anything is imported or loaded. Its help
    (and every sub-command's: they are built from this class) shows each option's default and
    ends with the exit statuses."""

    def __init__(self, *args: Any, **kwargs: Any):
        from .arguments import HelpFormatter, exit_epilog

        kwargs.setdefault("formatter_class", HelpFormatter)
        kwargs.setdefault("epilog", exit_epilog())
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        if wants_json_lines():  # on a terminal the two lines above are the whole answer
            event = error_event("invalid_request", f"Invalid arguments: {message[:500]}",
                                f"See `{self.prog} --help`.")
            sys.stdout.write(json.dumps(event, ensure_ascii=False) + "\n")
            sys.stdout.flush()
        raise SystemExit(EXIT_BAD_REQUEST)


def wants_json_lines(argv: list[str] | None = None) -> bool:
    """Before the arguments are parsed: whether this process speaks JSON lines on stdout (stdout
    is not a terminal, or `--json` was given), as console.choose_view decides once they are."""
    argv = sys.argv[1:] if argv is None else argv
    return "--json" in argv or not console.is_terminal(sys.stdout)
