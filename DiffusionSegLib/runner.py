"""The runner: the one place jobs are executed, behind every front door (segment/run once,
`serve` kept warm, `batch` per worker). It will own the warm caches (models by reference,
device and dtype; prompt-independent per-image work; text embeddings) and the job queue, so no
front door re-implements model loading or cancellation."""

from __future__ import annotations

from .events import CancelToken, EventCallback
from .job import JobResult, run_job
from .request import JobRequest


class Runner:
    """Runs job requests one at a time; one instance lives as long as its process or worker."""

    def run(self, request: JobRequest, emit: EventCallback, cancel_token: CancelToken | None = None) -> JobResult:
        return run_job(request, emit, cancel_token)
