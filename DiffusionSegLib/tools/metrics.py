"""Overlap and boundary metrics with stated conventions (they differ between papers).

Dice and IoU per case; both empty counts as a perfect 1.0. HD95 is the 95th percentile of the
pooled symmetric surface distances in physical units (mm for volumes with spacing), undefined
(None) when either mask is empty.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    total = int(prediction.sum()) + int(truth.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(prediction, truth).sum()) / total


def iou(prediction: np.ndarray, truth: np.ndarray) -> float:
    union = int(np.logical_or(prediction, truth).sum())
    if union == 0:
        return 1.0
    return int(np.logical_and(prediction, truth).sum()) / union


def _surface(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def hd95(prediction: np.ndarray, truth: np.ndarray, spacing: tuple[float, ...] | None = None) -> float | None:
    """`spacing` in the arrays' axis order (numpy order: K, J, I)."""
    prediction, truth = prediction.astype(bool), truth.astype(bool)
    if not prediction.any() or not truth.any():
        return None
    spacing = spacing or (1.0,) * prediction.ndim
    surface_p, surface_t = _surface(prediction), _surface(truth)
    to_truth = ndimage.distance_transform_edt(~surface_t, sampling=spacing)[surface_p]
    to_prediction = ndimage.distance_transform_edt(~surface_p, sampling=spacing)[surface_t]
    return float(np.percentile(np.concatenate([to_truth, to_prediction]), 95))


def oracle_selection(segment_map: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """The union of unsupervised segments that best matches the truth (an upper bound for any
    rule that picks segments without seeing the truth; reported separately, never as accuracy).

    Segments are added in order of precision (fraction inside the truth) while Dice improves."""
    ids = [int(v) for v in np.unique(segment_map) if v != 0]
    precision = []
    for seg in ids:
        region = segment_map == seg
        precision.append((np.logical_and(region, truth).sum() / region.sum(), seg))
    chosen = np.zeros_like(truth, dtype=bool)
    best = dice(chosen, truth)
    for _, seg in sorted(precision, reverse=True):
        candidate = chosen | (segment_map == seg)
        score = dice(candidate, truth)
        if score > best:
            chosen, best = candidate, score
    return chosen


def adjusted_rand_index(a: np.ndarray, b: np.ndarray) -> float:
    """Adjusted Rand index of two labelings of the same pixels (Hubert & Arabie 1985): 1 for the
    same partition whatever the label values, about 0 for independent ones. Used to compare
    unsupervised segment maps (e.g. ADZUS proposals in bf16 and fp32), whose ids are arbitrary."""
    _, a = np.unique(np.asarray(a).ravel(), return_inverse=True)
    _, b = np.unique(np.asarray(b).ravel(), return_inverse=True)
    if a.size != b.size:
        raise ValueError(f"labelings differ in size: {a.size} vs {b.size}")
    table = np.zeros((a.max() + 1, b.max() + 1), dtype=np.float64)
    np.add.at(table, (a, b), 1.0)

    def pairs(counts: np.ndarray) -> float:
        return float((counts * (counts - 1) / 2).sum())

    index, rows, cols = pairs(table), pairs(table.sum(1)), pairs(table.sum(0))
    expected = rows * cols / pairs(np.array([a.size]))
    maximum = (rows + cols) / 2
    return 1.0 if maximum == expected else (index - expected) / (maximum - expected)
