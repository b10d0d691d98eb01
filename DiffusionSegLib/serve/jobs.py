"""The jobs of a `serve` instance: a registry, a queue and ONE worker thread.

GPU work runs one job at a time (two jobs on one GPU would only fight for its memory); the HTTP
threads submit, stream events, cancel and download while it works. A job's events are kept in
order, so a client that connects late (or reconnects) replays them from any index. Finished
jobs keep their result files for `keep_seconds` (and at most `keep_jobs` of them); an
uploaded input is deleted as soon as its job ends, because it is patient data.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any, BinaryIO

from ..contract.errors import JobCancelled
from ..contract.events import CancelToken, JobContext, error_event, error_for
from ..contract.request import JobRequest
from ..jobs.runner import Runner
from .inputs import confined_input, job_output, remove_folder, save_upload

FINISHED = ("done", "failed", "cancelled")


class Job:
    def __init__(self, job_id: str, request: JobRequest, folder: Path, upload: str | None):
        self.id, self.request, self.folder, self.upload = job_id, request, folder, upload
        self.state = "queued"
        self.events: list[dict] = []
        self.token = CancelToken()
        self.created = time.time()
        self.finished_at: float | None = None
        self._cond = threading.Condition()

    def emit(self, event: dict) -> None:
        """Record an event; a result or error event also ends the job's state."""
        if event.get("event") == "result":
            event = {**event, "download": f"/v1/jobs/{self.id}/result"}
        with self._cond:
            if self.state in FINISHED:
                return  # nothing after the terminal event
            self.events.append(event)
            if event.get("event") == "result":
                self._finish("done")
            elif event.get("event") == "error":
                self._finish("cancelled" if event.get("code") == JobCancelled.code else "failed")
            self._cond.notify_all()

    def _finish(self, state: str) -> None:
        self.state, self.finished_at = state, time.time()

    def start(self) -> None:
        with self._cond:
            self.state = "running"

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    def wait_events(self, start: int, timeout: float) -> tuple[list[dict], bool]:
        """Events from index `start` (waiting up to `timeout` s for one) and whether the job ended."""
        with self._cond:
            self._cond.wait_for(lambda: len(self.events) > start or self.finished, timeout)
            return list(self.events[start:]), self.finished

    def result_event(self) -> dict | None:
        with self._cond:
            return next((e for e in reversed(self.events) if e.get("event") in ("result", "error")), None)

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


