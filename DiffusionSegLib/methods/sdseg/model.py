"""The SDSeg network: frozen VAE, trainable image conditioner, 8-channel UNet, and its losses.

Shapes: images and masks are (B, 3, S, S) in [-1, 1]; latents are (B, C, S/f, S/f) with C the VAE's
latent channels (4 for SD) and f its downsampling factor (8 for SD). The UNet sees
concat[z_t, c] (noisy mask latent first, then the image condition), as in the reference code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .schedule import (
    FINAL_T,
    add_noise,
    estimate_clean_latent,
    make_ddim_scheduler,
    make_ddpm_scheduler,
)


class Conditioner(nn.Module):
    """SDSeg's `AEEncoderEmbedder`: the VAE encoder (double_z, so 2C channels) plus a new 1x1 conv 2C -> C.

    Initialised from the frozen VAE's encoder (not `quant_conv`) and then trained, so the image
    condition starts in a space the VAE already understands. Its output is used as is: not sampled,
    not multiplied by the scale factor."""

    def __init__(self, vae_config: dict, dropout: float = 0.2):
        super().__init__()
        from diffusers.models.autoencoders.vae import Encoder

        latent = int(vae_config["latent_channels"])
        self.encoder = Encoder(
            in_channels=vae_config["in_channels"], out_channels=latent,
            down_block_types=tuple(vae_config["down_block_types"]),
            block_out_channels=tuple(vae_config["block_out_channels"]),
            layers_per_block=vae_config["layers_per_block"], norm_num_groups=vae_config["norm_num_groups"],
            act_fn=vae_config.get("act_fn", "silu"), double_z=True,
            mid_block_add_attention=vae_config.get("mid_block_add_attention", True))
        # diffusers' Encoder has no dropout argument; the reference sets 0.2 in every resnet block.
        for module in self.encoder.modules():
            if module.__class__.__name__ == "ResnetBlock2D":
                module.dropout = nn.Dropout(dropout)
        self.project = nn.Conv2d(2 * latent, latent, kernel_size=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.project(self.encoder(images))


@dataclass
class LossTerms:
    total: torch.Tensor
    noise: torch.Tensor
    latent: torch.Tensor


class SDSegModel(nn.Module):
    """VAE (frozen) + conditioner + UNet, with `scale_factor` stored as a buffer like LDM's.

    `unet` is a diffusers UNet2DModel (the paper's unconditional LDM UNet) or, for the
    cheaper pretrained path, a UNet2DConditionModel fed a fixed all-zero text context.

    `denoiser_skip` (off by default = the paper) adds z_t to the UNet output, so the network
    only learns eps - z_t. At t = 999, eps ~ z_t, and the paper's pretrained UNet already
    knows that; a UNet trained from scratch must first learn to copy its input to ~1 % precision
    (errors are amplified 38.7x), which a short CPU run cannot afford. Loss, schedule and the
    single-step estimate are unchanged; it is a documented deviation for from-scratch training."""

    def __init__(self, vae: nn.Module, conditioner: Conditioner, unet: nn.Module, scale_factor: float = 1.0,
                 denoiser_skip: bool = False):
        super().__init__()
        self.denoiser_skip = bool(denoiser_skip)
        self.vae = vae.requires_grad_(False).eval()
        self.conditioner = conditioner
        self.unet = unet
        self.register_buffer("scale_factor", torch.tensor(float(scale_factor)))
        self.register_buffer("alphas_cumprod", make_ddpm_scheduler().alphas_cumprod.clone().float(),
                             persistent=False)

    # -- the frozen first stage -------------------------------------------------------------
    def train(self, mode: bool = True) -> "SDSegModel":
        super().train(mode)
        self.vae.eval()  # the first stage is frozen: never in train mode
        return self

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    @torch.no_grad()
    def encode_mask_unscaled(self, masks: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Posterior sample of the frozen VAE (as the reference code: `sample()`, not the mean)."""
        vae_dtype = next(self.vae.parameters()).dtype
        return self.vae.encode(masks.to(vae_dtype)).latent_dist.sample(generator).float()

    @torch.no_grad()
    def set_scale_factor_from(self, masks: torch.Tensor) -> float:
        """LDM's `scale_by_std`: scale_factor = 1 / std of the first training batch's latents."""
        z = self.encode_mask_unscaled(masks)
        self.scale_factor.fill_(1.0 / z.flatten().std().clamp_min(1e-8).item())
        return float(self.scale_factor)

    @torch.no_grad()
    def encode_mask(self, masks: torch.Tensor) -> torch.Tensor:
        return self.encode_mask_unscaled(masks) * self.scale_factor

    @torch.no_grad()
    def decode_probability(self, z0: torch.Tensor) -> torch.Tensor:
        """Decode a mask latent to a foreground probability: clamp((x+1)/2), mean over RGB."""
        vae_dtype = next(self.vae.parameters()).dtype
        x = self.vae.decode((z0 / self.scale_factor).to(vae_dtype)).sample.float()
        return ((x + 1.0) / 2.0).clamp(0.0, 1.0).mean(dim=1)

    # -- the denoiser -----------------------------------------------------------------------
    def predict_noise(self, z_t: torch.Tensor, cond: torch.Tensor, timesteps: torch.Tensor,
                      class_labels: torch.Tensor | None = None) -> torch.Tensor:
        """eps_hat = UNet(concat[z_t, c], t); class labels feed the UNet's class embedding.

        Only the UNet input is cast to the UNet's dtype (fp16 on GPU); eps_hat comes back fp32 and
        the denoiser skip adds the fp32 z_t, so no fp16 rounding of z_t reaches the estimate."""
        unet_dtype = next(self.unet.parameters()).dtype
        x = torch.cat([z_t.to(unet_dtype), cond.to(unet_dtype)], dim=1)
        if getattr(self.unet.config, "cross_attention_dim", None):
            context = x.new_zeros(x.shape[0], 1, int(self.unet.config.cross_attention_dim))
            eps_hat = self.unet(x, timesteps, encoder_hidden_states=context, class_labels=class_labels).sample
        else:
            eps_hat = self.unet(x, timesteps, class_labels=class_labels).sample
        eps_hat = eps_hat.float()
        return eps_hat + z_t.float() if self.denoiser_skip else eps_hat

    def latent_loss(self, images: torch.Tensor, masks: torch.Tensor, latent_weight: float = 1.0,
                    class_labels: torch.Tensor | None = None,
                    generator: torch.Generator | None = None) -> LossTerms:
        """SDSeg's objective: L1(eps_hat, eps) + lambda * L1(z0_hat, z0), t ~ U{0..999}."""
        z0 = self.encode_mask(masks)
        noise = torch.randn(z0.shape, generator=generator, device=z0.device, dtype=z0.dtype)
        timesteps = torch.randint(0, self.alphas_cumprod.numel(), (z0.shape[0],), generator=generator,
                                  device=z0.device)
        z_t = add_noise(self.alphas_cumprod, z0, noise, timesteps)
        eps_hat = self.predict_noise(z_t, self.conditioner(images), timesteps, class_labels)
        noise_loss = F.l1_loss(eps_hat.float(), noise)
        if latent_weight:
            z0_hat = estimate_clean_latent(self.alphas_cumprod, z_t, eps_hat, timesteps)
            latent = F.l1_loss(z0_hat, z0)
        else:
            latent = noise_loss.new_zeros(())
        return LossTerms(total=noise_loss + latent_weight * latent, noise=noise_loss, latent=latent)

    # -- inference --------------------------------------------------------------------------
    @torch.no_grad()
    def sample_latent(self, images: torch.Tensor, steps: int = 1, generator: torch.Generator | None = None,
                      class_labels: torch.Tensor | None = None, eta: float = 0.0) -> torch.Tensor:
        """z0 estimate from x_T ~ N(0, I): one UNet step at t = 999 (the paper), or DDIM with `steps`."""
        cond = self.conditioner(images)
        shape = (images.shape[0], self.latent_channels, cond.shape[-2], cond.shape[-1])
        # One x_T shared by the batch: a slice's result depends on the seed alone, not on the
        # batch size or its place in the batch (for batch 1 this is the usual single draw).
        z = torch.randn((1, *shape[1:]), generator=generator, device=cond.device,
                        dtype=torch.float32).expand(shape).contiguous()
        if steps <= 1:
            t = torch.full((shape[0],), FINAL_T, device=cond.device, dtype=torch.long)
            eps_hat = self.predict_noise(z, cond, t, class_labels)  # z stays fp32 (see predict_noise)
            return estimate_clean_latent(self.alphas_cumprod, z, eps_hat, t)
        scheduler = make_ddim_scheduler()
        scheduler.set_timesteps(steps, device=cond.device)
        z0_hat = z
        for t in scheduler.timesteps:
            batch_t = t.expand(shape[0]).to(cond.device)
            eps_hat = self.predict_noise(z.float(), cond, batch_t, class_labels)
            # the step's fresh noise (eta > 0) is shared by the batch too, like x_T
            variance_noise = None
            if eta > 0:
                variance_noise = torch.randn((1, *shape[1:]), generator=generator, device=cond.device,
                                             dtype=torch.float32).expand(shape).to(z.dtype)
            out = scheduler.step(eps_hat, t, z, eta=eta, variance_noise=variance_noise)
            z, z0_hat = out.prev_sample, out.pred_original_sample
        return z0_hat  # the last step's x0 prediction (its prev_sample re-noises to abar_0)

    @torch.no_grad()
    def predict_probability(self, images: torch.Tensor, steps: int = 1, generator: torch.Generator | None = None,
                            class_labels: torch.Tensor | None = None, eta: float = 0.0) -> torch.Tensor:
        """Foreground probability (B, S, S) for images (B, 3, S, S) in [-1, 1]."""
        return self.decode_probability(self.sample_latent(images, steps, generator, class_labels, eta))
