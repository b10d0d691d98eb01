"""A literal numpy port of DiffSeg's published iterative attention merging, as a TEST ORACLE.

Written here from the algorithm in google/diffseg `diffseg/segmentor.py` (`generate_sampling_grid`,
`KL`, `mask_merge`, the merging loop of `generate_masks`); not part of the library. It keeps the
reference's shapes and control flow on purpose - the anchor grid indexed as attns[x, y], the KL as
½Σx(log x − log Y) − ½ΣY(log x − log Y), the strict `<`, iteration 1 averaging every query map
within tau of each anchor, later iterations greedy in index order with a proposal allowed to feed
several merged maps - so that `DiffusionSegLib.methods.adzus.diffseg.merge_by_kl` (matrix form, torch) can be
checked against it. One deliberate difference: the reference casts iteration 1's KL to float16 to
fit a GPU; this port computes every KL in float64, and the tests keep inputs whose distances are
not within rounding of tau.
"""

from __future__ import annotations

import numpy as np


def sampling_grid(latent_size: int, num_points: int) -> np.ndarray:
    """(M², 2) integer anchor coordinates: the reference's centred grid (63 → latent_size − 1)."""
    last = latent_size - 1
    segment_len = last // (num_points - 1)
    total_len = segment_len * (num_points - 1)
    start = (last - total_len) // 2
    x_new = np.linspace(start, total_len + start, num_points)
    y_new = np.linspace(start, total_len + start, num_points)
    x_new, y_new = np.meshgrid(x_new, y_new, indexing="ij")
    return np.concatenate([x_new.reshape(-1, 1), y_new.reshape(-1, 1)], axis=-1).astype(int)


def kl(x: np.ndarray, big_y: np.ndarray) -> np.ndarray:
    """The reference's symmetric KL over the last two axes, broadcasting x against Y."""
    quotient = np.log(x) - np.log(big_y)
    return (x * quotient).sum(axis=(-2, -1)) / 2 - (big_y * quotient).sum(axis=(-2, -1)) / 2


def mask_merge(iteration: int, attns: np.ndarray, thresholds: list[float], grid: np.ndarray | None = None
               ) -> np.ndarray:
    side = attns.shape[-1]
    if iteration == 0:
        # attns: (L, L, L, L), query (x, y) → its map over keys
        anchors = attns[grid[:, 0], grid[:, 1], :, :][:, None]          # (A, 1, L, L)
        flat = attns.reshape(1, side * side, side, side)                # (1, L², L, L)
        kl_bin = (kl(anchors, flat) < thresholds[iteration]).astype(np.float64)  # (A, L²)
        merged = kl_bin @ attns.reshape(-1, side * side) / kl_bin.sum(1, keepdims=True)
        return merged.reshape(-1, side, side)
    matched: set[int] = set()
    new_attns = []
    for i, point in enumerate(attns):
        if i in matched:
            continue
        matched.add(i)
        kl_bin = kl(point, attns) < thresholds[iteration]
        if kl_bin.sum() > 0:
            for index in np.arange(len(attns))[kl_bin.reshape(-1)]:
                matched.add(int(index))
            new_attns.append(attns[kl_bin].mean(0).reshape(1, side, side))
    return np.array(new_attns)


def generate_proposals(attns: np.ndarray, thresholds: list[float], grid: np.ndarray) -> np.ndarray:
    """The merging loop of `generate_masks`: (L, L, L, L) → (K, L, L) proposals."""
    merged = attns
    for iteration in range(len(thresholds)):
        merged = mask_merge(iteration, merged if iteration else attns, thresholds, grid if iteration == 0 else None)
    return merged[:, 0] if merged.ndim == 4 else merged
