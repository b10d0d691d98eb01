"""SDSeg's noise schedule and latent estimation (reference/methods.md 7.3)."""

import pytest
import torch

from DiffusionSegLib.methods.sdseg.schedule import (
    FINAL_T,
    add_noise,
    estimate_clean_latent,
    make_ddim_scheduler,
    make_ddpm_scheduler,
)


def test_ldm_schedule_values():
    abar = make_ddpm_scheduler().alphas_cumprod
    assert abar[999].item() == pytest.approx(6.687e-4, rel=1e-3)
    assert abar[0].item() == pytest.approx(0.9985, abs=1e-6)
    # the single-step noise amplification the latent loss exists for
    assert (1 / abar[999]).sqrt().item() == pytest.approx(38.67, abs=0.05)
    # LDM's "linear" = linspace(sqrt(b0), sqrt(b1))**2, not diffusers' plain "linear"
    betas = make_ddpm_scheduler().betas
    assert betas[500].item() == pytest.approx(torch.linspace(0.0015 ** 0.5, 0.0155 ** 0.5, 1000)[500].item() ** 2)


def test_latent_estimation_is_exact_when_the_noise_is_right_at_every_t():
    g = torch.Generator().manual_seed(0)
    abar = make_ddpm_scheduler().alphas_cumprod
    z0 = torch.randn(1000, 4, 4, 4, generator=g)
    eps = torch.randn(z0.shape, generator=g)
    t = torch.arange(1000)
    z_t = add_noise(abar, z0, eps, t)
    z0_hat = estimate_clean_latent(abar, z_t, eps, t)
    assert z0_hat.dtype == torch.float32
    assert (z0_hat - z0).abs().max().item() < 1e-4
    # and a wrong noise estimate is amplified ~38.7x at t = 999 but barely at t = 0
    wrong = estimate_clean_latent(abar, z_t, eps + 0.01, t)
    err = (wrong - z0).abs().flatten(1).mean(1)
    assert err[999].item() == pytest.approx(0.01 * 38.66, rel=0.01)
    assert err[0].item() < 0.001


def test_forward_process_matches_diffusers_add_noise():
    scheduler = make_ddpm_scheduler()
    g = torch.Generator().manual_seed(1)
    z0, eps = torch.randn(6, 4, 8, 8, generator=g), torch.randn(6, 4, 8, 8, generator=g)
    t = torch.tensor([0, 1, 250, 500, 998, FINAL_T])
    ours = add_noise(scheduler.alphas_cumprod, z0, eps, t)
    torch.testing.assert_close(ours, scheduler.add_noise(z0, eps, t), atol=1e-5, rtol=1e-5)


def test_ddim_starts_at_the_single_step_timestep():
    scheduler = make_ddim_scheduler()
    for steps in (10, 50):
        scheduler.set_timesteps(steps)
        assert int(scheduler.timesteps[0]) == FINAL_T
        assert len(scheduler.timesteps) == steps
    torch.testing.assert_close(scheduler.alphas_cumprod, make_ddpm_scheduler().alphas_cumprod)


def test_a_pretrained_schedule_that_differs_is_reported(tmp_path):
    import json

    from DiffusionSegLib.methods.sdseg.schedule import schedule_mismatch

    (tmp_path / "scheduler").mkdir()
    config = {"_class_name": "PNDMScheduler", "beta_start": 0.00085, "beta_end": 0.012,
              "beta_schedule": "scaled_linear", "num_train_timesteps": 1000}
    (tmp_path / "scheduler" / "scheduler_config.json").write_text(json.dumps(config))
    assert "0.00085" in schedule_mismatch(str(tmp_path))
    config.update(beta_start=0.0015, beta_end=0.0155)
    (tmp_path / "scheduler" / "scheduler_config.json").write_text(json.dumps(config))
    assert schedule_mismatch(str(tmp_path)) is None
    assert schedule_mismatch(str(tmp_path / "nowhere")) is None
