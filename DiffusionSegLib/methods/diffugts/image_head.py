"""The image-level anomaly head: is there an anomaly on this slice at all?

The paper's anomaly awareness, as a small trained decision on top of the adapter: per slice a few
statistics of the adapter's anomaly probability inside the body and the training-free gate
statistic (`decision.gate_statistic`) → a logit, trained with binary cross-entropy against "the
slice holds tumour". At inference its probability is the slice's `gate` in the scores table,
decided at 0.5 by `selection.py` (without this head the gate is the calibrated statistic)."""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

STATISTICS = ("max", "mean", "q99", "fraction_above_half", "gate_statistic")


class ImageHead(nn.Module):
    def __init__(self, in_features: int = len(STATISTICS), width: int = 16):
        super().__init__()
        self.in_features, self.width = in_features, width
        self.norm = nn.BatchNorm1d(in_features, affine=False)
        self.net = nn.Sequential(nn.Linear(in_features, width), nn.GELU(), nn.Linear(width, 1))

    def config(self) -> dict[str, Any]:
        return {"in_features": self.in_features, "width": self.width}

    def forward(self, statistics: torch.Tensor) -> torch.Tensor:
        return self.net(self.norm(statistics.float()))[:, 0]


def image_statistics(probability: torch.Tensor, region: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """(B, len(STATISTICS)) per slice: max, mean, 99th percentile and fraction above 0.5 of the
    adapter's probability inside the body, and the training-free gate statistic (0 without body)."""
    rows = []
    for b in range(probability.shape[0]):
        values = probability[b][region[b].to(probability.device)].float().cpu()
        if values.numel() == 0:
            rows.append(torch.zeros(len(STATISTICS)))
            continue
        rows.append(torch.stack([values.max(), values.mean(), torch.quantile(values, 0.99),
                                 (values > 0.5).float().mean(), gate[b].float().cpu().clamp(-50, 50)]))
    return torch.stack(rows)


def train_image_head(statistics: torch.Tensor, labels: torch.Tensor, steps: int = 300, lr: float = 1e-2,
                     seed: int = 0, log: Callable[[dict], None] | None = None) -> ImageHead:
    """Full-batch BCE on (N, F) statistics and (N,) bool slice labels (few parameters, few slices)."""
    torch.manual_seed(seed)
    head = ImageHead(statistics.shape[1])
    optimiser = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)
    target = labels.float()
    positive = target.mean().clamp(1e-3, 1 - 1e-3)
    weight = torch.where(target > 0, 0.5 / positive, 0.5 / (1 - positive))  # balanced classes
    head.train()
    for step in range(steps):
        loss = F.binary_cross_entropy_with_logits(head(statistics), target, weight=weight)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if log and (step + 1) % 50 == 0:
            log({"stage": "image_head", "epoch": step + 1, "epochs": steps, "loss": float(loss.detach())})
    return head.eval()
