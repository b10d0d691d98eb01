"""`merge_by_kl` against a literal port of DiffSeg's `mask_merge` (Testing/diffseg_reference.py) on
fused maps that are NOT cleanly separable: smooth, overlapping attention whose pairwise distances
spread across every tau tested, so a wrong KL form, a `<`/`<=` swap, a different anchor order or
a non-greedy later iteration changes the proposals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffseg_reference import generate_proposals, sampling_grid
from scipy.ndimage import gaussian_filter

from DiffusionSegLib.methods.adzus.diffseg import (
    anchor_indices,
    merge_by_kl,
    symmetric_kl,
)

SIDE, POINTS = 16, 6


def smooth_fused(seed: int) -> np.ndarray:
    """(L², L²) rows = distributions: a Gaussian neighbourhood of each query, tilted by a smooth
    random field coupled to a second smooth field at the query (texture without clean regions)."""
    rng = np.random.default_rng(seed)
    field = gaussian_filter(rng.normal(size=(SIDE, SIDE)), 2.0)
    field = field / field.std()
    coupling = gaussian_filter(rng.normal(size=(SIDE, SIDE)), 3.0)
    coupling = coupling / coupling.std()
    yy, xx = np.mgrid[:SIDE, :SIDE]
    keys = np.stack([yy.ravel(), xx.ravel()], 1).astype(float)
    rows = []
    for (qy, qx), c in zip(keys, coupling.ravel()):
        logits = -((keys - (qy, qx)) ** 2).sum(1) / (2 * 3.0 ** 2) + 2.0 * c * field.ravel()
        p = np.exp(logits - logits.max())
        rows.append(p / p.sum())
    return np.array(rows)


@pytest.mark.parametrize("tau", [0.05, 0.3, 1.1, 3.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_merge_by_kl_matches_diffseg_mask_merge(tau, seed):
    fused = smooth_fused(seed)
    thresholds = [tau] * 3
    expected = generate_proposals(fused.reshape(SIDE, SIDE, SIDE, SIDE), thresholds, sampling_grid(SIDE, POINTS))
    (ours,) = merge_by_kl(torch.from_numpy(fused).float()[None], thresholds, anchor_indices(SIDE, POINTS))
    assert ours.shape[0] == expected.shape[0]
    np.testing.assert_allclose(ours.numpy(), expected.reshape(len(expected), -1), rtol=0, atol=2e-6)
    # not cleanly separable: the first iteration's distances spread across tau on both sides, and
    # none lies within rounding of it (so fp32 vs float64 cannot decide a comparison)
    distances = symmetric_kl(torch.from_numpy(fused[anchor_indices(SIDE, POINTS).numpy()]),
                             torch.from_numpy(fused)).double()
    near = distances[(distances - tau).abs() < 0.5 * tau]
    assert near.numel() > 50
    assert float((distances - tau).abs().min()) > 2e-6  # fp32 rounding of these distances: ~1e-7


def test_the_oracle_grid_is_diffsegs_for_sd_v1():
    assert sorted(set(sampling_grid(64, 16)[:, 0].tolist())) == list(range(1, 62, 4))
    assert np.array_equal(sampling_grid(64, 16)[:, 0] * 64 + sampling_grid(64, 16)[:, 1],
                          anchor_indices(64, 16).numpy())
