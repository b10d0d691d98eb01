"""Validation numbers written into the heads' model card: Dice of the coarse (AOVA) and refined
masks, pooled over all slices of the evaluated cases (the volume-Dice definition restricted to
the slices that were loaded)."""

from __future__ import annotations

from typing import Callable

import torch

from .stages import DiffuGTSPipeline


def pooled_dice(prediction: torch.Tensor, truth: torch.Tensor) -> float:
    """2|P∩T| / (|P| + |T|) over every pixel of every slice (one slice: that slice's Dice);
    1.0 when both are empty (the evaluate convention). The one Dice of the DiffuGTS trainer."""
    prediction, truth = prediction.bool(), truth.bool()
    total = int(prediction.sum()) + int(truth.sum())
    return 1.0 if total == 0 else 2.0 * int((prediction & truth).sum()) / total


@torch.no_grad()
def validation_metrics(pipeline: DiffuGTSPipeline, images: torch.Tensor, masks: torch.Tensor,
                       batch_size: int, stop: Callable[[], bool] | None = None) -> dict[str, float]:
    """Pooled Dice over the slices; `stop` (a time budget) ends it after a batch, and the metrics
    then cover the slices evaluated (their count is reported)."""
    valid = torch.ones_like(masks, dtype=torch.bool)
    coarse, refined = [], []
    for start in range(0, images.shape[0], batch_size):
        out = pipeline(images[start:start + batch_size], valid[start:start + batch_size])
        coarse.append(out.coarse)
        refined.append(out.refined)
        if stop is not None and stop():
            break
    coarse_all, refined_all = torch.cat(coarse), torch.cat(refined)
    n = coarse_all.shape[0]
    return {"coarse_dice": round(pooled_dice(coarse_all, masks[:n]), 5),
            "refined_dice": round(pooled_dice(refined_all, masks[:n]), 5),
            "slices": float(n)}
