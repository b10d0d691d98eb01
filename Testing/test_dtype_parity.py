"""bf16 against fp32: the numbers a user gets must not change with the speed-up (issue 12).

ADZUS: the proposals from attention captured in bf16 agree with fp32 (adjusted Rand index >= 0.9)
on an input where fp32 gives several segments. Random full UNets give attention that varies
continuously with position (no clusters), where any perturbation, even fp32 noise, moves KL
merges; so the input is constructed: a self-attention layer whose tokens come from five planted
regions, with q = k projections that make attention follow the regions. It runs through the real
capture processor (bf16 q/k/v, fp32 scores) and the real merge; the bf16 VAE encoder's measured
error is applied to the same input. SDSeg: a tiny checkpoint gives the
same mask in bf16 as in fp32 through the method, with the VAE kept in fp32.
"""

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import Attention

from DiffusionSegLib.contract.events import JobContext
from DiffusionSegLib.diffusion.attention import capture_attention
from DiffusionSegLib.jobs.job import create_method
from DiffusionSegLib.methods.adzus.diffseg import (
    aggregate_attention,
    anchor_indices,
    merge_by_kl,
    non_maximum_suppression,
)
from DiffusionSegLib.tools.metrics import adjusted_rand_index, dice

SIDE, DIM, HEADS = 16, 64, 4


def planted_tokens(seed=0):
    """(1, 256, 64) hidden states of a 16×16 grid: four quadrants and a central disc, each a
    vector of its own (orthonormal within every head's 16 channels) plus noise; returns
    (tokens, region ids)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(SIDE), torch.arange(SIDE), indexing="ij")
    region = (yy >= SIDE // 2).long() * 2 + (xx >= SIDE // 2).long()
    region[(yy - 7.5) ** 2 + (xx - 7.5) ** 2 < 9] = 4
    head_dim = DIM // HEADS
    centres = torch.cat([torch.linalg.qr(torch.randn(head_dim, 5, generator=g))[0].T for _ in range(HEADS)], 1)
    tokens = centres[region.flatten()] + 0.03 * torch.randn(SIDE * SIDE, DIM, generator=g)
    return tokens[None], region


def planted_layer(seed=0):
    torch.manual_seed(seed)
    layer = Attention(DIM, heads=HEADS, dim_head=DIM // HEADS).eval()
    with torch.no_grad():  # scaled q·k = 9 h_i·h_j per head: ≈9 within a region, ≈0 across
        layer.to_q.weight.copy_(6.0 * torch.eye(DIM))
        layer.to_k.weight.copy_(6.0 * torch.eye(DIM))
    return torch.nn.ModuleDict({"attn1": layer})


def proposals(dtype, tokens=None):
    tokens = planted_tokens()[0] if tokens is None else tokens
    layers = planted_layer().to(dtype)
    with torch.no_grad(), capture_attention(layers, kinds=("self",)) as store:
        out = layers["attn1"](tokens.to(dtype))
    fused = aggregate_attention(store.maps("self"), SIDE)
    (merged,) = merge_by_kl(fused, [1.1] * 3, anchor_indices(SIDE, 16))
    return non_maximum_suppression(merged, 64).numpy(), out.float(), store.mean("self", SIDE)


def test_adzus_proposals_agree_in_bf16():
    reference, out32, maps32 = proposals(torch.float32)
    low, out16, maps16 = proposals(torch.bfloat16)
    assert len(np.unique(reference)) >= 4, "the construction must give several segments in fp32"
    _, region = planted_tokens()
    region_px = np.kron(region.numpy(), np.ones((4, 4), dtype=np.int64))
    assert adjusted_rand_index(reference, region_px) > 0.8  # fp32 finds the planted regions
    assert adjusted_rand_index(reference, low) >= 0.9
    assert maps16.dtype == torch.float32  # captured maps accumulate in fp32
    torch.testing.assert_close(maps16.sum(-1), torch.ones_like(maps16.sum(-1)), atol=1e-3, rtol=0)
    assert (maps16 - maps32).abs().max() < 0.02  # fp32 scores: only q/k rounding remains
    assert (out16 - out32).abs().max() < 0.1


def test_bf16_capture_uses_fp32_scores():
    """The scores come from fp32 q·k: with bf16 scores a sharp softmax would move by percents."""
    tokens, _ = planted_tokens()
    layers = planted_layer().to(torch.bfloat16)
    layer = layers["attn1"]
    with torch.no_grad():
        x = tokens.to(torch.bfloat16)
        q = layer.head_to_batch_dim(layer.to_q(x)).float()
        k = layer.head_to_batch_dim(layer.to_k(x)).float()
        expected = torch.softmax(q @ k.transpose(1, 2) * layer.scale, -1).view(1, HEADS, 256, 256).mean(1)
        with capture_attention(layers, kinds=("self",)) as store:
            layer(x)
    torch.testing.assert_close(store.mean("self", SIDE), expected, atol=1e-5, rtol=1e-4)


@pytest.fixture(scope="module")
def sdseg_checkpoint(tmp_path_factory):
    from test_sdseg_model import save_tiny_checkpoint

    return save_tiny_checkpoint(tmp_path_factory.mktemp("sdseg") / "ckpt")


def sdseg_result(folder, dtype):
    from sdseg_synthetic import disc_pairs

    method = create_method("sdseg", {}, None, str(folder), JobContext(dtype=dtype))
    method.load()
    images, _ = disc_pairs(4, seed=5)
    return method, method.segment(images, torch.ones(4, 32, 32, dtype=torch.bool))


def test_sdseg_bf16_matches_fp32_and_keeps_the_vae_fp32(sdseg_checkpoint):
    method32, reference = sdseg_result(sdseg_checkpoint, "float32")
    method16, low = sdseg_result(sdseg_checkpoint, "bfloat16")
    assert next(method16._model.unet.parameters()).dtype == torch.bfloat16
    assert {p.dtype for p in method16._model.vae.parameters()} == {torch.float32}
    p32, p16 = reference.probabilities, low.probabilities
    assert (p32 - p16).abs().max() < 0.05
    # A random checkpoint's mask is arbitrary: compare at the fp32 median so both classes are large.
    level = float(p32.median())
    a, b = (p32 > level).numpy(), (p16 > level).numpy()
    assert 0.2 < a.mean() < 0.8
    assert dice(a, b) >= 0.95


def test_the_vae_stays_fp32_when_the_unet_runs_in_bf16():
    from DiffusionSegLib.models.stable_diffusion import load_stable_diffusion

    fp32 = load_stable_diffusion("random:tiny-sd", "cpu", "float32", components=("vae", "unet"))
    bf16 = load_stable_diffusion("random:tiny-sd", "cpu", "bfloat16", components=("vae", "unet"))
    assert {p.dtype for p in bf16.unet.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in bf16.vae.parameters()} == {torch.float32}
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    z32 = fp32.encode_image(images)
    exact = bf16.encode_image(images, for_reconstruction=True)
    assert exact.dtype == torch.float32
    torch.testing.assert_close(exact, z32)  # reconstruction (DiffuGTS): the fp32 encoder, the same latent
    low = bf16.encode_image(images)  # latent only read by the UNet (ADZUS): bf16 through autocast
    assert low.dtype == torch.float32 and not torch.equal(low, z32)
    assert float((low - z32).norm() / z32.norm()) < 0.03
    assert {p.dtype for p in bf16.vae.parameters()} == {torch.float32}  # autocast never rounds the weights
    torch.testing.assert_close(bf16.decode_latent(z32), fp32.decode_latent(z32))


def test_adzus_proposals_agree_with_the_bf16_vae_encoder():
    """The bf16 encoder's error, with its spatial structure and at its relative size on the real
    SD v1 VAE architecture, leaves the proposals of the planted input as they are.

    A random VAE's latents do not follow image regions (they look like noise at this size), so the
    planted attention input stands for "an input where fp32 gives several segments", and what the
    encoder contributes is its measured deviation: (bf16 latent − fp32 latent) / |fp32 latent|,
    lifted into the token space and scaled by the tokens' norm."""
    from diffusers import AutoencoderKL

    from DiffusionSegLib.models.architectures import architecture
    from DiffusionSegLib.models.stable_diffusion import StableDiffusionParts
    from DiffusionSegLib.runtime.dtypes import resolve_policy

    torch.manual_seed(0)
    vae = AutoencoderKL(**architecture("sd-v1")["vae"]).eval().requires_grad_(False)
    parts = StableDiffusionParts("random:sd-v1", torch.device("cpu"), torch.bfloat16, vae=vae,
                                 policy=resolve_policy("cpu", "bfloat16"))
    image = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(3))
    z32 = parts.encode_image(image, for_reconstruction=True)
    error = (parts.encode_image(image) - z32) / z32.norm()
    assert z32.shape[-1] == SIDE and 0.001 < float(error.norm()) < 0.03
    tokens, _ = planted_tokens()
    lift = torch.linalg.qr(torch.randn(DIM, 4, generator=torch.Generator().manual_seed(1)))[0].T
    perturbed = tokens + (error[0].flatten(1).T @ lift)[None] * tokens.norm()
    reference, _, _ = proposals(torch.float32)
    assert len(np.unique(reference)) >= 4
    encoder_only, _, _ = proposals(torch.float32, perturbed)
    everything_bf16, _, _ = proposals(torch.bfloat16, perturbed)
    assert adjusted_rand_index(reference, encoder_only) >= 0.9
    assert adjusted_rand_index(reference, everything_bf16) >= 0.9


