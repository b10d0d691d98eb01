"""Reaching timestep t: schedule, exact DDIM invertibility, agreement with diffusers' DDIM step,
seeded forward noising, v-prediction conversion, and a near round trip with the tiny UNet."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from diffusers import DDIMScheduler

from DiffusionSegLib.diffusion.inversion import (
    _ddim_move,
    clean_alpha_of,
    ddim_invert,
    ddim_sample,
    forward_noise,
    inversion_timesteps,
    reach_timestep,
    unet_epsilon,
)
from DiffusionSegLib.models.stable_diffusion import load_stable_diffusion

SD_SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                    clip_sample=False, set_alpha_to_one=False, steps_offset=1)


def test_inversion_schedule():
    levels = inversion_timesteps(300, 50)
    assert levels == list(range(0, 301, 20)) and len(levels) - 1 == 15
    assert inversion_timesteps(310, 50)[-3:] == [280, 300, 310]
    assert inversion_timesteps(10, 50) == [0, 10]
    assert inversion_timesteps(0, 50) == [0]
    assert inversion_timesteps(300, 1000) == list(range(301))
    with pytest.raises(ValueError):
        inversion_timesteps(1000, 50)


def test_sd_schedule_values():
    scheduler = DDIMScheduler(**SD_SCHEDULER)
    assert float(scheduler.alphas_cumprod[300]) == pytest.approx(0.5905, abs=1e-4)
    assert clean_alpha_of(scheduler) == pytest.approx(float(scheduler.alphas_cumprod[0]))
    assert clean_alpha_of(DDIMScheduler(**{**SD_SCHEDULER, "set_alpha_to_one": True})) == 1.0


def test_ddim_is_exactly_invertible_with_a_constant_epsilon_model():
    alphas = DDIMScheduler(**SD_SCHEDULER).alphas_cumprod.double()
    generator = torch.Generator().manual_seed(0)
    clean = torch.randn(2, 4, 8, 8, generator=generator, dtype=torch.float64)
    constant = torch.randn(2, 4, 8, 8, generator=generator, dtype=torch.float64)
    calls: list[int] = []

    def epsilon(latents, timestep):
        calls.append(timestep)
        return constant

    levels = inversion_timesteps(300, 50)
    clean_alpha = float(alphas[0])
    noisy = ddim_invert(epsilon, clean, levels, alphas, clean_alpha)
    assert calls == levels[:-1]
    # The walk telescopes to the closed form x_t = √(ᾱ_t/ᾱ_0)(z0 − √(1−ᾱ_0) ε) + √(1−ᾱ_t) ε.
    a_t = float(alphas[300])
    expected = (a_t / clean_alpha) ** 0.5 * (clean - (1 - clean_alpha) ** 0.5 * constant) + (1 - a_t) ** 0.5 * constant
    torch.testing.assert_close(noisy, expected, atol=1e-12, rtol=0)
    calls.clear()
    restored = ddim_sample(epsilon, noisy, levels, alphas, clean_alpha)
    assert calls == levels[:0:-1]
    torch.testing.assert_close(restored, clean, atol=1e-12, rtol=0)


def test_ddim_move_matches_diffusers_ddim_step():
    scheduler = DDIMScheduler(**SD_SCHEDULER)
    scheduler.set_timesteps(50)
    generator = torch.Generator().manual_seed(1)
    sample = torch.randn(1, 4, 8, 8, generator=generator)
    epsilon = torch.randn(1, 4, 8, 8, generator=generator)
    expected = scheduler.step(epsilon, 321, sample, eta=0.0).prev_sample
    alphas = scheduler.alphas_cumprod
    ours = _ddim_move(sample, epsilon, float(alphas[321]), float(alphas[301]))
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)


def test_forward_noise_is_seeded_and_has_the_right_variance():
    alphas = DDIMScheduler(**SD_SCHEDULER).alphas_cumprod
    clean = torch.zeros(4, 4, 32, 32)
    a = forward_noise(clean, 300, alphas, seed=7)
    assert torch.equal(a, forward_noise(clean, 300, alphas, seed=7))
    assert not torch.equal(a, forward_noise(clean, 300, alphas, seed=8))
    assert a.std().item() == pytest.approx((1 - float(alphas[300])) ** 0.5, rel=0.05)
    ones = forward_noise(torch.ones(4, 4, 32, 32), 300, alphas, seed=7)
    torch.testing.assert_close(ones - a, torch.full_like(a, float(alphas[300]) ** 0.5), atol=1e-6, rtol=0)


def test_v_prediction_is_converted_to_epsilon():
    alphas = DDIMScheduler(**SD_SCHEDULER).alphas_cumprod.double()
    generator = torch.Generator().manual_seed(2)
    clean, noise = torch.randn(2, 1, 4, 4, 4, generator=generator)
    t = 500
    a = float(alphas[t])
    noisy = a ** 0.5 * clean + (1 - a) ** 0.5 * noise

    class VModel:
        dtype = torch.float32

        def __call__(self, latents, timestep, encoder_hidden_states):
            return SimpleNamespace(sample=a ** 0.5 * noise - (1 - a) ** 0.5 * clean)

    epsilon = unet_epsilon(VModel(), torch.zeros(1, 3, 2), alphas, "v_prediction")
    torch.testing.assert_close(epsilon(noisy, t), noise, atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def tiny(tiny_sd_path):
    return load_stable_diffusion(str(tiny_sd_path), "cpu", components=("unet", "text_encoder", "tokenizer",
                                                                         "scheduler"))


def test_tiny_unet_round_trip_is_close(tiny):
    generator = torch.Generator().manual_seed(3)
    clean = torch.randn(1, 4, 8, 8, generator=generator)
    context = tiny.encode_prompt([""])
    steps: list[tuple[int, int]] = []
    with torch.no_grad():
        noisy = reach_timestep("ddim_inversion", clean, 300, unet=tiny.unet, scheduler=tiny.scheduler,
                               context=context, inversion_steps=20, on_step=lambda d, n: steps.append((d, n)))
        alphas = tiny.scheduler.alphas_cumprod.double()
        epsilon = unet_epsilon(tiny.unet, context, alphas)
        restored = ddim_sample(epsilon, noisy, inversion_timesteps(300, 20), alphas, clean_alpha_of(tiny.scheduler))
    assert steps == [(i, 6) for i in range(1, 7)]
    moved = (noisy - clean).norm() / clean.norm()
    error = (restored - clean).norm() / clean.norm()
    assert moved > 0.2  # the inversion really went somewhere
    assert error < 0.03  # a few per cent, as expected from DDIM's first-order error


def test_clean_mode_returns_the_latent_and_unknown_mode_fails(tiny):
    clean = torch.randn(1, 4, 8, 8)
    same = reach_timestep("clean", clean, 300, unet=tiny.unet, scheduler=tiny.scheduler, context=None)
    assert same is clean
    with pytest.raises(ValueError, match="unknown latent mode"):
        reach_timestep("sdedit", clean, 300, unet=tiny.unet, scheduler=tiny.scheduler, context=None)


def test_forward_noise_of_a_slice_does_not_depend_on_the_batch_size():
    alphas = torch.linspace(0.999, 0.01, 1000)
    clean = torch.zeros(4, 4, 8, 8)
    together = forward_noise(clean, 300, alphas, seed=3)
    one_by_one = torch.cat([forward_noise(clean[i:i + 1], 300, alphas, seed=3) for i in range(4)])
    assert torch.equal(together, one_by_one)
    assert not torch.equal(together, forward_noise(clean, 300, alphas, seed=4))
