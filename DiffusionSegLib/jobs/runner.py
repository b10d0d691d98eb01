"""The runner: the one place jobs are executed, behind every front door (segment/run once,
`serve` kept warm, `batch` per worker). It owns the warm caches — models by reference, device
and dtype (model_cache.py); prompt-independent per-image work and text embeddings
(feature_cache.py) — and runs one job at a time, so no front door re-implements model loading,
caching or cancellation.

During a job the runner's caches are active for the job's thread, and every model the job uses
gets cancellation checks before each UNet/VAE block (cancel_hooks.py): a cancelled job stops
within one block, writes nothing, and the model stays loaded for the next job.
"""

from __future__ import annotations

import threading
from typing import Any

from ..contract.events import CancelToken, EventCallback
from ..contract.request import JobRequest
from ..runtime.cancel_hooks import CancelHooks
from ..runtime.feature_cache import DEFAULT_BUDGET_BYTES, FeatureCache
from ..runtime.model_cache import ModelCache
from .job import JobResult, run_job


class Runner:
    """Runs job requests one at a time; one instance lives as long as its process or worker.

    model_budget_bytes: loaded models are unloaded least recently used first above this (None:
    no limit); idle_seconds: `unload_idle` drops models unused that long (None: never);
    feature_budget_bytes: size of the per-image cache (0: no per-image caching).
    """

    def __init__(self, model_budget_bytes: int | None = None, idle_seconds: float | None = None,
                 feature_budget_bytes: int = DEFAULT_BUDGET_BYTES):
        self.models = ModelCache(model_budget_bytes, idle_seconds)
        self.features = FeatureCache(feature_budget_bytes)
        self._lock = threading.Lock()
        self.jobs_run = 0

    def run(self, request: JobRequest, emit: EventCallback, cancel_token: CancelToken | None = None,
            partial_results: bool = False) -> JobResult:
        """`partial_results`: emit each batch's finished slices too (the doors a front end reads:
        `run` and `serve`)."""
        token = cancel_token or CancelToken()
        hooks = CancelHooks(token.check)
        with self._lock:
            try:
                with self.models.session(on_use=hooks.attach), self.features.activate():
                    return run_job(request, emit, token, partial_results)
            finally:
                hooks.remove()
                self.jobs_run += 1

    def unload_idle(self) -> list[tuple]:
        """Drop models idle for longer than `idle_seconds` (`serve` calls this periodically)."""
        return self.models.unload_idle()

    def describe(self) -> dict[str, Any]:
        """What is warm: loaded models (kind, reference, device, dtype, bytes), cache statistics."""
        return {"models": self.models.describe(), "features": self.features.describe(), "jobs_run": self.jobs_run}
