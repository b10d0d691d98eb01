"""Diffusion-model mechanics that more than one method uses: capturing attention probabilities
inside a diffusers UNet (attention) and bringing a latent to a timestep, DDIM inversion included
(inversion).
"""
