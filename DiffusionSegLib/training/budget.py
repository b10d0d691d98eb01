"""`--max-minutes` for a whole training run: one wall clock that every stage draws from.

A run has stages (SDSeg from scratch: the VAE, then the denoiser; DiffuGTS: the adapter, the
residual head, validation). Each stage gets a stated share of what is left when it starts, so a
budget bounds the run as a whole instead of each stage bringing its own unbounded default, and
the stage is announced (a log event with `stage`, `stage_index`, `stage_count` and its budget)
before its progress events start. No budget (None or <= 0) means no time limit: stages then stop
at their step or epoch counts as before.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..contract.events import JobContext


@dataclass
class TimeBudget:
    """A wall-time limit in minutes (None: unlimited), counted from its creation."""

    max_minutes: float | None
    start: float = field(default_factory=time.monotonic)

    @property
    def limited(self) -> bool:
        return self.max_minutes is not None and self.max_minutes > 0

    @property
    def elapsed_minutes(self) -> float:
        return (time.monotonic() - self.start) / 60.0

    @property
    def remaining_minutes(self) -> float | None:
        return max(0.0, self.max_minutes - self.elapsed_minutes) if self.limited else None

    def exhausted(self, reserve_seconds: float = 0.0) -> bool:
        """True when the budget is spent, or when less than `reserve_seconds` is left (the time a
        stage needs to finish cleanly, e.g. its last validation and save)."""
        return self.limited and (self.max_minutes - self.elapsed_minutes) * 60.0 <= reserve_seconds


class RunBudget(TimeBudget):
    """The whole run's budget; `stage()` hands out the share of one stage and announces it."""

    def __init__(self, max_minutes: float | None, context: JobContext, stage_count: int):
        super().__init__(max_minutes)
        self.context = context
        self.stage_count = stage_count
        self.stage_index = 0

    def stage(self, name: str, description: str, share: float = 1.0,
              minutes: float | None = None) -> TimeBudget:
        """Start the next stage. Its budget is `share` of what is left of the run, or `minutes`
        when given (a per-stage option such as --vae-minutes), never more than what is left."""
        self.stage_index += 1
        left = self.remaining_minutes
        if left is None:
            allowed = minutes
        else:
            allowed = min(left, minutes) if minutes is not None and minutes > 0 else left * share
        spent = self.limited and allowed is not None and allowed <= 0
        if spent:
            allowed = 1e-9  # the stage does the least it can (one step or none) rather than run unbounded
        when = f"budget {allowed:.2f} min" if allowed is not None else "no time limit"
        if left is not None:
            when += f" of the {left:.2f} min left of --max-minutes {self.max_minutes:g}"
        if spent:
            when += "; the budget is spent, so this stage does almost nothing: give more --max-minutes"
        self.context.log(f"Stage {self.stage_index}/{self.stage_count}: {description} ({when}).",
                         level="warning" if spent else "info",
                         stage=name, stage_index=self.stage_index, stage_count=self.stage_count,
                         budget_minutes=None if allowed is None else round(allowed, 3),
                         left_minutes=None if left is None else round(left, 3))
        return TimeBudget(allowed)
