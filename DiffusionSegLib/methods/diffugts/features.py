"""Frozen UNet decoder features: the diffusion model's "internal representations" that DiffuGTS
reads for its adapter heads and for the feature-level residual.

Features are taken from the outputs of the UNet's up (decoder) blocks for a lightly noised latent
(small t): decoder features at small t are the most semantic and spatially precise ones in
text-to-image UNets, and the same noise draw is used for I and H so that it cancels in the
residual.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import torch

DEFAULT_FEATURE_BLOCKS = (1, 2, 3)
# VAE encoder down blocks whose outputs feed the AOVA adapter (1/2 and 1/4 of the image side for
# SD's 4-block encoder). The unofficial port reads the frozen VAE encoder too; here they were also
# measured to generalise across patients far better than noised-UNet features: the latter carry
# the fixed noise draw, which acts as a positional code a small head can memorise.
DEFAULT_ENCODER_BLOCKS = (1, 2)


@contextmanager
def capture_block_outputs(blocks: Any, block_indices: Sequence[int]) -> Iterator[dict[int, torch.Tensor]]:
    """Forward hooks on `blocks[i]` (e.g. `unet.up_blocks`, `vae.encoder.down_blocks`); yields a
    dict filled with each block's output during the forward passes inside the `with` (last pass
    wins). Hooks are always removed."""
    store: dict[int, torch.Tensor] = {}
    handles = []
    for index in block_indices:
        if index >= len(blocks):
            raise ValueError(f"the model has {len(blocks)} blocks here; no block {index}")

        def hook(_module: Any, _inputs: Any, output: Any, index: int = index) -> None:
            store[index] = (output[0] if isinstance(output, tuple) else output).detach()

        handles.append(blocks[index].register_forward_hook(hook))
    try:
        yield store
    finally:
        for handle in handles:
            handle.remove()


def noised(scheduler: Any, latents: torch.Tensor, noise: torch.Tensor, timestep: int) -> torch.Tensor:
    """q(z_t | z_0) with the scheduler's own ᾱ_t."""
    t = torch.full((latents.shape[0],), int(timestep), dtype=torch.long, device=latents.device)
    return scheduler.add_noise(latents, noise.to(latents), t)


@torch.no_grad()
def unet_features(unet: Any, scheduler: Any, latents: torch.Tensor, context: torch.Tensor, timestep: int,
                  noise: torch.Tensor, block_indices: Sequence[int] = DEFAULT_FEATURE_BLOCKS
                  ) -> list[torch.Tensor]:
    """Decoder features [(B, C_i, h_i, w_i)] of `latents` noised to `timestep` under `context`."""
    if context.shape[0] == 1 and latents.shape[0] > 1:
        context = context.expand(latents.shape[0], -1, -1)
    with capture_block_outputs(unet.up_blocks, block_indices) as store:
        unet(noised(scheduler, latents, noise, timestep).to(unet.dtype), int(timestep),
             encoder_hidden_states=context.to(unet.dtype))
    return [store[i].float() for i in block_indices]
