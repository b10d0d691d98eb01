"""Whether a training stage made something: its score against the best trivial answer.

A run starved of time (a busy machine, a budget too short for the data) ends its stages by the
clock and used to write a checkpoint that predicts nothing, reported like any finished run. Each
stage that yields a score is therefore checked against the best *constant* answer on the same
slices, scored the same way: everything background or everything foreground. A stage passes
when it closes at least FLOOR_SHARE of the gap between that trivial score and a perfect 1.0;
SDSeg's VAE must in addition reconstruct masks to at least VAE_FLOOR, since its mask round trip
is the ceiling of every Dice the model can reach (docs/methods/sdseg.md: 0.64 after 1.5 CPU
minutes gave a usable model, 0.92 after 3).

A stage that falls short is said at once (a `warning` event); the run goes on to the end of its
budget and writes its checkpoint, and `train` then ends with `training_fell_short` (exit 8) and
what to do: more minutes, more data, a quieter machine, and `--resume` to extend that stage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from ..contract.errors import TrainingFellShort
from ..contract.events import JobContext
from .loop import dice_iou

FLOOR_SHARE = 0.1  # of the way from the trivial score to 1.0
VAE_FLOOR = 0.5    # mask round-trip Dice below which SDSeg's Dice ceiling is not worth training under
WHAT_TO_DO = ("Give the run more time (--max-minutes), more labelled images, or a quieter machine (other "
              "programs share the CPU when steps are slow), then run the same command with --resume: it "
              "extends the stage that fell short.")


@dataclass
class QualityCheck:
    """One stage's score against the trivial answers; `detail` says how the stage ran."""

    stage: str           # the progress stage name (train_vae, train, adapter, heads)
    label: str           # what a person calls it ("VAE stage")
    measure: str         # "mask round-trip Dice", "validation Dice"
    score: float
    trivial: float       # the better of all background / all foreground
    trivial_answer: str  # which of the two that is
    floor: float
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.score >= self.floor

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}

    def sentence(self) -> str:
        told = (f"{self.label}: {self.measure} {self.score:.4f}" + (f" ({self.detail})" if self.detail else "")
                + f"; {self.trivial_answer} scores {self.trivial:.4f}")
        if self.passed:
            return f"{told}, above the floor {self.floor:.2f}."
        return f"{self.label} fell short: {told[len(self.label) + 2:]}, and the floor is {self.floor:.2f}."


def trivial_score(truth: torch.Tensor, score: Callable[[torch.Tensor, torch.Tensor], float]) -> tuple[float, str]:
    """(best score, its name) of the constant answers on boolean `truth`, by `score(prediction,
    truth)`: the same measure the stage reports."""
    truth = truth.bool()
    answers = {"all background": torch.zeros_like(truth), "all foreground": torch.ones_like(truth)}
    scored = {name: float(score(prediction, truth)) for name, prediction in answers.items()}
    name = max(scored, key=lambda n: scored[n])
    return scored[name], name


def mean_slice_dice(prediction: torch.Tensor, truth: torch.Tensor) -> float:
    """Mean per-slice Dice, both empty = 1: SDSeg's validation Dice and its VAE round trip."""
    return float(dice_iou(prediction, truth)[0].mean()) if len(truth) else float("nan")


def check(stage: str, label: str, measure: str, score: float, truth: torch.Tensor,
          measure_of: Callable[[torch.Tensor, torch.Tensor], float] = mean_slice_dice,
          minimum: float = 0.0, detail: str = "") -> QualityCheck:
    """The check of a stage that scored `score` on boolean `truth` (N, H, W)."""
    trivial, answer = trivial_score(truth, measure_of)
    floor = max(minimum, trivial + FLOOR_SHARE * (1.0 - trivial))
    return QualityCheck(stage, label, measure, float(score), trivial, answer, round(floor, 4), detail)


def report_check(context: JobContext, result: QualityCheck) -> None:
    """Say a check as the stage ends: a `log` event when it passed, a `warning` event when not."""
    if result.passed:
        context.log(result.sentence(), check=result.to_dict())
    else:
        context.emit({"event": "warning", "message": result.sentence(), "check": result.to_dict()})


def raise_if_short(summary: dict, advice: str = "") -> None:
    """End a finished run with `training_fell_short` when one of its checks failed."""
    failed = [c for c in summary.get("checks") or [] if not c.get("passed", True)]
    if not failed:
        return
    stages = ", ".join(f"{c['label']} ({c['measure']} {c['score']:.4f}, floor {c['floor']:.2f})" for c in failed)
    raise TrainingFellShort(f"Training fell short: {stages}. The checkpoint in {summary.get('output')} is written "
                            f"but no better than a trivial answer.",
                            hint=" ".join(part for part in (WHAT_TO_DO, summary.get("advice") or advice) if part))
