"""The LDM noise schedule SDSeg is trained with, and the latent estimation it relies on.

LDM's `linear` schedule (linear_start 0.0015, linear_end 0.0155) is linspace(sqrt(b0), sqrt(b1))**2,
which is diffusers' `scaled_linear`. With it abar_999 = 6.687e-4: an error in the predicted noise is
amplified sqrt(1/abar_999 - 1) ≈ 38.7 times in the single-step estimate, which is why SDSeg adds a
loss on the estimated clean latent and why that estimate is always computed in fp32.
"""

from __future__ import annotations

import torch

NUM_TRAIN_TIMESTEPS = 1000
BETA_START = 0.0015
BETA_END = 0.0155
FINAL_T = NUM_TRAIN_TIMESTEPS - 1


def make_ddpm_scheduler():
    """The training scheduler (diffusers DDPMScheduler, epsilon prediction)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=NUM_TRAIN_TIMESTEPS, beta_start=BETA_START,
                         beta_end=BETA_END, beta_schedule="scaled_linear",
                         prediction_type="epsilon", clip_sample=False)


def make_ddim_scheduler():
    """The multi-step sampler for the DDIM option: same betas, so the same trained model applies.

    `set_alpha_to_one=False` keeps the last step's target at abar_0 as LDM's DDIM does;
    `timestep_spacing="trailing"` makes the first step t = 999, the single-step case's t."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(num_train_timesteps=NUM_TRAIN_TIMESTEPS, beta_start=BETA_START,
                         beta_end=BETA_END, beta_schedule="scaled_linear",
                         prediction_type="epsilon", clip_sample=False, set_alpha_to_one=False,
                         timestep_spacing="trailing")


def _abar(alphas_cumprod: torch.Tensor, timesteps: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    abar = alphas_cumprod.to(device=like.device, dtype=torch.float32)[timesteps.to(like.device).long()]
    return abar.view(-1, *([1] * (like.dim() - 1)))


def add_noise(alphas_cumprod: torch.Tensor, z0: torch.Tensor, noise: torch.Tensor,
              timesteps: torch.Tensor) -> torch.Tensor:
    """z_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) eps (the forward process, in fp32)."""
    abar = _abar(alphas_cumprod, timesteps, z0)
    return (abar.sqrt() * z0.float() + (1.0 - abar).sqrt() * noise.float()).to(z0.dtype)


def estimate_clean_latent(alphas_cumprod: torch.Tensor, z_t: torch.Tensor, eps_hat: torch.Tensor,
                          timesteps: torch.Tensor) -> torch.Tensor:
    """Latent estimation: z0_hat = (z_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t), always fp32.

    The reference code computes it with fp32 buffers even under autocast; at t = 999 the noise
    error is multiplied by ~38.7, which fp16 would turn into visible speckle."""
    abar = _abar(alphas_cumprod, timesteps, z_t)
    return (z_t.float() - (1.0 - abar).sqrt() * eps_hat.float()) / abar.sqrt()


def schedule_mismatch(reference: str) -> str | None:
    """A sentence on how the noise schedule of a pretrained model's own scheduler differs from the
    one SDSeg trains with, or None (same schedule, or no scheduler config to read).

    SDSeg keeps LDM's schedule for every starting point; a Stable Diffusion v1 UNet was trained with
    beta 0.00085-0.012 (scaled_linear), so its prior is then used at other noise levels."""
    try:
        from diffusers import DDPMScheduler

        config = DDPMScheduler.load_config(reference, subfolder="scheduler")
    except Exception:  # no scheduler folder, or offline: nothing to compare with
        return None
    theirs = (float(config.get("beta_start", BETA_START)), float(config.get("beta_end", BETA_END)),
              str(config.get("beta_schedule", "scaled_linear")))
    if abs(theirs[0] - BETA_START) < 1e-9 and abs(theirs[1] - BETA_END) < 1e-9 and theirs[2] == "scaled_linear":
        return None
    return (f"The pretrained model was trained with beta {theirs[0]}-{theirs[1]} ({theirs[2]}); SDSeg trains it with "
            f"LDM's beta {BETA_START}-{BETA_END} (scaled_linear), so its prior meets other noise levels than it "
            f"learned. Fine-tuning adapts it; see docs/zero-shot.md.")
