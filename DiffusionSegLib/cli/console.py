"""What a person at a terminal sees of a job: bars, warnings, errors and the closing words.

Which view a command gets (`choose_view`):

- stdout is not a terminal (a pipe or a file: the Slicer worker, `serve`'s callers, scripts): one
  JSON event per line on stdout, exactly as the job contract says; when stderr is a terminal
  (`segment … | jq`) the human view is drawn there as well.
- stdout is a terminal: the human view only, on stderr (on stdout when stderr is redirected).
  `--json` asks for the JSON lines instead, and then nothing else is drawn on that terminal.
- `--quiet`: no bars, no stage lines, no closing summary; a human view still says its warnings
  and errors, since each of them asks for an action.

The view is a listener on the job's event stream, so the events themselves never depend on it;
anything that goes wrong in it switches it off and never touches the job. One bar per stage
(`load`, `segment` in slices, `train_vae`/`train` in steps, …) that updates in place; progress of
a stage that arrives while another stage's bar is still open (ADZUS's `inversion`, DiffuGTS's
`inpaint`, a case's stages under `evaluate`) is shown beside that bar. A training stage announced
with a time budget shows how much of it is left. A warning is said once: repeats (the same
warning for every case of an evaluation) are counted and named in the closing words.
"""

from __future__ import annotations

import os
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

UNITS = {"segment": "slice", "train": "step", "train_vae": "step", "train_adapter": "epoch",
         "train_residual_head": "epoch", "cache_backbone": "slice", "cache_residuals": "slice",
         "evaluate": "case"}
LABELS = {"load": "load model", "segment": "segment", "train_vae": "VAE stage", "train": "training",
          "train_adapter": "adapter", "train_residual_head": "residual head",
          "cache_backbone": "backbone cache", "cache_residuals": "residual cache", "evaluate": "evaluate"}
SELF_DRAWN = {"batch"}  # stages whose command draws its own bar (batch/progress.py)
# commands whose info lines a person reads (training: the data split, a resumed stage, a check
# passed); lines carrying metrics are for the log and the panel's charts, not the terminal
SAYS_INFO = {"train"}


@dataclass
class View:
    """Where a job's events go: JSON lines on stdout or not, and the stream of the human view."""

    json_lines: bool
    console: TextIO | None
    quiet: bool = False


def choose_view(events: TextIO, *, json_flag: bool = False, quiet: bool = False,
                stderr: TextIO | None = None) -> View:
    """The view for a job whose events would go to `events` (the process's real stdout)."""
    stderr = stderr or sys.stderr
    if quiet:
        # the libraries' own bars too (weights loading, downloads): read by tqdm when it is first
        # imported, which in a CLI run happens later, inside the job
        os.environ.setdefault("TQDM_DISABLE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if not json_flag and is_terminal(events):
        return View(False, stderr if is_terminal(stderr) else events, quiet)
    if json_flag and is_terminal(events):
        return View(True, None, quiet)  # JSON asked for on a terminal: nothing else drawn on it
    return View(True, stderr if is_terminal(stderr) and not quiet else None, quiet)


def attach(emit: Callable[[dict], None], view: View, command: str = "segment") -> Callable[[dict], None]:
    """`emit` (the JSON-lines writer, used only when the view has JSON lines) plus the console."""
    if view.console is None:
        return emit if view.json_lines else _discard
    console = ConsoleProgress(view.console, command, view.quiet)
    if not view.json_lines:
        return console

    def both(event: dict) -> None:
        emit(event)
        console(event)
    return both


def _discard(event: dict) -> None:
    pass


def is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def columns(stream: TextIO) -> int:
    """The terminal's width, 0 when it reports none (some pseudo-terminals, CI)."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return 0


class ConsoleProgress:
    """Turns events into tqdm bars, warnings and errors said once, and the closing words."""

    def __init__(self, stream: TextIO, command: str = "segment", quiet: bool = False):
        self.stream, self.command, self.quiet = stream, command, quiet
        self.started = time.monotonic()
        self.bar: Any = None
        self.stage: str | None = None
        self.deadline: float | None = None  # monotonic end of the announced stage's time budget
        self.warnings: dict[str, list[str]] = {}  # message → the cases it came from ("" when none)
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
        if self.quiet or stage in SELF_DRAWN:
            return
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
        if "stage_index" in event and not self.quiet:  # a new training stage: its own bar and budget
            self._close()
            budget = event.get("budget_minutes")
            self.deadline = time.monotonic() + 60.0 * budget if budget is not None else None  # 0: spent
            if event.get("level") == "warning":
                self._warn(event)
            else:
                self._write(event["message"])
        elif event.get("level") in ("warning", "error"):
            self._warn(event)
        elif self.command in SAYS_INFO and not self.quiet and "metrics" not in event:
            if "check" in event:  # a stage's check passed: the stage has ended, its bar goes above
                self._close()
            self._write(str(event.get("message", "")))

    def on_warning(self, event: dict) -> None:
        self._warn(event)

    def on_error(self, event: dict) -> None:
        self._close()
        self._write(f"error ({event.get('code')}): {event.get('message')}")
        if event.get("hint"):
            self._write(f"  {event['hint']}")

    def on_result(self, event: dict) -> None:
        self._close()
        if self.quiet:
            return
        from .summary import closing_words

        self._write(closing_words(self.command, event, time.monotonic() - self.started))
        repeated = {message: cases for message, cases in self.warnings.items() if len(cases) > 1}
        for message, cases in repeated.items():
            named = ", ".join(c for c in cases if c)
            self._write(f"The warning \"{_shorten(message)}\" came {len(cases)} times"
                        + (f" (cases {_shorten(named, 120)})." if named else "."))

    # text ---------------------------------------------------------------------------------
    def _warn(self, event: dict) -> None:
        finished = self.bar is not None and self.bar.n >= (self.bar.total or 0)
        if "check" in event or finished:  # said as a stage ends (a training check, a result's warning):
            self._close()                 # that stage's bar stays above it
        message = str(event.get("message", event))
        cases = self.warnings.setdefault(message, [])
        cases.append(str(event.get("case", "")))
        if len(cases) == 1:
            where = f" (case {event['case']})" if event.get("case") else ""
            self._write(f"warning{where}: {message}")

    # bars ---------------------------------------------------------------------------------
    def _open(self, stage: str, total: int) -> None:
        from tqdm import tqdm

        self._close()
        self.stage = stage
        sized = columns(self.stream) > 0  # a terminal that reports no size gets 100 columns
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
        width = columns(self.stream)
        if width > 20:  # wrap at words, not wherever the terminal cuts; continuation lines indented
            text = "\n".join(textwrap.fill(line, width - 1, subsequent_indent=" " * (len(line) - len(line.lstrip()) + 2),
                                            break_on_hyphens=False, break_long_words=False)
                              for line in text.splitlines())
        print(text, file=self.stream, flush=True)
        if self.bar is not None:
            self.bar.refresh()


def _shorten(text: str, limit: int = 70) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"
