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
    """Fill enclosed holes of every label in each slice (2D: holes in 3D are rarely closed).

    Each slice is filled inside the label's bounding box there: background touching the box's
    edge reaches the image border through background, so the result equals filling the whole
    slice, at the cost of the label's extent rather than the image's."""
    out = labels.copy()
    target = np.moveaxis(out, axis, 0)
    for label in present_labels(labels):
        mask = np.moveaxis(labels == label, axis, 0)
        rows, cols = mask.any(axis=2), mask.any(axis=1)
        for index in np.flatnonzero(rows.any(axis=1)):
            r = np.flatnonzero(rows[index])
            c = np.flatnonzero(cols[index])
            box = (slice(r[0], r[-1] + 1), slice(c[0], c[-1] + 1))
            plane = mask[index][box]
            holes = ndimage.binary_fill_holes(plane) & ~plane
            region = target[index][box]
            region[holes & (region == 0)] = label
    return out


def present_labels(labels: np.ndarray) -> list[int]:
    """The non-zero values of a labelmap, ascending. A few labels (the usual case) are found
    with one comparison pass each, far faster than sorting a CT-sized volume in np.unique."""
    top = int(labels.max(initial=0))
    if labels.dtype.kind in "ui" and top <= 16:
        return [v for v in range(1, top + 1) if (labels == v).any()]
    return [int(v) for v in np.unique(labels) if v != 0]


def keep_largest_component(labels: np.ndarray) -> np.ndarray:
    """Keep only the largest 3D connected component (26-connectivity) of each label (the first
    in raster order among equally large ones), labelled inside the label's bounding box."""
    out = np.zeros_like(labels)
    structure = np.ones((3, 3, 3), dtype=bool)
    for label in present_labels(labels):
        mask = labels == label
        box = ndimage.find_objects(mask.astype(np.uint8))[0]
        components, count = ndimage.label(mask[box], structure=structure)
        if count == 0:
            continue
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        region = out[box]
        region[components == sizes.argmax()] = label
    return out


def match_labels_across_slices(labels: np.ndarray, axis: int, min_iou: float = 0.1) -> np.ndarray:
    """Give a segment the same id in every slice it continues into.

    Unsupervised methods number segments arbitrarily per slice. Walking through the stack, the
    segments of each slice are matched to those of the previous non-empty slice by maximum
    total overlap (Hungarian assignment on IoU); unmatched segments get new ids. Overlaps of
    all pairs come from one joint histogram of the two slices' ids.
    """
    out = np.zeros(labels.shape, np.int64)   # ids grow past any input dtype (65 536 and beyond)
    previous: np.ndarray | None = None
    next_id = 1
    for index in range(labels.shape[axis]):
        plane = np.take(labels, index, axis=axis)
        ids = [int(v) for v in np.unique(plane) if v != 0]
        if not ids:
            continue
        assigned: dict[int, int] = {}
        if previous is not None:
            prev_ids = [int(v) for v in np.unique(previous) if v != 0]
            iou = _pairwise_iou(plane, previous, ids, prev_ids)
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
        lookup = np.zeros(max(ids) + 1, dtype=np.int64)
        for seg, new in assigned.items():
            lookup[seg] = new
        mapped = lookup[plane]
        selector = [slice(None)] * 3
        selector[axis] = index
        out[tuple(selector)] = mapped
        previous = mapped
    return compact_labels(out)


def _pairwise_iou(current: np.ndarray, previous: np.ndarray, ids: list[int], prev_ids: list[int]) -> np.ndarray:
    """IoU of every (current id, previous id) pair, (len(ids), len(prev_ids)), from one joint
    histogram instead of one mask comparison per pair."""
    width = int(previous.max()) + 1
    joint = np.bincount(current.astype(np.int64).ravel() * width + previous.astype(np.int64).ravel(),
                        minlength=(int(current.max()) + 1) * width).reshape(-1, width)
    inter = joint[np.ix_(ids, prev_ids)]
    area_current = joint.sum(axis=1)[ids]
    area_previous = joint.sum(axis=0)[prev_ids]
    union = area_current[:, None] + area_previous[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def compact_labels(labels: np.ndarray) -> np.ndarray:
    """Renumber present labels to 1..N in order of value, in the narrowest unsigned type that
    holds N (uint16 up to 65 535, uint32 beyond: a long volume can hold that many proposals)."""
    values = np.unique(labels)
    values = values[values != 0]
    lookup = np.zeros(int(labels.max(initial=0)) + 1, dtype=label_dtype(len(values)))
    lookup[values] = np.arange(1, len(values) + 1)
    return lookup[labels]


def label_dtype(largest: int) -> type:
    """The unsigned integer type for label values up to `largest` (at least uint16)."""
    return np.uint16 if largest < 2**16 else np.uint32
