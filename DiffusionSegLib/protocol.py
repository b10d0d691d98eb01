"""The event protocol around a job: stdout kept for JSON-lines events, cancellation signals,
error events and exit codes. Every command that speaks the job contract runs through here."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any, Callable, TextIO

from .errors import (EXIT_INTERNAL, EXIT_OK, OUT_OF_MEMORY_HINT, DiffusionSegError, JobCancelled,
                     OutOfMemory)
from .events import CancelToken, JsonLinesWriter, error_event


def isolate_stdout() -> TextIO:
    """Keep stdout for events only: anything else printed (by us, diffusers, C libraries) goes to
    stderr, so the reader of the event stream never sees a stray line."""
    sys.stdout.flush()
    events = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return events


def run_with_events(work: Callable[[Callable[[dict], None], CancelToken], Any],
                    stream: TextIO | None = None) -> int:
    """Run a job with the event protocol, cancellation signals and exit codes around it."""
    emit = JsonLinesWriter(stream or isolate_stdout())
    token = CancelToken()

    def on_signal(signum: int, frame: Any) -> None:
        token.cancel()
        raise JobCancelled()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        work(emit, token)
        return EXIT_OK
    except Exception as error:  # noqa: BLE001 - the contract needs an error event for anything
        event, status = error_for(error)
        emit(event)
        return status
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def error_for(error: BaseException) -> tuple[dict, int]:
    """The error event and exit status a job ends with, for any exception (shared by the
    one-shot commands and `serve`, so every front door reports failures alike)."""
    if isinstance(error, DiffusionSegError):
        return error_event(error.code, error.message, error.hint), error.exit_code
    if "out of memory" in str(error).lower():  # wherever it happens: load, merge, decode…
        oom = OutOfMemory("The device ran out of memory.", hint=OUT_OF_MEMORY_HINT)
        return error_event(oom.code, oom.message, oom.hint), oom.exit_code
    import traceback

    traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
    return error_event("internal", f"Unexpected error: {type(error).__name__}: {error}",
                       "This is a bug; the log on stderr has the details."), EXIT_INTERNAL
