"""From images to label maps with a trained SDSeg model (binary or multi-class)."""

from __future__ import annotations

from typing import Any

import torch


@torch.no_grad()
def predict_probabilities(model: Any, images: torch.Tensor, n_classes: int = 0, steps: int = 1,
                          generator: torch.Generator | None = None, eta: float = 0.0) -> torch.Tensor:
    """(B, K, S, S) per-class foreground probability for images (B, 3, S, S) in [0, 1]; K = max(1, n_classes).

    Multi-class runs one pass per class id through the class embedding, as the reference does."""
    x = images * 2.0 - 1.0
    if not n_classes:
        return model.predict_probability(x, steps=steps, generator=generator, eta=eta).unsqueeze(1)
    maps = []
    for k in range(1, n_classes + 1):
        labels = torch.full((x.shape[0],), k, dtype=torch.long, device=x.device)
        maps.append(model.predict_probability(x, steps=steps, generator=generator, class_labels=labels, eta=eta))
    return torch.stack(maps, dim=1)


def labels_from_probabilities(probabilities: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Label 0 where no class passes the threshold, else the most probable class (1-based)."""
    best, index = probabilities.max(dim=1)
    return torch.where(best > threshold, index + 1, torch.zeros_like(index))


@torch.no_grad()
def predict_labels(model: Any, images: torch.Tensor, n_classes: int = 0, steps: int = 1,
                   generator: torch.Generator | None = None, threshold: float = 0.5) -> torch.Tensor:
    return labels_from_probabilities(predict_probabilities(model, images, n_classes, steps, generator), threshold)