def test_sdseg_auto_sizes_the_unet_from_the_checkpoint_headers(sdseg_checkpoint, monkeypatch):
    from DiffusionSegLib.runtime import dtypes

    monkeypatch.setattr(dtypes, "cpu_has_native_bf16", lambda flags=None: True)
    method, _ = sdseg_result(sdseg_checkpoint, "auto")
    unet = method._model.unet
    assert dtypes.safetensors_parameters(sdseg_checkpoint / "unet") == dtypes.parameter_count(unet)
    assert method.policy.compute == torch.float32 and "small UNet" in method.policy.reason
    assert dtypes.safetensors_parameters(sdseg_checkpoint / "missing") is None


def test_the_latent_cache_never_serves_a_bf16_latent_to_a_reconstruction():
    from DiffusionSegLib.models.stable_diffusion import load_stable_diffusion
    from DiffusionSegLib.runtime.feature_cache import FeatureCache

    parts = load_stable_diffusion("random:tiny-sd", "cpu", "bfloat16", components=("vae", "unet"))
    images = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    cache = FeatureCache()
    with cache.activate():
        low = parts.encode_image(images)
        exact = parts.encode_image(images, for_reconstruction=True)
        again = parts.encode_image(images)
    stats = cache.describe()
    assert stats["misses"]["vae-latent"] == 2 and stats["hits"]["vae-latent"] == 1
    assert not torch.equal(low, exact) and torch.equal(low, again)
    torch.testing.assert_close(exact, parts.encode_image(images, use_cache=False, for_reconstruction=True))
