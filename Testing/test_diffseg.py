"""DiffSeg post-processing: aggregation, anchors, KL, merging, refinement, NMS."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from scipy.stats import entropy

from DiffusionSegLib.methods.adzus.diffseg import (
    aggregate_attention,
    anchor_grid,
    anchor_indices,
    merge_by_kl,
    non_maximum_suppression,
    refine_by_kmeans,
    resolution_weights,
    symmetric_kl,
    symmetric_kl_direct,
)


def random_maps(resolutions, batch=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return {s: torch.randn(batch, s * s, s * s, generator=generator).mul(3).softmax(-1) for s in resolutions}


def adjusted_rand_index(a: np.ndarray, b: np.ndarray) -> float:
    """ARI from the contingency table (Hubert & Arabie), for comparing partitions up to ids."""
    _, a = np.unique(a.ravel(), return_inverse=True)
    _, b = np.unique(b.ravel(), return_inverse=True)
    table = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(table, (a, b), 1)
    pairs = lambda x: (x * (x - 1) / 2).sum()  # noqa: E731
    index, rows, cols, total = pairs(table), pairs(table.sum(1)), pairs(table.sum(0)), pairs(np.array([a.size]))
    expected = rows * cols / total
    maximum = (rows + cols) / 2
    return 1.0 if maximum == expected else float((index - expected) / (maximum - expected))


# --- aggregation -------------------------------------------------------------------------------

def test_resolution_weights_are_diffseg_ratios():
    weights = resolution_weights([64, 32, 16, 8])
    assert weights == pytest.approx({64: 8 / 15, 32: 4 / 15, 16: 2 / 15, 8: 1 / 15})
    assert sum(weights.values()) == pytest.approx(1.0)


def test_every_aggregated_key_map_sums_to_one():
    fused = aggregate_attention(random_maps([8, 4, 2, 1]))
    assert fused.shape == (2, 64, 64) and fused.dtype == torch.float32
    torch.testing.assert_close(fused.sum(-1), torch.ones(2, 64), atol=1e-5, rtol=0)
    assert fused.min() >= 0


def test_query_tiling_for_a_single_coarse_resolution():
    fused = aggregate_attention({4: random_maps([4])[4]}, latent_size=8)
    grid = fused.reshape(2, 8, 8, 64)
    for i in range(4):
        for j in range(4):
            block = grid[:, 2 * i:2 * i + 2, 2 * j:2 * j + 2]
            assert torch.equal(block[:, 0, 0], block[:, 1, 1])
            assert torch.equal(block[:, 0, 0], block[:, 0, 1])
            assert torch.equal(block[:, 0, 0], block[:, 1, 0])
    assert not torch.equal(grid[:, 0, 0], grid[:, 2, 2])


def test_weighted_sum_of_resolutions_uses_resolution_weights():
    maps = random_maps([4, 2], batch=1, seed=3)
    both = aggregate_attention(maps)
    fine = aggregate_attention({4: maps[4]}, weights={4: 1.0})
    coarse = aggregate_attention({2: maps[2]}, latent_size=4, weights={2: 1.0})
    torch.testing.assert_close(both, fine * 4 / 6 + coarse * 2 / 6, atol=1e-7, rtol=0)


def test_key_upsampling_is_half_pixel_bilinear_like_keras():
    """2×2 → 4×4 with half-pixel centres: 1-D [a, b] → [a, ¾a+¼b, ¼a+¾b, b] (edges clamp)."""
    key_map = torch.tensor([1.0, 2.0, 3.0, 4.0]) / 10.0
    maps = {2: key_map.repeat(4, 1)[None]}  # every query attends with this key map
    fused = aggregate_attention(maps, latent_size=4)
    expected = torch.tensor([[1.0, 1.25, 1.75, 2.0],
                             [1.5, 1.75, 2.25, 2.5],
                             [2.5, 2.75, 3.25, 3.5],
                             [3.0, 3.25, 3.75, 4.0]]) / 40.0
    for query in range(16):
        torch.testing.assert_close(fused[0, query].reshape(4, 4), expected, atol=1e-7, rtol=0)


def test_generalises_to_sd2_latent_96():
    assert anchor_grid(96, 16).tolist() == list(range(2, 93, 6))
    maps = random_maps([24, 12], batch=1, seed=5)
    fused = aggregate_attention(maps, latent_size=96)
    assert fused.shape == (1, 96 * 96, 96 * 96)
    torch.testing.assert_close(fused[0, ::97].sum(-1), torch.ones(96), atol=1e-5, rtol=0)
    proposals = merge_by_kl(fused, [1.1, 1.1], anchor_indices(96, 4))
    labels = non_maximum_suppression(proposals[0], 768)
    assert labels.shape == (768, 768) and int(labels.max()) < proposals[0].shape[0]


# --- anchors and KL ----------------------------------------------------------------------------

def test_anchor_grid_matches_diffseg_for_sd_v1():
    assert anchor_grid(64, 16).tolist() == list(range(1, 62, 4))
    indices = anchor_indices(64, 16)
    assert indices.shape == (256,) and indices[0] == 65 and indices[-1] == 61 * 64 + 61
    assert anchor_grid(8, 16).tolist() == list(range(8))  # capped at the latent size


def test_symmetric_kl_properties_and_scipy_agreement():
    generator = torch.Generator().manual_seed(0)
    p = torch.rand(5, 30, generator=generator).softmax(-1)
    q = torch.rand(7, 30, generator=generator).pow(4).softmax(-1)
    matrix = symmetric_kl(p, q)
    torch.testing.assert_close(matrix, symmetric_kl_direct(p, q), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(matrix, symmetric_kl(q, p).T, atol=1e-6, rtol=0)
    assert (matrix >= 0).all()
    assert symmetric_kl(p, p).diagonal().abs().max() < 1e-5
    for i in range(5):
        for j in range(7):
            pi, qj = p[i].double().numpy(), q[j].double().numpy()
            expected = 0.5 * entropy(pi, qj) + 0.5 * entropy(qj, pi)
            assert matrix[i, j].item() == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_symmetric_kl_handles_exact_zeros_without_nan():
    p = torch.tensor([[0.5, 0.5, 0.0]])
    q = torch.tensor([[0.0, 0.5, 0.5]])
    distance = symmetric_kl(p, q)
    assert torch.isfinite(distance).all() and distance.item() > 5  # large, not NaN
    assert symmetric_kl(p, p).item() == pytest.approx(0.0, abs=1e-6)


# --- planted partition -------------------------------------------------------------------------

def planted_attention(labels: np.ndarray, sigma: float = 1.0, noise: float = 0.0, seed: int = 0) -> torch.Tensor:
    """Af[q] = normalised blurred indicator of the region that query q belongs to."""
    rng = np.random.default_rng(seed)
    side = labels.shape[0]
    region_maps = {}
    for region in np.unique(labels):
        blurred = gaussian_filter((labels == region).astype(np.float64), sigma, mode="nearest") + 1e-6
        region_maps[region] = blurred.ravel() / blurred.sum()
    rows = np.stack([region_maps[r] for r in labels.ravel()])
    if noise:
        rows = rows * np.exp(noise * rng.standard_normal(rows.shape))
        rows /= rows.sum(1, keepdims=True)
    return torch.from_numpy(rows).float().reshape(1, side * side, side * side)


def quadrants_and_stripes(side: int = 16) -> np.ndarray:
    labels = np.zeros((side, side), dtype=int)
    half, quarter = side // 2, side // 4
    labels[:half, half:] = 1
    labels[half:, :half] = 2
    labels[half:, half:] = 3
    labels[:half, :quarter] = 4
    return labels


def test_planted_partition_is_recovered_exactly():
    labels = quadrants_and_stripes()
    fused = planted_attention(labels, noise=0.05)
    (proposals,) = merge_by_kl(fused, [1.1, 1.1, 1.1], anchor_indices(16, 8))
    assert proposals.shape[0] == 5
    segments = non_maximum_suppression(proposals, 16).numpy()
    assert adjusted_rand_index(segments, labels) == pytest.approx(1.0)


def test_planted_equal_regions_recovered_at_image_resolution():
    """With equal-area regions the upsampled boundaries fall exactly between latent pixels.
    (Unequal areas shift them: a small region's normalised map has larger values.)"""
    labels = np.kron(np.arange(4).reshape(2, 2), np.ones((8, 8), dtype=int))
    (proposals,) = merge_by_kl(planted_attention(labels, noise=0.05), [1.1] * 3, anchor_indices(16, 8))
    upsampled = non_maximum_suppression(proposals, 64).numpy()
    assert adjusted_rand_index(upsampled, np.kron(labels, np.ones((4, 4), dtype=int))) == pytest.approx(1.0)


def test_raising_tau_never_increases_segment_count():
    labels = quadrants_and_stripes()
    fused = planted_attention(labels, sigma=2.0, noise=0.2, seed=1)
    counts = []
    for tau in (0.001, 0.05, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0):
        (proposals,) = merge_by_kl(fused, [tau] * 3, anchor_indices(16, 8))
        counts.append(int(np.unique(non_maximum_suppression(proposals, 16).numpy()).size))
    assert counts == sorted(counts, reverse=True)
    assert counts[0] > 5 and counts[-1] == 1


def test_anchor_order_changes_ids_not_partition():
    labels = quadrants_and_stripes()
    fused = planted_attention(labels, noise=0.05)
    anchors = anchor_indices(16, 8)
    permuted = anchors[torch.randperm(anchors.numel(), generator=torch.Generator().manual_seed(2))]
    a = non_maximum_suppression(merge_by_kl(fused, [1.1] * 3, anchors)[0], 16).numpy()
    b = non_maximum_suppression(merge_by_kl(fused, [1.1] * 3, permuted)[0], 16).numpy()
    assert adjusted_rand_index(a, b) == pytest.approx(1.0)


def test_merge_is_batched_over_images():
    labels = quadrants_and_stripes()
    fused = torch.cat([planted_attention(labels), planted_attention(labels.T.copy())])
    results = merge_by_kl(fused, [1.1] * 3, anchor_indices(16, 8))
    assert [r.shape[0] for r in results] == [5, 5]
    second = non_maximum_suppression(results[1], 16).numpy()
    assert adjusted_rand_index(second, labels.T) == pytest.approx(1.0)


def test_merge_checks_for_cancellation():
    calls = []
    fused = planted_attention(quadrants_and_stripes())
    merge_by_kl(fused, [1.1] * 3, anchor_indices(16, 4), check=lambda: calls.append(1))
    assert len(calls) == 2


# --- refinement and NMS ------------------------------------------------------------------------

def test_kmeans_refinement_keeps_partition_and_drops_empty_clusters():
    labels = quadrants_and_stripes()
    fused = planted_attention(labels, noise=0.1)[0]
    (proposals,) = merge_by_kl(fused[None], [1.1] * 3, anchor_indices(16, 8))
    far_away = torch.zeros(1, fused.shape[1])
    far_away[0, 0] = 50.0  # no query map is near this centre → an empty cluster
    refined = refine_by_kmeans(fused, torch.cat([proposals, far_away]))
    assert refined.shape[0] == proposals.shape[0]
    segments = non_maximum_suppression(refined, 16).numpy()
    assert adjusted_rand_index(segments, labels) == pytest.approx(1.0)
    # Each refined proposal is exactly the mean of the query maps of one region.
    region_means = torch.stack([fused[torch.from_numpy(labels.ravel() == r)].mean(0) for r in range(5)])
    distance = torch.cdist(refined, region_means)
    assert distance.min(1).values.max() < 1e-6


def test_nms_is_argmax_of_upsampled_proposals():
    proposals = torch.zeros(2, 4)
    proposals[0, [0, 2]] = 1.0  # left column of a 2×2 latent
    proposals[1, [1, 3]] = 1.0  # right column
    labels = non_maximum_suppression(proposals, 8)
    assert labels.shape == (8, 8)
    assert (labels[:, :4] == 0).all() and (labels[:, 4:] == 1).all()
