"""ADZUS with prompt-independent proposals (`proposals=shared`), cached per image.

Is the ADZUS proposal pass prompt-dependent? In the default variant (`proposals=prompt`), yes:
the DDIM inversion (`inversion.reach_timestep`) calls the UNet with the prompt's text
embedding as cross-attention context, and the attention pass does too — and since every
transformer block applies cross-attention before the next block's self-attention, even the
self-attention maps (hence the merged segments) change with the prompt, in every latent mode
(`clean` included). So nothing after the VAE latent can be reused for a new prompt.

The prompt-independent variant, DiffSeg's own setting, inverts and reads self-attention with
the empty ("") context. Then inversion + self-attention pass + KL merge + NMS depend only on
the slice, the model and these options, and are cached per slice (feature_cache.py). Each
prompt then costs one UNet pass on the cached inverted latent with the prompt's context, of
which only the cross-attention is read, and the vote. This is what makes several prompts, or a
second question about the same image, cheap.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from ...diffusion.attention import capture_attention
from ...diffusion.inversion import reach_timestep
from ...runtime.feature_cache import active_features, content_hash

# Every parameter the proposals depend on (with the job's seed, for latent_mode=noise).
PROPOSAL_PARAMS = ("latent_mode", "timestep", "inversion_steps", "kl_threshold", "merge_iterations",
                   "anchors_per_side", "refine_kmeans", "nms")


Embed = Callable[[str], torch.Tensor]                                   # text → CLIP context (1, 77, D)
Segment = Callable[[dict[int, torch.Tensor]], list[torch.Tensor]]      # self-attention → segment maps


def shared_proposals(parts: Any, params: dict[str, Any], ctx: Any, clean: torch.Tensor, text: str, mode: str, *,
                     embed: Embed, segment: Segment) -> tuple[list[torch.Tensor], dict[int, torch.Tensor]]:
    """(segment map per image, cross-attention maps of `text` when mode is 'prompt').

    parts: the loaded StableDiffusionParts; ctx: the job's JobContext; `embed` and `segment` are
    the method's text-embedding cache and DiffSeg merge, so both variants share them."""
    options = tuple(params[name] for name in PROPOSAL_PARAMS) + (ctx.seed,)
    keys = [("adzus-proposals", parts.identity, content_hash(row), options) for row in clean]
    cache = active_features() if parts.identity else None
    found: list[Any] = [cache.get(key) if cache is not None else None for key in keys]
    missing = [i for i, value in enumerate(found) if value is None]
    if missing:
        ctx.log(f"Proposals for {len(missing)} of {len(keys)} slice(s) computed; the others come from the cache.")
        latents, segments = _proposals(parts, params, ctx, clean[missing], embed, segment)
        for n, i in enumerate(missing):
            found[i] = (latents[n:n + 1].clone(), segments[n])
            if cache is not None:
                cache.put(keys[i], found[i])
    latents = torch.cat([value[0] for value in found])
    segments = [value[1] for value in found]
    cross_maps: dict[int, torch.Tensor] = {}
    if mode == "prompt":
        ctx.check_cancelled()
        with ctx.timed("attention"), torch.no_grad():
            context = embed(text).expand(latents.shape[0], -1, -1)
            chunk = int(params["attention_chunk"]) or None
            with capture_attention(parts.unet, kinds=("cross",), query_chunk_size=chunk) as store:
                t = torch.tensor(int(params["timestep"]), device=latents.device)
                parts.unet(latents.to(parts.unet.dtype), t, encoder_hidden_states=context)
            cross_maps = store.maps("cross")
    return segments, cross_maps


def _proposals(parts: Any, params: dict[str, Any], ctx: Any, clean: torch.Tensor, embed: Embed,
               segment: Segment) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Inversion and self-attention with the empty context, then DiffSeg's merge and NMS."""
    timestep = int(params["timestep"])
    unconditional = embed("").expand(clean.shape[0], -1, -1)

    def on_step(done: int, total: int) -> None:
        ctx.progress("inversion", done, total)
        ctx.check_cancelled()

    with ctx.timed("inversion"), torch.no_grad():
        latents = reach_timestep(params["latent_mode"], clean, timestep, unet=parts.unet, scheduler=parts.scheduler,
                                 context=unconditional, inversion_steps=int(params["inversion_steps"]),
                                 seed=ctx.seed, on_step=on_step)
    ctx.check_cancelled()
    with ctx.timed("attention"), torch.no_grad():
        chunk = int(params["attention_chunk"]) or None
        with capture_attention(parts.unet, kinds=("self",), query_chunk_size=chunk) as store:
            t = torch.tensor(timestep, device=latents.device)
            parts.unet(latents.to(parts.unet.dtype), t, encoder_hidden_states=unconditional)
        self_maps = store.maps("self")
    ctx.check_cancelled()
    with ctx.timed("merge"):
        segments = segment(self_maps)
    return latents, [segment.cpu() for segment in segments]
