"""Finding and loading diffusion models.

A model reference is a Hugging Face repo id ("CompVis/stable-diffusion-v1-4") or a local folder
in diffusers layout. Loading is always `from_pretrained` with safetensors only (never pickle);
huggingface_hub honours HF_HUB_OFFLINE, HF_HOME and HF_HUB_CACHE, so offline machines work from
the standard cache. Every failure becomes ModelNotFound/ModelLoadFailed with a message that says
what was looked for and how to provide it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch

from .errors import DeviceUnavailable, ModelLoadFailed, ModelNotFound

SD_COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
# "random:<architecture>[:<image size>]" builds an architecture from data/architectures with random
# weights: real shapes and FLOPs for `benchmark`, without downloading anything. Never for results.
RANDOM_PREFIX = "random:"


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' means CUDA when present, else CPU. MPS is used only when asked for: not every op
    the methods use is verified on it."""
    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceUnavailable(
                "CUDA was requested but this PyTorch sees no CUDA GPU "
                f"(torch {torch.__version__}, built for CUDA {torch.version.cuda or 'none'}).",
                hint="Choose device 'cpu' or 'auto', or install a CUDA build of PyTorch that matches your driver.")
        return torch.device(name)
    if name == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise DeviceUnavailable("Apple MPS was requested but is not available on this machine.",
                                    hint="Choose device 'cpu' or 'auto'.")
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise DeviceUnavailable(f"Unknown device {name!r}; use auto, cuda, mps or cpu.")


def resolve_dtype(device: torch.device, requested: str | None = None) -> torch.dtype:
    """The compute dtype (UNet, text encoder) for a device: see `dtypes.resolve_policy`."""
    from .dtypes import resolve_policy

    return resolve_policy(device, requested).compute


def is_local_reference(reference: str) -> bool:
    """A path-looking reference is never sent to the hub: a typo must not become a download."""
    return reference.startswith((".", "/", "~")) or os.sep in reference.strip("/").split("/", 1)[-1] \
        or Path(reference).expanduser().exists() or (len(reference) > 1 and reference[1] == ":")


def describe_search(reference: str) -> str:
    from huggingface_hub import constants

    if is_local_reference(reference):
        return f"local folder {Path(reference).expanduser().resolve()}"
    offline = "on" if constants.HF_HUB_OFFLINE else "off"
    return f"Hugging Face repo '{reference}' (cache {constants.HF_HUB_CACHE}, HF_HUB_OFFLINE {offline})"


def _not_found(reference: str, what: str, detail: str = "") -> ModelNotFound:
    from .hub import download_hint

    hint = download_hint(reference if not is_local_reference(reference) else "<repo id>")
    message = f"Could not find {what} in {describe_search(reference)}."
    if detail:
        message += f" ({detail})"
    return ModelNotFound(message, hint=hint)


def load_component(cls: Any, reference: str, subfolder: str | None, dtype: torch.dtype | None = None,
                   **kwargs: Any) -> Any:
    """`cls.from_pretrained` with safetensors only and errors translated for users."""
    local = is_local_reference(reference)
    if local:
        root = Path(reference).expanduser()
        if not root.is_dir():
            raise _not_found(reference, "a model folder")
        reference = str(root)
        if subfolder and not (root / subfolder).is_dir():
            raise _not_found(reference, f"the '{subfolder}' component",
                             "the folder has no such subfolder; is it in diffusers layout?")
    options: dict[str, Any] = dict(kwargs)
    if subfolder:
        options["subfolder"] = subfolder
    if dtype is not None:
        options.setdefault("torch_dtype", dtype)
    is_weighted = hasattr(cls, "save_pretrained") and not _is_config_only(cls)
    if is_weighted:
        options["use_safetensors"] = True
    if not local:  # one reachability decision per repo: no retry storm against an unreachable hub
        from .hub import hub_access

        options.update(hub_access(reference))
    try:
        return cls.from_pretrained(reference, **options)
    except (OSError, EnvironmentError, ValueError) as exc:
        text = str(exc)
        lowered = text.lower()
        if "safetensors" in lowered and ("not found" in lowered or "no file" in lowered
                                         or "could not find" in lowered or "does not appear" in lowered):
            raise ModelLoadFailed(
                f"{describe_search(reference)} has no safetensors weights for '{subfolder or cls.__name__}'; "
                "DiffusionSeg never loads pickled (.bin/.ckpt) weights.",
                hint="Convert the weights to safetensors or use a model that provides them.") from None
        if any(s in lowered for s in ("not found", "does not appear", "no such file", "offline",
                                      "connect", "couldn't", "could not", "is not a local folder",
                                      "repository not found", "not a valid model identifier")):
            raise _not_found(reference, f"'{subfolder or cls.__name__}'", text.splitlines()[0][:300]) from None
        raise ModelLoadFailed(f"Loading '{subfolder or cls.__name__}' from {describe_search(reference)} failed: "
                              f"{text.splitlines()[0][:300]}") from None


