"""Validation of an SDSeg (or supervised baseline) model during training, and what its Dice is
checked against (training/quality.py): the same slices and classes, answered trivially."""

from __future__ import annotations

from typing import Any

import torch

from ...training.data import SliceSet
from ...training.loop import dice_iou


def class_targets(masks: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(slices × classes, H, W) boolean targets in the order `validate` scores them (binary: the
    foreground)."""
    if not n_classes:
        return masks > 0
    return torch.cat([masks == k for k in range(1, n_classes + 1)])


@torch.no_grad()
def validate(model: Any, val: SliceSet, n_classes: int, seed: int, batch_size: int = 32) -> dict[str, float]:
    """Single-step (the paper's inference) validation Dice/IoU, one fixed x_T seed."""
    from .predict import predict_labels

    model.eval()
    dices, ious = [], []
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    for start in range(0, len(val), batch_size):
        labels = predict_labels(model, val.images[start:start + batch_size].to(device), n_classes,
                                generator=generator).cpu()
        truth = val.masks[start:start + batch_size]
        for k in range(1, max(1, n_classes) + 1):
            dice, iou = dice_iou(labels == k, truth == k)
            dices.append(dice)
            ious.append(iou)
    model.train()
    return {"val_dice": float(torch.cat(dices).mean()), "val_iou": float(torch.cat(ious).mean())}


@torch.no_grad()
def validate_supervised(model: Any, val: SliceSet, batch_size: int = 32) -> dict[str, float]:
    model.eval()
    dices, ious = [], []
    device = next(model.parameters()).device
    for start in range(0, len(val), batch_size):
        prob = model.predict_probability(val.images[start:start + batch_size].to(device) * 2 - 1).cpu()
        dice, iou = dice_iou(prob > 0.5, val.masks[start:start + batch_size] > 0)
        dices.append(dice)
        ious.append(iou)
    model.train()
    return {"val_dice": float(torch.cat(dices).mean()), "val_iou": float(torch.cat(ious).mean())}
