"""Progress bars and a closing summary for a person at a terminal.

A listener on the job's event stream: it reads the same events the JSON-lines writer sends to
stdout and draws on stderr, so stdout stays exactly the machine-readable event stream. It is
attached only when stderr is a terminal and `--quiet` was not given; anything that goes wrong
in it switches it off and never touches the job.

One bar per stage (`load`, `segment` in slices, `train_vae`/`train` in steps, …); progress of a
stage that arrives while another stage's bar is still open (ADZUS's `inversion`, DiffuGTS's
`inpaint`) is shown beside that bar instead of opening bars in turn. A training stage announced
with a time budget shows how much of it is left, since the budget, not the step count, usually
ends it.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable, TextIO

UNITS = {"segment": "slice", "train": "step", "train_vae": "step", "train_adapter": "epoch",
         "train_residual_head": "epoch", "cache_backbone": "slice", "cache_residuals": "slice"}
LABELS = {"load": "load model", "segment": "segment", "train_vae": "VAE stage", "train": "training",
          "train_adapter": "adapter", "train_residual_head": "residual head",
          "cache_backbone": "backbone cache", "cache_residuals": "residual cache"}


def attach(emit: Callable[[dict], None], quiet: bool = False, stream: TextIO | None = None
           ) -> Callable[[dict], None]:
    """`emit` plus the console listener when `stream` (stderr) is a terminal and not `quiet`."""
    stream = stream or sys.stderr
    if quiet:
        # the libraries' own bars too (weights loading, downloads): read by tqdm when it is first
        # imported, which in a CLI run happens later, inside the job
        os.environ.setdefault("TQDM_DISABLE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if quiet or not _is_terminal(stream):
        return emit
    console = ConsoleProgress(stream)

    def both(event: dict) -> None:
        emit(event)
        console(event)
    return both


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _columns(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return 0


class ConsoleProgress:
    """Turns events into tqdm bars and a one-paragraph summary on `stream`."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.started = time.monotonic()
        self.bar: Any = None
        self.stage: str | None = None
        self.deadline: float | None = None  # monotonic end of the announced stage's time budget
        self.broken = False

    def __call__(self, event: dict) -> None:
        if self.broken:
            return
        try:
            handler = getattr(self, f"on_{event.get('event')}", None)
            if handler is not None:
                handler(event)
        except Exception as error:  # noqa: BLE001 - a display problem must never fail the job
            self.broken = True
            self._close()
            print(f"(progress display stopped: {type(error).__name__}: {error})", file=self.stream)

    # events -------------------------------------------------------------------------------
    def on_progress(self, event: dict) -> None:
        stage, done, total = str(event["stage"]), int(event["done"]), max(int(event["total"]), 1)
        if stage != self.stage and self.bar is not None and self.bar.n < (self.bar.total or 0):
            self.bar.set_postfix_str(f"{stage} {done}/{total}{self._budget_left()}", refresh=True)
            return  # a sub-stage of the open bar
        if stage != self.stage or self.bar is None:
            self._open(stage, total)
        if self.bar.total != total:
            self.bar.total = total
        self.bar.n = min(done, total)
        self.bar.set_postfix_str(self._budget_left().strip(" ,"), refresh=False)
        self.bar.refresh()

    def on_log(self, event: dict) -> None:
        if "stage_index" in event:  # a new training stage: its own bar, its own budget
            self._close()
            budget = event.get("budget_minutes")
            self.deadline = time.monotonic() + 60.0 * budget if budget else None
            self._write(event["message"])
        elif event.get("level") in ("warning", "error"):
            self._write(f"{event['level']}: {event['message']}")

    def on_warning(self, event: dict) -> None:
        self._write(f"warning: {event.get('message', event)}")

    def on_error(self, event: dict) -> None:
        self._close()
        hint = f" {event['hint']}" if event.get("hint") else ""
        self._write(f"Failed ({event.get('code')}): {event.get('message')}{hint}")

    def on_result(self, event: dict) -> None:
        self._close()
        from .summary import summary_paragraph

        self._write(summary_paragraph(event, time.monotonic() - self.started))

    # bars ---------------------------------------------------------------------------------
    def _open(self, stage: str, total: int) -> None:
        from tqdm import tqdm

        self._close()
        self.stage = stage
        sized = _columns(self.stream) > 0  # a terminal that reports no size (some ptys, CI) gets 100
        # a stage with a time budget usually ends by the budget, not its step count: show the
        # budget left instead of a percentage and an ETA computed from the steps
        budget_format = "{desc}: {n_fmt}/{total_fmt} {unit}s [{elapsed}, {rate_fmt}{postfix}]"
        self.bar = tqdm(total=total, desc=LABELS.get(stage, stage), unit=UNITS.get(stage, "it"),
                        file=self.stream, dynamic_ncols=sized, ncols=None if sized else 100, leave=True,
                        mininterval=0.2, bar_format=budget_format if self.deadline is not None else None)

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar, self.stage = None, None

    def _budget_left(self) -> str:
        if self.deadline is None:
            return ""
        left = max(0.0, self.deadline - time.monotonic())
        return f", budget {int(left // 60)}:{int(left % 60):02d} left"

    def _write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.clear()
        print(text, file=self.stream, flush=True)
        if self.bar is not None:
            self.bar.refresh()
