"""SDSeg (Lin et al., MICCAI 2024): single-step latent diffusion segmentation.

A frozen VAE maps binary masks to latents; a trainable conditioner (initialised from the VAE
encoder) maps the image to a latent of the same shape; an 8-channel UNet predicts the noise of
concat[z_t, c]. Because training adds a latent loss on the estimated clean latent, ONE UNet step
at t = 999 already gives the mask latent at inference.

Modules: `schedule` (DDPM schedule, latent estimation), `model` (the network and its losses),
`build` (from scratch / from pretrained diffusers weights), `checkpoint` (safetensors folder),
`vae_training` (small VAE for the from-scratch path), `train` (the training run),
`baseline` (plain supervised UNet for comparison).
"""

from .method import Sdseg

__all__ = ["Sdseg"]
