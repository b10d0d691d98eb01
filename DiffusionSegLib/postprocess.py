"""3D clean-up of the stacked slice results.

Methods see one slice at a time; these steps restore what a reader expects of a volume: one id
per structure through the stack, no pinholes, optionally one connected object.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment


def finish_labels(labels: np.ndarray, axis: int, consistent: bool = True, fill: bool = True,
                  largest: bool = False) -> np.ndarray:
    """The pipeline's 3D post-processing of stacked slice labels, in its order: ids matched
    across slices when a method numbers them per slice, hole filling, largest component.
    `reselect` calls the same function, so a re-selection is post-processed identically."""
    if not consistent and labels.shape[axis] > 1:
        labels = match_labels_across_slices(labels, axis)
    elif not consistent:
        labels = compact_labels(labels)
    if fill:
        labels = fill_holes(labels, axis)
    if largest:
        labels = keep_largest_component(labels)
    return labels


def fill_holes(labels: np.ndarray, axis: int) -> np.ndarray:
    """Fill enclosed holes of every label in each slice (2D: holes in 3D are rarely closed)."""
    out = labels.copy()
    for label in np.unique(labels):
        if label == 0:
            continue
        mask = labels == label
        filled = np.zeros_like(mask)
        for index in range(mask.shape[axis]):
            plane = np.take(mask, index, axis=axis)
            selector = [slice(None)] * 3
            selector[axis] = index
            filled[tuple(selector)] = ndimage.binary_fill_holes(plane)
        out[filled & (out == 0)] = label
    return out


def keep_largest_component(labels: np.ndarray) -> np.ndarray:
    """Keep only the largest 3D connected component (26-connectivity) of each label."""
    out = np.zeros_like(labels)
    structure = np.ones((3, 3, 3), dtype=bool)
    for label in np.unique(labels):
        if label == 0:
            continue
        components, count = ndimage.label(labels == label, structure=structure)
        if count == 0:
            continue
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        out[components == sizes.argmax()] = label
    return out


def match_labels_across_slices(labels: np.ndarray, axis: int, min_iou: float = 0.1) -> np.ndarray:
    """Give a segment the same id in every slice it continues into.

    Unsupervised methods number segments arbitrarily per slice. Walking through the stack, the
    segments of each slice are matched to those of the previous non-empty slice by maximum
    total overlap (Hungarian assignment on IoU); unmatched segments get new ids.
    """
    out = np.zeros_like(labels)
    previous: np.ndarray | None = None
    next_id = 1
    for index in range(labels.shape[axis]):
        plane = np.take(labels, index, axis=axis)
        ids = [int(v) for v in np.unique(plane) if v != 0]
        if not ids:
            continue
        mapped = np.zeros_like(plane)
        assigned: dict[int, int] = {}
        if previous is not None:
            prev_ids = [int(v) for v in np.unique(previous) if v != 0]
            iou = np.zeros((len(ids), len(prev_ids)))
            for a, seg in enumerate(ids):
                current = plane == seg
                for b, prev in enumerate(prev_ids):
                    other = previous == prev
                    union = np.logical_or(current, other).sum()
                    iou[a, b] = np.logical_and(current, other).sum() / union if union else 0.0
            rows, cols = linear_sum_assignment(-iou)
            for a, b in zip(rows, cols):
                if iou[a, b] >= min_iou:
                    assigned[ids[a]] = prev_ids[b]
        for seg in ids:
            if seg not in assigned:
                assigned[seg] = next_id
                next_id += 1
            else:
                next_id = max(next_id, assigned[seg] + 1)
            mapped[plane == seg] = assigned[seg]
        selector = [slice(None)] * 3
        selector[axis] = index
        out[tuple(selector)] = mapped
        previous = mapped
    return compact_labels(out)


def compact_labels(labels: np.ndarray) -> np.ndarray:
    """Renumber present labels to 1..N in order of first appearance value."""
    values = [v for v in np.unique(labels) if v != 0]
    lookup = np.zeros(int(labels.max(initial=0)) + 1, dtype=labels.dtype)
    for new, old in enumerate(values, start=1):
        lookup[old] = new
    return lookup[labels]
