"""What a running or finished job means to a person: one model for the Slicer panel and the web page.

A front end shows `view()`: a state, one line for people, the slices done out of the total with
the elapsed time and an estimate, the stage as a sub-line, the warnings (each once, never
dropped) and, after a failure, a message and a hint that fit that front end (data/error_hints.json:
a browser user gets no shell advice or server paths). Everything else — the request, worker log
lines, the backend's own error text and hint — goes to `logLines`, the log a person can open.
`reset()` clears it all when a job starts or another volume is opened.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field

from .PanelRules import formatSeconds
from .Signal import Signal
from .Translation import tr as _

FRONT_ENDS = ("slicer", "browser")
DATA_DIR = os.path.join(os.path.dirname(__file__), "data")
IDLE = "idle"
STARTING = "starting"
RUNNING = "running"
CANCELLING = "cancelling"
SUCCEEDED = "succeeded"
EMPTY = "empty"           # finished, found nothing
FAILED = "failed"
CANCELLED = "cancelled"
ACTIVE = (STARTING, RUNNING, CANCELLING)


def _table(name: str) -> dict:
    with open(os.path.join(DATA_DIR, name), encoding="utf-8") as stream:
        return {key: value for key, value in json.load(stream).items() if not key.startswith("_")}


STAGE_LABELS = _table("stage_labels.json")
ERROR_HINTS = _table("error_hints.json")


def stageLabel(stage: str) -> str:
    return _(STAGE_LABELS.get(stage, stage.replace("_", " ")))


def peopleError(code: str, message: str, hint: str | None, frontEnd: str) -> tuple[str, str]:
    """(message, hint) for a person at `frontEnd` for an error with the backend's `message`/`hint`."""
    entry = ERROR_HINTS.get(code, {})
    fallback = ERROR_HINTS.get("*", {})
    shown = entry.get(f"{frontEnd}_message") or message
    if frontEnd == "slicer" and code not in ERROR_HINTS and hint:
        return shown, hint   # the worker's own hint (a traceback, a crash cause) is for this user
    return shown, _(entry.get(frontEnd) or fallback.get(frontEnd) or "")


@dataclass
class StatusView:
    state: str = IDLE
    message: str = ""                 # one line for people
    stage: str = ""                   # the current stage, as a sub-line
    slicesDone: int = 0
    slicesTotal: int = 0
    elapsed: float = 0.0
    remaining: float | None = None    # seconds, once a slice is done
    warnings: list[str] = field(default_factory=list)
    error: str = ""
    hint: str = ""

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def fraction(self) -> float | None:
        """Of the slices, for a progress bar; None while nothing can be counted yet."""
        return self.slicesDone / self.slicesTotal if self.slicesTotal else None

    def progressLine(self) -> str:
        """"Slice 12 of 40 · 1:02 elapsed · about 3:10 left" (or the parts known so far)."""
        parts = []
        if self.slicesTotal:
            parts.append(_("{done} of {total} slices").format(done=self.slicesDone, total=self.slicesTotal))
        parts.append(_("{time} elapsed").format(time=formatSeconds(self.elapsed)))
        if self.remaining is not None and self.slicesDone < self.slicesTotal:
            parts.append(_("about {time} left").format(time=formatSeconds(self.remaining + 0.5)))
        return " · ".join(parts)


