"""DiffuGTS residual logic, Otsu and AOVA map arithmetic: pure tensor invariants, no model."""

import pytest
import torch

from DiffusionSegLib.methods.diffugts.aova import (
    anomaly_map,
    body_region,
    coarse_mask,
    token_map,
)
from DiffusionSegLib.methods.diffugts.residual import (
    feature_residual,
    fuse_residuals,
    otsu_mask,
    otsu_threshold,
    pixel_residual,
)


def _planted(size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    region = torch.zeros(1, size, size, dtype=torch.bool)
    region[:, 10:20, 5:14] = True
    return region, torch.where(region, torch.tensor(0.8), torch.tensor(0.1))


def test_residual_is_zero_when_pseudo_healthy_equals_input():
    torch.manual_seed(0)
    images = torch.rand(2, 3, 32, 32)
    feats = [torch.randn(2, 8, 8, 8), torch.randn(2, 4, 16, 16)]
    region = torch.ones(2, 32, 32, dtype=torch.bool)
    pixel = pixel_residual(images, images.clone(), region)
    feature = feature_residual(feats, [f.clone() for f in feats], (32, 32))
    fused = fuse_residuals(pixel, feature, 0.5, 0.5, region)
    assert torch.count_nonzero(pixel) == 0
    assert torch.count_nonzero(feature) == 0
    assert torch.count_nonzero(fused) == 0


def test_residual_localises_a_change():
    torch.manual_seed(0)
    images = torch.rand(1, 3, 32, 32) * 0.1 + 0.4
    healthy = images.clone()
    healthy[:, :, 8:12, 20:26] = 0.0
    pixel = pixel_residual(images, healthy)
    assert pixel[0, 8:12, 20:26].min() > pixel[0].max() * 0.5
    assert pixel[0, 20:, :].max() == 0


def test_feature_residual_is_cosine_distance_and_scale_free():
    a = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)
    b = torch.tensor([0.0, 5.0]).view(1, 2, 1, 1)
    assert torch.allclose(feature_residual([a], [b], (1, 1)), torch.ones(1, 1, 1))
    assert torch.allclose(feature_residual([a], [-3 * a], (1, 1)), torch.full((1, 1, 1), 2.0))
    assert torch.allclose(feature_residual([a], [7 * a], (1, 1)), torch.zeros(1, 1, 1), atol=1e-6)


def test_fusion_weights():
    pixel, feature = torch.zeros(1, 4, 4), torch.zeros(1, 4, 4)
    pixel[0, 0, 0] = 3.0
    feature[0, 1, 1] = 0.2
    fused = fuse_residuals(pixel, feature, beta1=0.25, beta2=0.75)
    assert fused[0, 0, 0] == pytest.approx(0.25)
    assert fused[0, 1, 1] == pytest.approx(0.75)


def test_otsu_on_two_level_residual_returns_the_planted_region():
    planted, residual = _planted()
    residual = residual + 0.02 * torch.rand_like(residual)
    mask = otsu_mask(residual, torch.ones_like(planted))
    assert torch.equal(mask, planted)


def test_otsu_respects_the_region_and_flat_maps():
    planted, residual = _planted()
    region = torch.zeros_like(planted)
    region[:, :, :10] = True
    assert torch.equal(otsu_mask(residual, region), planted & region)
    flat = torch.full((1, 8, 8), 0.3)
    assert not otsu_mask(flat, torch.ones(1, 8, 8, dtype=torch.bool)).any()
    assert 0.1 < otsu_threshold(torch.tensor([0.1, 0.1, 0.8, 0.8])) < 0.8


def test_anomaly_map_prefers_the_abnormal_prompt_and_is_zero_for_equal_maps():
    planted, level = _planted()
    region = torch.ones_like(planted)
    normal = torch.rand(1, 32, 32) * 0.05
    abnormal = normal + level
    amap = anomaly_map(abnormal, normal, region)
    assert 0.0 <= float(amap.min()) and float(amap.max()) > 1.0  # absolute units, no rescale to a peak of 1
    assert torch.equal(coarse_mask(amap, region, "otsu"), planted)
    assert torch.equal(coarse_mask(amap, region, "otsu", floor=0.5), planted)
    assert torch.count_nonzero(anomaly_map(normal, normal, region)) == 0
    assert not coarse_mask(anomaly_map(normal, normal, region), region, "otsu").any()


def test_maps_differing_by_noise_give_no_coarse_mask_above_the_floor():
    """Two prompt maps that differ by 1 % noise: the old per-slice rescale to a peak of 1 and Otsu
    painted a quarter of the body; the absolute floor finds nothing, and the gate says 'noise'."""
    from DiffusionSegLib.methods.diffugts.aova import anomaly_difference
    from DiffusionSegLib.methods.diffugts.slice_evidence import gate_statistic

    generator = torch.Generator().manual_seed(0)
    normal = 0.2 + 0.05 * torch.rand(4, 32, 32, generator=generator)
    abnormal = normal * (1 + 0.01 * torch.randn(4, 32, 32, generator=generator))
    region = torch.ones(4, 32, 32, dtype=torch.bool)
    amap = anomaly_map(abnormal, normal, region)
    assert not coarse_mask(amap, region, "otsu", floor=0.5).any()
    rescaled = amap / amap.flatten(1).amax(1)[:, None, None]  # the old behaviour
    assert coarse_mask(rescaled, region, "otsu").float().mean() > 0.1
    noise_gate = gate_statistic(anomaly_difference(abnormal, normal, region), region)
    assert (noise_gate < 3.5).all()  # about 2.3 for pure noise
    planted, level = _planted()
    lesion = gate_statistic(anomaly_difference(normal[:1] + level, normal[:1], region[:1]), region[:1])
    assert lesion[0] > 10


def test_token_map_averages_the_given_tokens():
    cross = torch.zeros(1, 16, 77)
    cross[0, 5, 3] = 1.0
    cross[0, 6, 4] = 1.0
    m = token_map(cross, [3, 4])
    assert m.shape == (1, 4, 4)
    assert m[0, 1, 1] == 0.5 and m[0, 1, 2] == 0.5 and m.sum() == 1.0


def test_body_region_fills_dark_lesions():
    images = torch.zeros(1, 3, 32, 32)
    images[:, :, 4:28, 4:28] = 0.6
    images[:, :, 12:16, 12:16] = 0.0  # a dark (necrotic) core inside the body
    valid = torch.ones(1, 32, 32, dtype=torch.bool)
    body = body_region(images, valid)
    assert body[0, 13, 13] and not body[0, 1, 1]
    valid[:, :, 20:] = False
    assert not body_region(images, valid)[0, 10, 25]
