"""The fast post-processing (bounding boxes, joint histograms, lookup tables) gives exactly what
the straightforward whole-array versions give, on random label volumes. (The volume step on
proposal pieces: test_proposal_graph.py.)"""

import numpy as np
import pytest
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from DiffusionSegLib.imaging.postprocess import (
    fill_holes,
    keep_largest_component,
    match_labels_across_slices,
)


def plain_fill_holes(labels, axis):
    out = labels.copy()
    for label in [v for v in np.unique(labels) if v]:
        mask = labels == label
        filled = np.stack([ndimage.binary_fill_holes(np.take(mask, i, axis=axis))
                           for i in range(mask.shape[axis])], axis=axis)
        out[filled & (out == 0)] = label
    return out


def plain_largest(labels):
    out = np.zeros_like(labels)
    for label in [v for v in np.unique(labels) if v]:
        components, _ = ndimage.label(labels == label, structure=np.ones((3, 3, 3), bool))
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        out[components == sizes.argmax()] = label
    return out


def plain_match(labels, axis, min_iou=0.1):
    out, previous, next_id = np.zeros_like(labels), None, 1
    for index in range(labels.shape[axis]):
        plane = np.take(labels, index, axis=axis)
        ids = [int(v) for v in np.unique(plane) if v]
        if not ids:
            continue
        assigned = {}
        if previous is not None:
            prev_ids = [int(v) for v in np.unique(previous) if v]
            iou = np.array([[np.logical_and(plane == a, previous == b).sum() / np.logical_or(plane == a, previous == b).sum()
                             for b in prev_ids] for a in ids])
            for r, c in zip(*linear_sum_assignment(-iou)):
                if iou[r, c] >= min_iou:
                    assigned[ids[r]] = prev_ids[c]
        mapped = np.zeros_like(plane)
        for seg in ids:
            if seg not in assigned:
                assigned[seg], next_id = next_id, next_id + 1
            else:
                next_id = max(next_id, assigned[seg] + 1)
            mapped[plane == seg] = assigned[seg]
        selector = [slice(None)] * 3
        selector[axis] = index
        out[tuple(selector)] = mapped
        previous = mapped
    values = [v for v in np.unique(out) if v]
    lookup = np.zeros(int(out.max(initial=0)) + 1, dtype=out.dtype)
    lookup[values] = np.arange(1, len(values) + 1)
    return lookup[out]


def random_volume(rng):
    shape = tuple(int(v) for v in rng.integers(3, 24, 3))
    smooth = ndimage.zoom(rng.random((4, 5, 6)), np.array(shape) / (4, 5, 6), order=1)[:shape[0], :shape[1], :shape[2]]
    return smooth


@pytest.mark.parametrize("seed", range(12))
def test_fast_versions_equal_the_plain_ones(seed):
    rng = np.random.default_rng(seed)
    smooth = random_volume(rng)
    binary = (smooth > rng.uniform(0.3, 0.7)).astype(np.uint16)
    binary[rng.random(binary.shape) < 0.05] ^= 1
    labels = binary * int(rng.integers(1, 3))
    segments = (smooth * rng.integers(2, 7)).astype(np.uint16)
    for axis in range(3):
        assert np.array_equal(fill_holes(labels, axis), plain_fill_holes(labels, axis))
        assert np.array_equal(match_labels_across_slices(segments, axis), plain_match(segments, axis))
    assert np.array_equal(keep_largest_component(labels), plain_largest(labels))
