"""Pseudo-healthy latent inpainting (DiffuGTS refinement, stage 1).

The coarse anomaly mask is dilated (the tumour border must be repainted too), brought to the
latent grid, and the latent is noised to a strength s and denoised with the *normal* prompt.
After every reverse step the region outside the mask is replaced by the input latent noised to
the same level (RePaint / Blended Latent Diffusion known-region replacement), so only the
masked region is re-imagined as healthy tissue and the rest stays the image's own.

The loop uses the scheduler's real inference timesteps (`set_timesteps`) and the diffusers
img2img convention for strength, unlike the public unofficial port which fed loop indices to the
UNet as timesteps.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage


def dilate_mask(mask: torch.Tensor, iterations: int) -> torch.Tensor:
    """Binary dilation of (B, H, W) masks by `iterations` pixels (3×3 cross, like scipy's default)."""
    if iterations <= 0:
        return mask.bool().clone()
    out = np.stack([ndimage.binary_dilation(m, iterations=iterations) if m.any() else m
                    for m in mask.bool().cpu().numpy()])
    return torch.from_numpy(out)


def mask_to_latent(mask: torch.Tensor, latent_size: tuple[int, int]) -> torch.Tensor:
    """(B, H, W) pixel mask → (B, 1, h, w) bool latent mask.

    Max-pooling (a latent cell is repainted if *any* of its pixels is masked) rather than nearest
    sampling: a latent cell drives a whole 8×8 patch after decoding, so a partly covered cell must
    be repainted or the lesion edge survives into H.
    """
    pooled = F.adaptive_max_pool2d(mask.float()[:, None], latent_size)
    return pooled > 0.5


def strength_timesteps(scheduler: Any, num_inference_steps: int, strength: float) -> torch.Tensor:
    """The reverse timesteps for noising strength s, as diffusers img2img: the last
    int(N·s) of N evenly spaced inference timesteps."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must lie in [0, 1], got {strength}")
    scheduler.set_timesteps(num_inference_steps)
    init = min(int(num_inference_steps * strength), num_inference_steps)
    start = num_inference_steps - init
    return scheduler.timesteps[start * scheduler.order:]


@torch.no_grad()
def pseudo_healthy_inpaint(unet: Any, scheduler: Any, latents: torch.Tensor, latent_mask: torch.Tensor,
                           context: torch.Tensor, strength: float = 0.7, num_inference_steps: int = 20,
                           generator: torch.Generator | None = None,
                           step_callback: Callable[[int, int], None] | None = None,
                           noise: torch.Tensor | None = None, negative_context: torch.Tensor | None = None,
                           guidance_scale: float = 1.0) -> torch.Tensor:
    """Repaint `latent_mask` of `latents` under `context` (the normal prompt's embeddings).

    With `guidance_scale` > 1 and a `negative_context` (the anomaly prompt's embeddings) each step
    uses classifier-free guidance, as Stable Diffusion's img2img does with a negative prompt:
    eps = eps(negative) + g·(eps(normal) − eps(negative)), steering the repaint towards "healthy
    <organ>" and away from "<organ> tumour" (one UNet call on the doubled batch). g = 1 is the
    normal prompt alone.

    latents: (B, 4, h, w) scaled VAE latents of the input; latent_mask: (B, 1, h, w) bool, True
    where to repaint; context: (B, 77, D) or (1, 77, D); noise: the (B, 4, h, w) draw to use
    (per slice, so the result does not depend on the batch), else drawn from `generator`.
    Returns the pseudo-healthy latents.
    Invariants (tested): outside the mask the result equals `latents` exactly; an empty mask
    returns `latents` unchanged, so decoding gives the plain VAE reconstruction.
    `scheduler` is modified (set_timesteps); pass a private copy.
    """
    timesteps = strength_timesteps(scheduler, num_inference_steps, strength)
    mask = latent_mask.to(latents.device).bool().expand_as(latents)
    if len(timesteps) == 0 or not bool(mask.any()):
        return latents.clone()
    if context.shape[0] == 1 and latents.shape[0] > 1:
        context = context.expand(latents.shape[0], -1, -1)
    guided = negative_context is not None and guidance_scale != 1.0
    if guided:
        negative_context = negative_context.expand(latents.shape[0], -1, -1)
        context = torch.cat([negative_context, context])
    # One noise draw for both the start point and the known region: with DDIM (eta = 0) the
    # known region then follows exactly the trajectory DDIM itself would take, so the seam
    # between repainted and kept latents carries no noise mismatch.
    if noise is None:
        noise = torch.randn(latents.shape, generator=generator, dtype=torch.float32,
                            device=generator.device if generator is not None else "cpu")
    noise = noise.to(latents.device, latents.dtype)
    z = scheduler.add_noise(latents, noise, timesteps[:1])  # the whole latent noised to strength s
    for i, t in enumerate(timesteps):
        model_input = scheduler.scale_model_input(z, t)
        if guided:
            model_input = torch.cat([model_input, model_input])
        eps = unet(model_input.to(unet.dtype), t, encoder_hidden_states=context.to(unet.dtype)).sample.float()
        if guided:
            negative, positive = eps.chunk(2)
            eps = negative + guidance_scale * (positive - negative)
        z = scheduler.step(eps, t, z).prev_sample
        if i + 1 < len(timesteps):
            known = scheduler.add_noise(latents, noise, timesteps[i + 1:i + 2])
        else:
            known = latents  # t = 0: the known region is the input latent itself
        z = torch.where(mask, z, known)
        if step_callback is not None:
            step_callback(i + 1, len(timesteps))
    return z