def _is_config_only(cls: Any) -> bool:
    name = cls.__name__
    return name.endswith("Scheduler") or "Tokenizer" in name


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
        from .feature_cache import cached

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
        from .feature_cache import cached_rows

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
    from .dtypes import normalise_dtype_name
    from .model_cache import cached_load

    device = device if isinstance(device, torch.device) else resolve_device(device)
    components = tuple(components)
    key = ("stable-diffusion", cache_identity(reference), str(device), normalise_dtype_name(dtype), components)
    return cached_load(key, lambda: _load_stable_diffusion(reference, device, dtype, components))


def cache_identity(reference: str) -> str:
    """What makes two loads the same model: the resolved folder and its files' sizes and times
    (a checkpoint retrained in place is loaded again), or the hub id / random architecture."""
    if reference.startswith(RANDOM_PREFIX) or not is_local_reference(reference):
        return reference
    import hashlib

    root = Path(reference).expanduser().resolve()
    digest = hashlib.sha1(str(root).encode())
    if root.is_dir():
        for path in sorted(root.rglob("*")):
            if path.suffix in (".json", ".safetensors", ".txt") and path.is_file():
                stat = path.stat()
                digest.update(f"{path.relative_to(root)}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return f"{root}#{digest.hexdigest()[:12]}"


def _load_stable_diffusion(reference: str, device: torch.device, dtype: str | None,
                           components: tuple[str, ...]) -> StableDiffusionParts:
    import uuid

    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    from .dtypes import needs_size, parameter_count, resolve_policy

    policy = resolve_policy(device, dtype)
    # auto on a CPU depends on the UNet's size: load in fp32, decide, then cast (never rounds twice).
    sized = needs_size(device, dtype) and "unet" in components
    parts = StableDiffusionParts(reference=reference, device=device,
                                 dtype=torch.float32 if sized else policy.compute,
                                 identity=f"{reference}@{uuid.uuid4().hex[:12]}")
    if reference.startswith(RANDOM_PREFIX):
        _random_stable_diffusion(parts, components)
    else:
        if is_local_reference(reference):  # an SDSeg checkpoint or heads folder: say so, no weight warnings
            from .model_kinds import STABLE_DIFFUSION, check_folder_kind

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


def cast_module(module: Any, dtype: torch.dtype, device: torch.device | None = None) -> Any:
    """`module.to(device, dtype)` without diffusers' warning about modules to keep in fp32 when
    the model names none (diffusers warns on every cast of an SD UNet, whose list is empty)."""
    import logging

    logger = logging.getLogger("diffusers.models.modeling_utils")
    quiet = not getattr(module, "_keep_in_fp32_modules", None)
    level = logger.level
    if quiet:
        logger.setLevel(logging.ERROR)
    try:
        return module.to(device, dtype) if device is not None else module.to(dtype)
    finally:
        logger.setLevel(level)


def component_dtype(name: str, dtype: torch.dtype) -> torch.dtype:
    """The VAE is loaded and kept in fp32 (SD's VAE overflows in fp16 on bright images); its
    encoder may compute in bf16 through autocast (`encode_image`, dtypes.py). Every other
    network runs in the compute dtype."""
    return torch.float32 if name == "vae" else dtype


def _random_stable_diffusion(parts: StableDiffusionParts, components: Iterable[str]) -> StableDiffusionParts:
    import tempfile

    from transformers import CLIPTokenizer

    from .synthetic_models import build_stable_diffusion, save_tiny_tokenizer

    name, _, size = parts.reference[len(RANDOM_PREFIX):].partition(":")
    try:
        built = build_stable_diffusion(name, with_text_encoder="text_encoder" in components)
    except ValueError as error:
        raise ModelNotFound(str(error)) from None
    if size:
        factor = 2 ** (len(built["vae"].config.block_out_channels) - 1)
        built["unet"].register_to_config(sample_size=int(size) // factor)
    with tempfile.TemporaryDirectory() as folder:
        parts.tokenizer = CLIPTokenizer.from_pretrained(save_tiny_tokenizer(folder))
    for name in components:
        if name in ("unet", "vae", "text_encoder"):
            setattr(parts, name, cast_module(built[name], component_dtype(name, parts.dtype), parts.device).eval()
                    .requires_grad_(False))
        elif name == "scheduler":
            parts.scheduler = built["scheduler"]
    return parts
