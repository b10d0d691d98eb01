"""The local engine: one warm worker in this process takes the cases in order."""

from __future__ import annotations

from typing import Callable, Sequence

from ..contract.events import CancelToken
from .manifest import Case
from .worker import CaseWorker


def run_local(cases: Sequence[Case], on_start: Callable[[Case], None], on_row: Callable[[dict], None],
              token: CancelToken, log_dir: str, threads: int = 0) -> dict:
    worker = CaseWorker(log_dir, threads)
    for case in cases:
        token.check()
        on_start(case)
        on_row(worker.run_case(case, token))
    return {"engine": "local", "workers": 1}