class JobStatus:
    def __init__(self, frontEnd: str, clock=time.monotonic):
        if frontEnd not in FRONT_ENDS:
            raise ValueError(f"front end must be one of {FRONT_ENDS}")
        self.frontEnd = frontEnd
        self.clock = clock
        self.changed = Signal("status")
        self.logLines: list[str] = []
        self._job = None
        self.reset()

    # -- life cycle --------------------------------------------------------------------------

    def reset(self) -> None:
        """Nothing to show: a new job starts, or another volume was opened."""
        self._follow(None)
        self._state, self._message, self._stage = IDLE, "", ""
        self._warnings: list[str] = []
        self._error = self._hint = ""
        self._started = self._ended = None
        self._round, self._rounds, self._done, self._total = 0, 1, 0, 0
        self._segmentStart = None
        self.logLines = []
        self.changed.emit(self)

    def start(self, job, promptCount: int = 1) -> None:
        """Follow `job` from now on (its signals: progress, log, finished)."""
        self.reset()
        self._state, self._started = STARTING, self.clock()
        self._rounds = max(1, int(promptCount))
        self._stage = stageLabel("starting")
        self._follow(job)
        self.changed.emit(self)

    def cancelling(self) -> None:
        if self._state in ACTIVE:
            self._state, self._stage = CANCELLING, stageLabel("cancelling")
            self.changed.emit(self)

    def startFailed(self, message: str, details: str = "") -> None:
        """The job did not start (bad settings or input): the message is already for people."""
        self.reset()
        self.fail(message, _("Nothing was run and nothing was changed."), details)

    def fail(self, message: str, hint: str = "", details: str = "") -> None:
        """The front end itself failed around the job (the log so far is kept)."""
        self._follow(None)
        self._state, self._error, self._hint, self._stage = FAILED, message, hint, ""
        self._ended = self.clock() if self._started is not None else None
        self.log("error", details or message)
        self.changed.emit(self)

    def note(self, message: str) -> None:
        """A one-line message outside a job (saved a file, opened a volume)."""
        self._message = message
        self.changed.emit(self)

    def _follow(self, job) -> None:
        if self._job is not None:
            self._job.progress.disconnect(self.onProgress)
            self._job.log.disconnect(self.onLog)
            self._job.finished.disconnect(self.onFinished)
        self._job = job
        if job is not None:
            job.progress.connect(self.onProgress)
            job.log.connect(self.onLog)
            job.finished.connect(self.onFinished)

    # -- events --------------------------------------------------------------------------------

    def log(self, level: str, message: str) -> None:
        prefix = "" if level in ("info", "debug") else f"[{level}] "
        self.logLines.append(prefix + message)

    def onProgress(self, stage: str, done: int, total: int, elapsed: float = 0.0) -> None:
        if self._state not in ACTIVE:
            return
        if self._state == STARTING:
            self._state = RUNNING
        if stage == "segment":
            if self._segmentStart is None:
                self._segmentStart = self.clock()   # the rate of slices excludes starting and loading
            self._done, self._total = int(done), int(total)
            finishing = self._total and self._done >= self._total and self._round + 1 >= self._rounds
            self._stage = stageLabel("finishing") if finishing else ""
        elif stage == "prompts":   # several prompts: each is one pass over the same slices
            self._round, self._done = int(done), 0
        else:
            self._stage = (_("{stage}: {done}/{total}").format(stage=stageLabel(stage), done=done, total=total)
                           if total > 1 else stageLabel(stage))
        self.changed.emit(self)

    def onLog(self, level: str, message: str) -> None:
        self.log(level, message)
        if level == "warning" and message and message not in self._warnings:
            self._warnings.append(message)
        self.changed.emit(self)

    def onFinished(self, job) -> None:
        self._ended = self.clock()
        self._stage = ""
        elapsed = formatSeconds(self._elapsed())
        for warning in getattr(job, "warnings", []):
            if warning and warning not in self._warnings:
                self._warnings.append(warning)
        if job.state == job.SUCCEEDED and job.segmentIds:
            self._state = SUCCEEDED
            self._message = _("Done in {elapsed}: {count} segment(s) added to '{node}'.").format(
                elapsed=elapsed, count=len(job.segmentIds), node=job.segmentationNode.GetName())
        elif job.state == job.SUCCEEDED:
            self._state = EMPTY
            self._message = _("Done in {elapsed}: nothing was found, so no segment was added.").format(elapsed=elapsed)
        elif job.state == job.CANCELLED:
            self._state = CANCELLED
            self._message = _("Cancelled after {elapsed}; nothing was changed.").format(elapsed=elapsed)
        else:
            error = job.error
            code, message, hint = (getattr(error, "code", "internal"), getattr(error, "message", str(error)),
                                   getattr(error, "hint", None))
            self._state = FAILED
            self._error, self._hint = peopleError(code, message, hint, self.frontEnd)
            self._message = _("Failed after {elapsed}; nothing was changed.").format(elapsed=elapsed)
            self.log("error", f"{message} (code {code})" + (f"\n{hint}" if hint else ""))
        self._follow(None)
        self.changed.emit(self)

    # -- what to show --------------------------------------------------------------------------

    def _elapsed(self) -> float:
        if self._started is None:
            return 0.0
        return (self._ended or self.clock()) - self._started

    def view(self) -> StatusView:
        done = self._round * self._total + self._done
        total = self._rounds * self._total
        remaining = None
        if self._segmentStart is not None and done > 0 and self._state in ACTIVE:
            remaining = (self.clock() - self._segmentStart) / done * max(0, total - done)
        message = self._message
        if self._state == STARTING:
            message = _("Starting…")
        elif self._state == RUNNING:
            message = _("Segmenting…")
        elif self._state == CANCELLING:
            message = _("Cancelling…")
        return StatusView(self._state, message, self._stage, done, total, self._elapsed(), remaining,
                          list(self._warnings), self._error, self._hint)
