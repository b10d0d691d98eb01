"""Anomaly-aware open-vocabulary attention (AOVA) maps and the coarse mask.

Training-free form on a frozen text-to-image UNet: the image latent, lightly noised, is passed
through the UNet twice in one batch - once with the anomaly prompt ("brain tumour") and once with
the paired normal prompt ("healthy brain"). The head-averaged cross-attention of each prompt's own
tokens is averaged over layers (after upsampling to one grid) and over the chosen timesteps; each
prompt's map is divided by its mean inside the body region and the anomaly map is their positive
difference: where the model ties the image more to "tumour" than to "healthy". The difference is
kept in these absolute units (no per-slice rescale), so a floor on it can find nothing.

The optional `AOVAAdapter` (heads.py) replaces this map by a trained one.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from .residual import otsu_mask, to_gray


def body_region(images: torch.Tensor, valid: torch.Tensor, level: float = 0.05) -> torch.Tensor:
    """Foreground (body/organ) region of normalised slices: brighter than `level`, holes filled.

    The pipeline maps background (air, outside the brain) to ~0, so a low level is enough; filling
    holes keeps dark lesions (necrosis, cysts) inside the region the mask may cover."""
    gray = to_gray(images)
    raw = ((gray > level) & valid.bool()).cpu().numpy()
    filled = np.stack([ndimage.binary_fill_holes(m) for m in raw])
    return torch.from_numpy(filled) & valid.bool().cpu()


def token_map(cross: torch.Tensor, positions: Sequence[int]) -> torch.Tensor:
    """(B, N, T) head-averaged cross-attention → (B, h, w) mean attention on `positions`."""
    batch, tokens, _ = cross.shape
    side = int(round(tokens ** 0.5))
    if side * side != tokens:
        raise ValueError(f"cross-attention over {tokens} queries is not a square grid")
    return cross[:, :, list(positions)].float().mean(dim=-1).reshape(batch, side, side)


def aggregate_token_maps(cross_maps: Sequence[torch.Tensor], positions: Sequence[int],
                         size: tuple[int, int]) -> torch.Tensor:
    """Average of `token_map` over layers (or resolutions), each bilinearly upsampled to `size`."""
    if not cross_maps:
        raise ValueError("no cross-attention maps were captured")
    total = None
    for cross in cross_maps:
        m = F.interpolate(token_map(cross, positions)[:, None], size=size, mode="bilinear",
                          align_corners=False)[:, 0]
        total = m if total is None else total + m
    return total / len(cross_maps)


def relative_to_region_mean(maps: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Divide each map by its mean inside `region` (0 outside): attention relative to the prompt's
    average, so the two prompts compare on one scale whatever their overall attention mass.

    Chosen over min-max scaling, which stretches an uninformative (flat) map's noise to the full
    [0, 1] range and then dominates the difference."""
    out = torch.zeros_like(maps, dtype=torch.float32)
    for b in range(maps.shape[0]):
        values = maps[b][region[b]]
        if values.numel() == 0:
            continue
        mean = values.float().mean()
        if mean > 1e-12:
            out[b] = maps[b].float() / mean * region[b]
    return out


def anomaly_difference(abnormal: torch.Tensor, normal: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Signed difference of the two prompts' maps, each in units of its own mean inside the body.

    Never rescaled per slice: 0.5 means "the anomaly prompt draws half the body's average
    attention more than the normal prompt here" on every slice, so an absolute floor can say that
    a slice holds no anomaly (a per-slice rescale to a peak of 1 turned 1 % noise into a mask)."""
    region = region.to(abnormal.device)
    return relative_to_region_mean(abnormal, region) - relative_to_region_mean(normal, region)


def anomaly_map(abnormal: torch.Tensor, normal: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """The positive part of `anomaly_difference` (absolute units, not rescaled)."""
    return anomaly_difference(abnormal, normal, region).clamp_min(0.0)


def coarse_mask(anomaly: torch.Tensor, region: torch.Tensor, method: str = "otsu",
                threshold: float = 0.5, floor: float = 1e-6) -> torch.Tensor:
    """Coarse tumour mask inside `region`: Otsu per slice, or a fixed threshold; never below the
    absolute `floor` (a slice whose map stays under it gets an empty mask)."""
    if method == "otsu":
        return otsu_mask(anomaly, region, min_level=max(floor, 1e-6))
    if method == "fixed":
        return (anomaly > max(threshold, floor)) & region
    raise ValueError(f"unknown threshold method {method!r}")
