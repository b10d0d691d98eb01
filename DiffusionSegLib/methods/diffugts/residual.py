"""Residuals between an image and its pseudo-healthy version, and the Otsu threshold.

DiffuGTS refines the coarse AOVA mask by asking what the diffusion model *changed* when it
repainted the suspicious region as healthy tissue: a tumour is replaced, healthy tissue is
re-drawn almost as it was. Two views of that change are fused (paper: R = β1·P + β2·F with
β1 = β2 = 0.5): the pixel residual P = |I − H| and a feature residual F between frozen UNet
features of I and H. Otsu's threshold on R (inside the inpainted region) gives the refined mask.

Everything here is plain torch on (B, H, W) maps so it is testable without a model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_EPS = 1e-8


def to_gray(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) or (B, H, W) → (B, H, W): the channel mean (the pipeline replicates gray
    images to RGB, so this recovers the slice exactly for MR/CT)."""
    return images.float().mean(dim=1) if images.dim() == 4 else images.float()


def normalise_like(images: torch.Tensor, reference: torch.Tensor, region: torch.Tensor | None) -> torch.Tensor:
    """z-score `images` with the mean/std of `reference` inside `region`.

    "Identical normalisation": I and H are both scaled with I's statistics, so a global
    brightness shift that the decoder introduces shows up as residual instead of being
    normalised away, and H = I gives exactly zero.
    """
    gray, ref = to_gray(images), to_gray(reference)
    if region is None:
        region = torch.ones_like(ref, dtype=torch.bool)
    weights = region.float()
    count = weights.sum(dim=(1, 2), keepdim=True).clamp_min(1.0)
    mean = (ref * weights).sum(dim=(1, 2), keepdim=True) / count
    var = (((ref - mean) ** 2) * weights).sum(dim=(1, 2), keepdim=True) / count
    return (gray - mean) / (var.sqrt() + 1e-3)


def pixel_residual(images: torch.Tensor, pseudo_healthy: torch.Tensor,
                   region: torch.Tensor | None = None) -> torch.Tensor:
    """P = |norm(I) − norm(H)|, (B, H, W), both normalised with I's statistics in `region`."""
    return (normalise_like(images, images, region) - normalise_like(pseudo_healthy, images, region)).abs()


def feature_residual(features: list[torch.Tensor], healthy_features: list[torch.Tensor],
                     size: tuple[int, int]) -> torch.Tensor:
    """F = mean over feature scales of the per-position cosine distance 1 − cos(φ(I), φ(H)),
    bilinearly upsampled to `size`; values in [0, 2], 0 where the features agree.

    Cosine distance (not an L2 norm) so the residual does not depend on each layer's activation
    scale and the scales can simply be averaged.
    """
    if len(features) != len(healthy_features) or not features:
        raise ValueError("feature_residual needs the same non-empty list of feature maps for I and H")
    total = None
    for phi_i, phi_h in zip(features, healthy_features):
        phi_i, phi_h = phi_i.float(), phi_h.float()
        dot = (phi_i * phi_h).sum(dim=1)
        norms = phi_i.norm(dim=1) * phi_h.norm(dim=1)
        distance = (1.0 - dot / norms.clamp_min(_EPS)).clamp(0.0, 2.0)
        distance = torch.where(torch.isclose(phi_i, phi_h).all(dim=1), torch.zeros_like(distance), distance)
        distance = F.interpolate(distance[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
        total = distance if total is None else total + distance
    return total / len(features)


def scale_to_unit(residual: torch.Tensor, region: torch.Tensor | None = None,
                  percentile: float = 99.0) -> torch.Tensor:
    """Divide each map by its `percentile` inside `region` and clip to [0, 1].

    P (z-units) and F (cosine distance) live on different scales; putting both on [0, 1] per
    slice is what makes the paper's equal weights β1 = β2 = 0.5 meaningful. A zero map stays 0.
    """
    out = torch.zeros_like(residual, dtype=torch.float32)
    for b in range(residual.shape[0]):
        values = residual[b][region[b]] if region is not None else residual[b].flatten()
        if values.numel() == 0:
            continue
        scale = torch.quantile(values.float(), percentile / 100.0) if values.numel() > 1 else values.max()
        if scale > _EPS:
            out[b] = (residual[b].float() / scale).clamp(0.0, 1.0)
    return out


def fuse_residuals(pixel: torch.Tensor, feature: torch.Tensor, beta1: float = 0.5, beta2: float = 0.5,
                   region: torch.Tensor | None = None) -> torch.Tensor:
    """R = β1·P + β2·F on unit-scaled residuals (see `scale_to_unit`)."""
    return beta1 * scale_to_unit(pixel, region) + beta2 * scale_to_unit(feature, region)


def otsu_threshold(values: torch.Tensor, bins: int = 256) -> float:
    """Otsu's threshold of a 1D set of values: the cut maximising between-class variance.

    Returned as the upper edge of the last bin of the lower class, so `values > t` separates
    two well-separated levels exactly.
    """
    values = values.detach().float().flatten()
    if values.numel() == 0:
        return float("inf")
    low, high = float(values.min()), float(values.max())
    if high - low <= _EPS:
        return high  # one level only: nothing is above the threshold
    hist = torch.histc(values, bins=bins, min=low, max=high).double()
    centres = torch.linspace(low, high, bins + 1, dtype=torch.float64)
    centres = (centres[:-1] + centres[1:]) / 2
    weight0 = hist.cumsum(0)
    weight1 = hist.sum() - weight0
    mean0 = (hist * centres).cumsum(0) / weight0.clamp_min(1e-12)
    mean1 = ((hist * centres).sum() - (hist * centres).cumsum(0)) / weight1.clamp_min(1e-12)
    between = weight0 * weight1 * (mean0 - mean1) ** 2
    between[weight1 <= 0] = -1.0
    index = int(torch.argmax(between))
    return low + (high - low) * (index + 1) / bins


def otsu_mask(maps: torch.Tensor, region: torch.Tensor, min_level: float = 0.0) -> torch.Tensor:
    """Per slice: Otsu threshold of `maps` inside `region`; the mask is above it and inside it.

    `min_level` guards flat maps: a slice whose whole region is below it yields an empty mask
    (Otsu always splits something, even noise).
    """
    masks = torch.zeros_like(region, dtype=torch.bool)
    for b in range(maps.shape[0]):
        values = maps[b][region[b]]
        if values.numel() < 2 or float(values.max()) <= min_level:
            continue
        threshold = max(otsu_threshold(values), min_level)
        masks[b] = (maps[b] > threshold) & region[b]
    return masks
