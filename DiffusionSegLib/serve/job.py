"""One served job: its request, folder, events and state.

Events are kept in order, so a client that connects late (or reconnects) replays them from any
index. The terminal event (`result` or `error`) is held back when the job produces it and
published by `finish()`, which the service calls only after the job's clean-up (upload and, for
a failed or cancelled job, its folder removed; the worker free): a client that sees `cancelled`
finds nothing of the job left behind. Streams wait for events without a thread each: threads
wait on a condition, the event loop's streams on an asyncio event set from the worker thread.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

from ..contract.errors import JobCancelled
from ..contract.events import CancelToken
from ..contract.request import JobRequest

FINISHED = ("done", "failed", "cancelled")
TERMINAL = ("result", "error")


class Job:
    def __init__(self, job_id: str, request: JobRequest, folder: Path, upload: str | None):
        self.id, self.request, self.folder, self.upload = job_id, request, folder, upload
        self.state = "queued"
        self.events: list[dict] = []
        self.token = CancelToken()
        self.created = time.time()
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.abandoned = False           # cancelled and answered while its thread still runs
        self._final: dict | None = None  # the terminal event, until finish() publishes it
        self._cond = threading.Condition()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    # -- events ----------------------------------------------------------------------------------

    def emit(self, event: dict) -> None:
        """Record an event; a terminal one is held for finish()."""
        with self._cond:
            if self.state in FINISHED or self._final is not None:
                return  # nothing after the terminal event
            if event.get("event") in TERMINAL:
                self._final = event
                return
            self.events.append(event)
            self._notify()

    def finish(self, fallback: dict | None = None) -> None:
        """Publish the terminal event (the held one, else `fallback`) and end the job's state."""
        with self._cond:
            if self.state in FINISHED:
                return
            event = self._final or fallback or {"event": "error", "code": "internal",
                                                "message": "The job ended without a result event."}
            if event.get("event") == "result":
                event = {**event, "download": f"/v1/jobs/{self.id}/result"}
                self.state = "done"
            else:
                self.state = "cancelled" if event.get("code") == JobCancelled.code else "failed"
            self.events.append(event)
            self.finished_at = time.time()
            self._notify()

    @property
    def succeeded(self) -> bool:
        """Whether the job produced its result (it may not be published yet)."""
        with self._cond:
            final = self._final if self._final is not None else (self.events[-1] if self.finished else None)
            return final is not None and final.get("event") == "result"

    def _notify(self) -> None:
        self._cond.notify_all()
        for loop, event in list(self._waiters):
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:   # that loop is closed: its stream is gone
                self._waiters.discard((loop, event))

    def start(self) -> None:
        with self._cond:
            self.state, self.started_at = "running", time.time()

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    def wait_events(self, start: int, timeout: float) -> tuple[list[dict], bool]:
        """Events from index `start` (waiting up to `timeout` s for one) and whether the job ended."""
        with self._cond:
            self._cond.wait_for(lambda: len(self.events) > start or self.finished, timeout)
            return list(self.events[start:]), self.finished

    async def next_events(self, start: int) -> tuple[list[dict], bool]:
        """The same for the event loop: waits without holding a thread."""
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()
        waiter = (loop, ready)
        with self._cond:
            if len(self.events) > start or self.finished:
                return list(self.events[start:]), self.finished
            self._waiters.add(waiter)
        try:
            await ready.wait()
        finally:
            with self._cond:
                self._waiters.discard(waiter)
        with self._cond:
            return list(self.events[start:]), self.finished

    def result_event(self) -> dict | None:
        with self._cond:
            return self.events[-1] if self.finished and self.events else None

    # -- files and description ---------------------------------------------------------------------

    def files(self) -> list[str]:
        """Result files a client may download (never the uploaded input)."""
        if not self.folder.is_dir():
            return []
        return sorted(p.name for p in self.folder.iterdir()
                      if p.is_file() and not p.name.startswith((".", "input")))

    def describe(self, position: int | None = None) -> dict[str, Any]:
        summary = {"id": self.id, "state": self.state, "created": self.created, "method": self.request.method,
                   "events": len(self.events), "files": self.files() if self.state == "done" else []}
        if position is not None:
            summary["position"] = position
        final = self.result_event()
        if final is not None:
            summary["final"] = final
        return summary
