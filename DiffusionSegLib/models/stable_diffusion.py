"""A Stable Diffusion model as the methods use it: its parts, loaded component by component.

The reference (references.py) is a hub id, a local diffusers folder or a built-in test
architecture; weighted components load through `loading.load_component` (safetensors only).
Within a runner's job a load comes from its model cache when the same model was loaded before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import torch

from ..runtime.devices import resolve_device
from .loading import cast_module, component_dtype, load_component
from .references import PLANTED, cache_identity, is_built_in, is_local_reference

SD_COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")


def resolve_dtype(device: torch.device, requested: str | None = None) -> torch.dtype:
    """The compute dtype (UNet, text encoder) for a device: see `dtypes.resolve_policy`."""
    from ..runtime.dtypes import resolve_policy

    return resolve_policy(device, requested).compute


@dataclass
class StableDiffusionParts:
    """The pieces of a text-to-image latent diffusion model that the methods use directly.

    Loaded component by component rather than as a pipeline: no safety checker, no feature
    extractor, and only what a method needs goes onto the GPU.
    """

    reference: str
    device: torch.device
    dtype: torch.dtype
    policy: Any = None  # the dtypes.DtypePolicy applied (set by load_stable_diffusion)
    unet: Any = None
    vae: Any = None
    text_encoder: Any = None
    tokenizer: Any = None
    scheduler: Any = None
    # Unique per loaded instance: the key of its entries in the feature cache (feature_cache.py),
    # so latents or embeddings of one model are never served for another, or for a reload.
    identity: str = ""

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_size(self) -> int:
        return int(self.unet.config.sample_size)

    @property
    def image_size(self) -> int:
        """Native input side in pixels: 512 for SD 1.x, 768 for SD 2.x-v; never hard-coded."""
        return self.latent_size * self.vae_scale_factor

    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        """CLIP text embeddings (B, 77, D), the cross-attention context of the UNet; kept in the
        runner's feature cache, so a prompt is encoded once per warm model."""
        from ..runtime.feature_cache import cached

        if not self.identity:  # assembled by hand (tests, training): nothing to key a cache on
            return self._encode_prompt(prompts)
        return cached(("text-embedding", self.identity, tuple(prompts)), lambda: self._encode_prompt(prompts))

    @torch.no_grad()
    def _encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(prompts, padding="max_length", max_length=self.tokenizer.model_max_length,
                                truncation=True, return_tensors="pt")
        hidden = self.text_encoder(tokens.input_ids.to(self.device))[0]
        return hidden.to(self.dtype)

    def encode_image(self, images: torch.Tensor, use_cache: bool = True,
                     for_reconstruction: bool = False) -> torch.Tensor:
        """Posterior mean × scaling factor (deterministic, as DiffSeg's encoder): images in [0, 1].

        The encoder runs in the policy's `vae_encoder` dtype (bf16 under `auto` on a CPU with
        native bf16) when the latent only feeds the UNet; a caller that decodes the latent again
        and compares pixels (DiffuGTS) passes for_reconstruction=True for the fp32 encoder
        (dtypes.py). Kept per slice and per encoder dtype in the runner's feature cache. A caller
        that captures the encoder's inner features (DiffuGTS) needs the encoder to run: it
        passes use_cache=False, since a cached latent comes without them."""
        from ..runtime.feature_cache import cached_rows

        dtype = self.encoder_dtype(for_reconstruction)
        if not self.identity or not use_cache:
            return self._encode_image(images, dtype)
        return cached_rows(("vae-latent", self.identity, str(dtype)), images,
                           lambda rows: self._encode_image(rows, dtype))

    def encoder_dtype(self, for_reconstruction: bool = False) -> torch.dtype:
        """The policy's `vae_encoder` dtype, or the VAE's own (fp32) for reconstruction."""
        if for_reconstruction or self.policy is None:
            return self.vae.encoder.conv_in.weight.dtype
        return self.policy.vae_encoder

    @torch.no_grad()
    def _encode_image(self, images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Latents in at least fp32 whatever `dtype` the encoder computes in: callers cast at the UNet.

        A half-precision `dtype` runs through autocast: the weights stay as loaded (fp32, never
        rounded), so the same warm model serves fp32 reconstruction encodes too."""
        from contextlib import nullcontext

        weights = self.vae.encoder.conv_in.weight.dtype
        low = dtype in (torch.bfloat16, torch.float16) and dtype != weights and self.device.type in ("cpu", "cuda")
        x = images.to(self.device, weights) * 2.0 - 1.0
        with torch.autocast(self.device.type, dtype=dtype) if low else nullcontext():
            mean = self.vae.encode(x).latent_dist.mean
        return mean.to(torch.promote_types(mean.dtype, torch.float32)) * self.vae.config.scaling_factor

    @torch.no_grad()
    def decode_latent(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents back to images in [0, 1]."""
        x = self.vae.decode(latents.to(self.vae.decoder.conv_in.weight.dtype) / self.vae.config.scaling_factor).sample
        return ((x.float() + 1.0) / 2.0).clamp(0.0, 1.0)


def load_stable_diffusion(reference: str, device: str | torch.device = "auto", dtype: str | None = None,
                          components: Iterable[str] = SD_COMPONENTS) -> StableDiffusionParts:
    """Load the requested components of a diffusers text-to-image model, frozen, in eval mode.

    Within a runner's job the result comes from its model cache when the same reference, device,
    dtype and components were loaded before (the parts are shared: methods never modify them)."""
    from ..runtime.dtypes import normalise_dtype_name
    from ..runtime.model_cache import cached_load

    device = device if isinstance(device, torch.device) else resolve_device(device)
    components = tuple(components)
    key = ("stable-diffusion", cache_identity(reference), str(device), normalise_dtype_name(dtype), components)
    return cached_load(key, lambda: _load_stable_diffusion(reference, device, dtype, components))


def _load_stable_diffusion(reference: str, device: torch.device, dtype: str | None,
                           components: tuple[str, ...]) -> StableDiffusionParts:
    import uuid

    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    from ..runtime.dtypes import needs_size, parameter_count, resolve_policy

    policy = resolve_policy(device, dtype)
    # auto on a CPU depends on the UNet's size: load in fp32, decide, then cast (never rounds twice).
    sized = needs_size(device, dtype) and "unet" in components
    parts = StableDiffusionParts(reference=reference, device=device,
                                 dtype=torch.float32 if sized else policy.compute,
                                 identity=f"{reference}@{uuid.uuid4().hex[:12]}")
    if is_built_in(reference):
        built = _build(reference, with_text_encoder="text_encoder" in components)
        for name in components:
            value = built[name]
            if name in ("unet", "vae", "text_encoder"):
                value = cast_module(value, component_dtype(name, parts.dtype), device).eval().requires_grad_(False)
            setattr(parts, name, value)
    else:
        if is_local_reference(reference):  # an SDSeg checkpoint or heads folder: say so, no weight warnings
            from .kinds import STABLE_DIFFUSION, check_folder_kind

            check_folder_kind(reference, STABLE_DIFFUSION)
        classes = {"unet": UNet2DConditionModel, "vae": AutoencoderKL, "text_encoder": CLIPTextModel,
                   "tokenizer": CLIPTokenizer, "scheduler": DDIMScheduler}
        for name in components:
            if name not in classes:
                raise ValueError(f"unknown component {name}")
            cls = classes[name]
            if name in ("tokenizer", "scheduler"):
                value = load_component(cls, reference, name)
            else:
                value = load_component(cls, reference, name, dtype=component_dtype(name, parts.dtype))
                value = value.to(device).eval().requires_grad_(False)
            setattr(parts, name, value)
    if sized:
        policy = resolve_policy(device, dtype, unet_parameters=parameter_count(parts.unet))
    parts.dtype, parts.policy = policy.compute, policy
    for name in ("unet", "text_encoder"):
        if getattr(parts, name) is not None:
            cast_module(getattr(parts, name), policy.compute)
    if parts.vae is not None:
        cast_module(parts.vae, policy.vae)  # fp32 (a no-op) unless a test asks for more
    return parts


def _build(reference: str, with_text_encoder: bool) -> dict[str, Any]:
    """The modules of a built-in reference: the planted test model or a random-weight architecture."""
    from ..contract.errors import ModelNotFound

    if reference.startswith(PLANTED):
        from .planted import build_planted

        try:
            return build_planted(reference, with_text_encoder)
        except ValueError as error:
            raise ModelNotFound(str(error)) from None
    from .architectures import build_from_reference

    return build_from_reference(reference, with_text_encoder)
