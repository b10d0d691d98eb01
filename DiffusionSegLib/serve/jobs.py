"""The jobs of a `serve` instance: a registry, a bounded queue and ONE worker thread.

GPU work runs one job at a time (two jobs on one GPU would only fight for its memory); the HTTP
threads submit, stream events, cancel and download while it works. At most `max_queue` jobs
wait (each may hold an upload on disk); beyond that a submission is refused with 429 and a
Retry-After. Finished jobs keep their result files for `keep_seconds` (and at most `keep_jobs`
of them); an uploaded input is deleted as soon as its job ends, because it is patient data.

Cancel answers within CANCEL_GRACE_S in every phase. A job stops at its next safe point (a UNet
block, a slice); one that does not reach one in time (a model load, which no library lets us
interrupt) is *abandoned*: its files are removed, its final step is locked out (CancelToken.
settle) and the client gets `cancelled` at once, while the worker thread finishes the load in
the background — the model stays cached for the next job, which starts when it is done.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any

from ..contract.errors import InvalidRequest, JobCancelled
from ..contract.events import JobContext, error_event, error_for
from ..contract.request import JobRequest
from ..jobs.runner import Runner
from .errors import QueueFull
from .inputs import confined_input, confined_model, job_output, remove_folder
from .job import Job

CANCEL_GRACE_S = 1.0
DEFAULT_MAX_QUEUE = 32
ABANDONED = "The job was cancelled; nothing was written. (Its model load goes on in the background and stays loaded.)"


class JobService:
    def __init__(self, runner: Runner, work_dir: Path, allow_roots: list[Path], max_upload_bytes: int,
                 keep_seconds: float = 3600.0, keep_jobs: int = 100, housekeeping_seconds: float = 15.0,
                 max_queue: int = DEFAULT_MAX_QUEUE, model_roots: list[Path] | None = None):
        self.runner, self.work_dir = runner, work_dir
        self.allow_roots = [root.expanduser().resolve() for root in allow_roots]
        self.model_roots = [root.expanduser().resolve() for root in model_roots or []]
        self.max_upload_bytes, self.keep_seconds, self.keep_jobs = max_upload_bytes, keep_seconds, keep_jobs
        self.max_queue = max_queue
        self.jobs: dict[str, Job] = {}
        self.queue: deque[Job] = deque()
        self.current: Job | None = None
        self._durations: deque[float] = deque(maxlen=20)
        self._cond = threading.Condition()
        self._closing = False
        self._worker = threading.Thread(target=self._work, name="diffusionseg-worker", daemon=True)
        self._worker.start()
        self._housekeeper = threading.Thread(target=self._housekeeping, args=(housekeeping_seconds,),
                                             name="diffusionseg-housekeeping", daemon=True)
        self._housekeeper.start()

    # -- requests from HTTP threads ------------------------------------------------------------

    def check_room(self) -> None:
        """QueueFull when `max_queue` jobs wait already (checked before an upload is received)."""
        with self._cond:
            if len(self.queue) >= self.max_queue:
                average = sum(self._durations) / len(self._durations) if self._durations else 10.0
                raise QueueFull(f"{len(self.queue)} jobs are waiting on this server already (--max-queue "
                                f"{self.max_queue}).", hint="Try again in a moment.",
                                retry_after=max(1, min(600, round(average))))

    def new_folder(self) -> Path:
        folder = self.work_dir / uuid.uuid4().hex[:16]
        folder.mkdir(parents=True, mode=0o700)
        return folder

    def submit(self, data: Any, folder: Path | None = None, upload: str | None = None) -> Job:
        """Validate a request (everything checkable before a model loads), queue it, return the job.
        `upload`: the image already received into `folder`. The folder is removed on refusal."""
        from ..jobs.job import create_method

        folder = folder or self.new_folder()
        try:
            if not isinstance(data, dict):
                raise InvalidRequest("A job request must be a JSON object.")
            data = dict(data)
            if upload is not None:
                data["input"] = upload
            data["output"] = job_output(data.get("output"), folder)
            request = JobRequest.from_dict(data)   # every field's type and text; no file touched yet
            if upload is None:
                request.input = confined_input(request.input, self.allow_roots)
            request.model = confined_model(request.model, self.model_roots)   # before a method reads it
            for prompt in request.prompt_list():  # every prompt is checked, before anything is queued
                create_method(request.method, request.params, prompt, request.model, JobContext())
            job = Job(folder.name, request, folder, upload)
            with self._cond:
                self.check_room()
                self.jobs[job.id] = job
                self.queue.append(job)
                job.emit({"event": "queued", "position": self._position(job)})
                self._cond.notify_all()
        except BaseException:
            remove_folder(folder)
            raise
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
                self._cleanup(job)
                self._announce_positions()
                job.finish(error_event(JobCancelled.code, JobCancelled().message))
                return "cancelled"
            if not job.finished:
                job.token.cancel()  # the worker stops at the next UNet/VAE block or stage …
                timer = threading.Timer(CANCEL_GRACE_S, self._abandon, args=(job,))
                timer.daemon = True
                timer.start()       # … or the job is answered without it
                return "cancelling"
            del self.jobs[job_id]
        remove_folder(job.folder)
        return "deleted"

    def describe(self) -> dict[str, Any]:
        with self._cond:
            current = self.current
            return {"queued": len(self.queue), "max_queue": self.max_queue,
                    "running": current.id if current is not None and not current.abandoned else None,
                    "busy": current is not None, "jobs": len(self.jobs), "max_upload_bytes": self.max_upload_bytes}

    def close(self, timeout: float = 10.0) -> None:
        """Cancel everything, stop the worker, remove every job folder."""
        message = "The server is shutting down; the job was cancelled."
        with self._cond:
            self._closing = True
            waiting = list(self.queue)
            self.queue.clear()
            current = self.current
            self._cond.notify_all()
        for job in waiting:
            self._cleanup(job)
            job.finish(error_event(JobCancelled.code, message))
        if current is not None:
            current.token.cancel()
        self._worker.join(timeout)
        if current is not None and current.token.settle():
            self._cleanup(current)
            current.finish(error_event(JobCancelled.code, message))
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
            final = None
            try:
                self.runner.run(job.request, job.emit, job.token, partial_results=True)   # clients show them
            except BaseException as error:  # noqa: BLE001 - every ending becomes an error event
                final, _ = error_for(JobCancelled() if job.token.cancelled else error)
            finally:
                self._cleanup(job)
                with self._cond:
                    self.current = None
                    self._durations.append(time.time() - (job.started_at or time.time()))
                    self._announce_positions()
                job.finish(final)   # the terminal event only now: everything of the job is cleaned up

    def _abandon(self, job: Job) -> None:
        """A cancelled job still running after the grace period: answer it now (see the module)."""
        with self._cond:
            if job is not self.current or job.finished or job.abandoned:
                return
            if not job.token.settle():
                return   # its result was committed just now: it ends normally, with the result
            job.abandoned = True
        self._cleanup(job)
        job.finish(error_event(JobCancelled.code, ABANDONED))

    def _cleanup(self, job: Job) -> None:
        if job.upload:
            Path(job.upload).unlink(missing_ok=True)
        if job.abandoned or not job.succeeded:
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