class JobService:
    def __init__(self, runner: Runner, work_dir: Path, allow_roots: list[Path], max_upload_bytes: int,
                 keep_seconds: float = 3600.0, keep_jobs: int = 100, housekeeping_seconds: float = 15.0):
        self.runner, self.work_dir = runner, work_dir
        self.allow_roots = [root.expanduser().resolve() for root in allow_roots]
        self.max_upload_bytes, self.keep_seconds, self.keep_jobs = max_upload_bytes, keep_seconds, keep_jobs
        self.jobs: dict[str, Job] = {}
        self.queue: deque[Job] = deque()
        self.current: Job | None = None
        self._cond = threading.Condition()
        self._closing = False
        self._worker = threading.Thread(target=self._work, name="diffusionseg-worker", daemon=True)
        self._worker.start()
        self._housekeeper = threading.Thread(target=self._housekeeping, args=(housekeeping_seconds,),
                                             name="diffusionseg-housekeeping", daemon=True)
        self._housekeeper.start()

    # -- requests from HTTP threads ------------------------------------------------------------

    def submit(self, data: Any, upload: tuple[str, BinaryIO] | None = None) -> Job:
        """Validate a request (everything checkable before a model loads), queue it, return the job."""
        from ..jobs.job import create_method

        if not isinstance(data, dict):
            from ..contract.errors import InvalidRequest

            raise InvalidRequest("A job request must be a JSON object.")
        job_id = uuid.uuid4().hex[:16]
        folder = self.work_dir / job_id
        folder.mkdir(parents=True)
        try:
            data = dict(data)
            if upload is not None:
                data["input"] = save_upload(upload[1], upload[0], folder, self.max_upload_bytes)
            elif isinstance(data.get("input"), str) and data["input"].strip():
                data["input"] = confined_input(data["input"], self.allow_roots)
            data["output"] = job_output(data.get("output"), folder)
            request = JobRequest.from_dict(data)
            for prompt in request.prompt_list():  # every prompt is checked, before anything is queued
                create_method(request.method, request.params, prompt, request.model, JobContext())
        except BaseException:
            remove_folder(folder)
            raise
        job = Job(job_id, request, folder, data["input"] if upload is not None else None)
        with self._cond:
            self.jobs[job_id] = job
            self.queue.append(job)
            job.emit({"event": "queued", "position": self._position(job)})
            self._cond.notify_all()
        return job

    def get(self, job_id: str) -> Job:
        with self._cond:
            return self.jobs[job_id]  # KeyError → 404

    def position(self, job: Job) -> int | None:
        with self._cond:
            return self._position(job) if job in self.queue else None

    def cancel(self, job_id: str) -> str:
        """Cancel a queued or running job; forget a finished one (its files are deleted).
        Returns what was done: 'cancelled', 'cancelling' or 'deleted'."""
        with self._cond:
            job = self.jobs[job_id]
            if job in self.queue:
                self.queue.remove(job)
                job.emit(error_event(JobCancelled.code, JobCancelled().message))
                self._cleanup(job)
                self._announce_positions()
                return "cancelled"
            if not job.finished:
                job.token.cancel()  # the worker stops at the next UNet/VAE block or stage
                return "cancelling"
            del self.jobs[job_id]
        remove_folder(job.folder)
        return "deleted"

    def describe(self) -> dict[str, Any]:
        with self._cond:
            return {"queued": len(self.queue), "running": self.current.id if self.current else None,
                    "jobs": len(self.jobs)}

    def close(self, timeout: float = 10.0) -> None:
        """Cancel everything, stop the worker, remove every job folder."""
        with self._cond:
            self._closing = True
            for job in list(self.queue):
                job.emit(error_event(JobCancelled.code, "The server is shutting down; the job was cancelled."))
            self.queue.clear()
            if self.current is not None:
                self.current.token.cancel()
            self._cond.notify_all()
        self._worker.join(timeout)
        for job in list(self.jobs.values()):
            remove_folder(job.folder)

    # -- the worker ----------------------------------------------------------------------------

    def _position(self, job: Job) -> int:
        """Jobs that run before this one (the running job included)."""
        return self.queue.index(job) + (1 if self.current is not None else 0)

    def _announce_positions(self) -> None:
        for job in self.queue:
            job.emit({"event": "queued", "position": self._position(job)})

    def _work(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self.queue or self._closing)
                if self._closing:
                    return
                job = self.queue.popleft()
                self.current = job
                job.start()
                self._announce_positions()
            try:
                self.runner.run(job.request, job.emit, job.token, partial_results=True)   # clients show them
            except BaseException as error:  # noqa: BLE001 - every ending becomes an error event
                event, _ = error_for(error)
                job.emit(event)
            else:
                if not job.finished:  # run_job always ends with a result event; never hang a client
                    job.emit(error_event("internal", "The job ended without a result event."))
            finally:
                self._cleanup(job)
                with self._cond:
                    self.current = None
                    self._announce_positions()

    def _cleanup(self, job: Job) -> None:
        if job.upload:
            Path(job.upload).unlink(missing_ok=True)
        if job.state != "done":
            remove_folder(job.folder)

    def _housekeeping(self, every: float) -> None:
        while not self._closing:
            time.sleep(every)
            self.runner.unload_idle()
            self.expire()

    def expire(self, now: float | None = None) -> list[str]:
        """Forget finished jobs older than keep_seconds, and the oldest beyond keep_jobs."""
        now = time.time() if now is None else now
        with self._cond:
            finished = sorted((j for j in self.jobs.values() if j.finished), key=lambda j: j.finished_at or 0)
            excess = max(0, len(finished) - self.keep_jobs)
            gone = [j for i, j in enumerate(finished)
                    if i < excess or now - (j.finished_at or now) > self.keep_seconds]
            for job in gone:
                del self.jobs[job.id]
        for job in gone:
            remove_folder(job.folder)
        return [job.id for job in gone]
