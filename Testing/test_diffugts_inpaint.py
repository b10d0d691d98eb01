"""Pseudo-healthy latent inpainting invariants on the tiny SD-shaped model."""

import pytest
import torch

from DiffusionSegLib.methods.diffugts.inpaint import (
    dilate_mask,
    mask_to_latent,
    pseudo_healthy_inpaint,
    strength_timesteps,
)
from DiffusionSegLib.models.stable_diffusion import load_stable_diffusion
from DiffusionSegLib.testing.models import save_tiny_stable_diffusion


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    torch.set_num_threads(1)
    path = save_tiny_stable_diffusion(tmp_path_factory.mktemp("tiny") / "sd")
    return load_stable_diffusion(str(path), "cpu")


def _fresh_scheduler(parts):
    return type(parts.scheduler).from_config(parts.scheduler.config)


def _inputs(parts):
    torch.manual_seed(0)
    images = torch.rand(2, 3, 64, 64)
    latents = parts.encode_image(images)
    context = parts.encode_prompt(["healthy brain"])
    return images, latents, context


def test_empty_mask_returns_the_vae_reconstruction(parts):
    images, latents, context = _inputs(parts)
    mask = torch.zeros(2, 1, *latents.shape[-2:], dtype=torch.bool)
    out = pseudo_healthy_inpaint(parts.unet, _fresh_scheduler(parts), latents, mask, context,
                                 strength=0.8, num_inference_steps=10)
    assert torch.equal(out, latents)
    assert torch.equal(parts.decode_latent(out), parts.decode_latent(latents))


def test_known_region_is_preserved_exactly_and_masked_region_changes(parts):
    images, latents, context = _inputs(parts)
    mask = torch.zeros(2, 1, *latents.shape[-2:], dtype=torch.bool)
    mask[:, :, 2:5, 3:6] = True
    calls = []
    out = pseudo_healthy_inpaint(parts.unet, _fresh_scheduler(parts), latents, mask, context, strength=0.6,
                                 num_inference_steps=10, generator=torch.Generator().manual_seed(1),
                                 step_callback=lambda i, n: calls.append((i, n)))
    keep = ~mask.expand_as(latents)
    assert torch.equal(out[keep], latents[keep])
    assert (out[~keep] - latents[~keep]).abs().max() > 1e-3
    assert calls == [(i, 6) for i in range(1, 7)]  # int(10 * 0.6) real scheduler steps


def test_inpainting_is_seeded(parts):
    images, latents, context = _inputs(parts)
    mask = torch.ones(2, 1, *latents.shape[-2:], dtype=torch.bool)
    run = lambda seed: pseudo_healthy_inpaint(  # noqa: E731
        parts.unet, _fresh_scheduler(parts), latents, mask, context, strength=1.0, num_inference_steps=4,
        generator=torch.Generator().manual_seed(seed))
    assert torch.equal(run(3), run(3))
    assert not torch.equal(run(3), run(4))


def test_strength_uses_the_schedulers_real_timesteps(parts):
    scheduler = _fresh_scheduler(parts)
    steps = strength_timesteps(scheduler, 50, 0.5)
    assert len(steps) == 25
    assert int(steps[0]) < 1000 and int(steps[-1]) == int(scheduler.timesteps[-1])
    assert int(steps[0]) == int(scheduler.timesteps[25])
    assert len(strength_timesteps(scheduler, 10, 0.0)) == 0
    with pytest.raises(ValueError):
        strength_timesteps(scheduler, 10, 1.5)


def test_mask_geometry():
    mask = torch.zeros(1, 64, 64, dtype=torch.bool)
    mask[0, 20, 41] = True
    dilated = dilate_mask(mask, 2)
    assert int(dilated.sum()) == 13  # a 2-step cross (diamond) around one pixel
    latent = mask_to_latent(mask, (8, 8))
    assert latent.shape == (1, 1, 8, 8) and int(latent.sum()) == 1 and latent[0, 0, 2, 5]


def test_guidance_steers_towards_the_normal_prompt_and_away_from_the_anomaly(parts):
    """eps = eps(anomaly) + g·(eps(normal) − eps(anomaly)) in one doubled-batch UNet call per
    step; g = 1 is the normal prompt alone (the previous behaviour), bit for bit."""
    images, latents, normal = _inputs(parts)
    anomaly = parts.encode_prompt(["brain tumour"])
    mask = torch.zeros(2, 1, *latents.shape[-2:], dtype=torch.bool)
    mask[:, :, 2:6, 2:6] = True
    batches = []
    hook = parts.unet.register_forward_pre_hook(lambda module, args: batches.append(args[0].shape[0]))

    def inpaint(**guidance):
        return pseudo_healthy_inpaint(parts.unet, _fresh_scheduler(parts), latents, mask, normal, strength=0.6,
                                      num_inference_steps=10, generator=torch.Generator().manual_seed(1), **guidance)

    try:
        plain = inpaint()
        one = inpaint(negative_context=anomaly, guidance_scale=1.0)
        calls_before = len(batches)
        guided = inpaint(negative_context=anomaly, guidance_scale=7.5)
    finally:
        hook.remove()
    assert torch.equal(plain, one)
    assert batches[calls_before:] == [4] * 6   # both halves in one call, every step
    keep = ~mask.expand_as(latents)
    assert torch.equal(guided[keep], latents[keep])
    assert (guided[~keep] - plain[~keep]).abs().max() > 1e-3
