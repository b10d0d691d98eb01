"""Pieces of a training loop every trainable method shares.

Progress and metrics go out through `JobContext` as the same JSON-lines events as inference
({"event": "progress", "stage": "train", ...}, {"event": "log", "metrics": {...}}), so the Slicer
panel shows a training run exactly like a segmentation job.
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch

from ..contract.events import JobContext


def apply_threads(threads: int) -> None:
    """`--threads N`: cap torch's CPU threads (0 keeps torch's default)."""
    if threads:
        torch.set_num_threads(threads)


def warmup_lambda(warmup_steps: int, start_factor: float = 1e-6) -> Callable[[int], float]:
    """LDM's LambdaLinearScheduler shape: linear from start_factor x lr to lr, then constant."""
    def factor(step: int) -> float:
        if warmup_steps <= 0 or step >= warmup_steps:
            return 1.0
        return start_factor + (1.0 - start_factor) * step / warmup_steps
    return factor


def batches(n_items: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless shuffled index batches (a new permutation each epoch, reproducible from the seed)."""
    while True:
        order = torch.randperm(n_items, generator=generator)
        for start in range(0, n_items - batch_size + 1 if n_items >= batch_size else 1, batch_size):
            yield order[start:start + batch_size]


def random_flips(images: torch.Tensor, masks: torch.Tensor, generator: torch.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference's augmentation: random horizontal and vertical flips, same for image and mask."""
    for dim in (-1, -2):
        flip = torch.rand(images.shape[0], generator=generator) < 0.5
        if flip.any():
            images = images.clone()
            masks = masks.clone()
            images[flip] = images[flip].flip(dim)
            masks[flip] = masks[flip].flip(dim)
    return images, masks


def dice_iou(prediction: torch.Tensor, truth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-item Dice and IoU of boolean maps (B, H, W); both empty counts as 1 (perfect)."""
    prediction, truth = prediction.bool().flatten(1), truth.bool().flatten(1)
    inter = (prediction & truth).sum(1).float()
    total = prediction.sum(1).float() + truth.sum(1).float()
    union = (prediction | truth).sum(1).float()
    dice = torch.where(total > 0, 2 * inter / total.clamp_min(1), torch.ones_like(total))
    iou = torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))
    return dice, iou


def report(context: JobContext, step: int, total: int, stage: str = "train", **metrics: float) -> None:
    """One progress event of a training stage (for the bar), with the current metrics."""
    rounded = {k: round(float(v), 5) for k, v in metrics.items()}
    context.progress(stage, step, total, **rounded)


def log_metrics(context: JobContext, message: str, **metrics: float) -> None:
    context.log(message, metrics={k: round(float(v), 5) for k, v in metrics.items()})
