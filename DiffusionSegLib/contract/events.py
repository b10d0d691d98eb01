"""Job events and the context a method runs in.

Events are the backend's only voice: one JSON object per line on stdout (docs/architecture.md, "The job contract"). The
same dictionaries go to a Python callback when the library is used in-process, so a persistent
or remote worker can forward them unchanged.
"""

from __future__ import annotations

import errno
import json
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, TextIO

from .errors import (
    EXIT_INTERNAL,
    OUT_OF_MEMORY_HINT,
    DiffusionSegError,
    JobCancelled,
    OutOfMemory,
    WriteFailed,
)

EVENT_VERSION = 1
EventCallback = Callable[[dict], None]


class JsonLinesWriter:
    """Writes each event as one flushed JSON line, so a reader sees it at once."""

    def __init__(self, stream: TextIO):
        self._stream = stream
        self._lock = threading.Lock()

    def __call__(self, event: dict) -> None:
        line = json.dumps(event, ensure_ascii=False, allow_nan=False, default=_jsonable)
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "__fspath__"):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class CancelToken:
    """Set from a signal handler or another thread (setting a flag is all a handler does);
    checked by long loops at safe points between steps.

    `final()` guards the last step of a job (rename the output into place, emit the result): the
    cancel watchdog (protocol.py) takes the same lock before it ends the process, so a job is
    either cancelled before that step (nothing written) or completes it."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._final = threading.Lock()
        self._finished = False

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise JobCancelled()

    @contextmanager
    def final(self) -> Iterator[None]:
        with self._final:
            self.check()
            yield
            self._finished = True

    def settle(self) -> bool:
        """For a server that answers a cancel without waiting for the job's thread: True (and
        the final step refused from now on, by JobCancelled) when the job had not completed its
        final step; False when it had, and its result stands. Waits only for a final step in
        progress (a rename and an event)."""
        with self._final:
            if self._finished:
                return False
            self._event.set()
            return True

    def stop_before_final(self) -> bool:
        """For the watchdog: True (and the final step locked out for good) when the job has not
        completed its final step; False when it has, and the job must be left to end normally."""
        self._final.acquire()
        if self._finished:
            self._final.release()
            return False
        return True


@dataclass
class JobContext:
    """What a method may use while it runs: events, cancellation, device, seed.

    Methods receive this instead of a stream so they can report sub-stage progress
    ("inversion 3/15") and stop between UNet calls when the user presses Cancel.
    """

    emit: EventCallback = field(default=lambda event: None)
    cancel_token: CancelToken = field(default_factory=CancelToken)
    device: str = "cpu"
    dtype: str | None = "auto"  # see dtypes.resolve_policy (None means auto too)
    seed: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    partial_results: bool = False   # emit `partial` events (the front doors that show them: run, serve)
    partial_label: int = 1          # the result's label of the segment being computed (several prompts)
    _t0: float = field(default_factory=time.monotonic, repr=False)

    def progress(self, stage: str, done: int, total: int, **extra: Any) -> None:
        event = {"event": "progress", "stage": stage, "done": int(done), "total": int(total),
                 "elapsed": round(time.monotonic() - self._t0, 3)}
        event.update(extra)
        self.emit(event)

    def log(self, message: str, level: str = "info", **extra: Any) -> None:
        event = {"event": "log", "level": level, "message": message}
        event.update(extra)
        self.emit(event)

    def partial(self, labels: Any, axis: int, indices: list[int]) -> None:
        """Slices `indices` of `labels` are finished: their foreground as a `partial` event
        (contract/partial.py), when the front door asked for results as they come."""
        if self.partial_results:
            from .partial import partial_event

            with self.timed("partial"):
                event = partial_event(labels, axis, indices, self.partial_label)
            self.emit(event)

    def check_cancelled(self) -> None:
        self.cancel_token.check()

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Add the wall time of a block to `timings[stage]` (what `benchmark` reports per stage).

        On CUDA the device is synchronised at both ends, so asynchronous kernels are counted in
        the stage that launched them."""
        _synchronize(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            _synchronize(self.device)
            self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - start


def _synchronize(device: str) -> None:
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def error_event(code: str, message: str, hint: str | None = None) -> dict:
    event = {"event": "error", "code": code, "message": message}
    if hint:
        event["hint"] = hint
    return event


def error_for(error: BaseException) -> tuple[dict, int]:
    """The error event and exit status a job ends with, for any exception (shared by the
    one-shot commands and `serve`, so every front door reports failures alike)."""
    if isinstance(error, DiffusionSegError):
        return error_event(error.code, error.message, error.hint), error.exit_code
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        # a full disk wherever a write met it (a summary, a journal, a log): the user's fix is
        # the same as for an output, so it gets the same code and exit status
        failed = WriteFailed(f"Writing {error.filename or 'a file'} failed: {error.strerror}.",
                             hint="Check the free space and quota of the output folder, then run the job again.")
        return error_event(failed.code, failed.message, failed.hint), failed.exit_code
    if "out of memory" in str(error).lower():  # wherever it happens: load, merge, decode…
        oom = OutOfMemory("The device ran out of memory.", hint=OUT_OF_MEMORY_HINT)
        return error_event(oom.code, oom.message, oom.hint), oom.exit_code
    import sys
    import traceback

    traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
    return error_event("internal", f"Unexpected error: {type(error).__name__}: {str(error)[:500]}",
                       "This is a bug; the log on stderr has the details."), EXIT_INTERNAL
