"""Tiny models saved to disk for tests, the demo and the Slicer self-test: a complete diffusers
Stable Diffusion folder and an SDSeg checkpoint, both with random weights, loaded back through
the same loaders users hit. Never for results.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..models.architectures import build_stable_diffusion, save_tiny_tokenizer


def save_tiny_stable_diffusion(path: str | Path, arch: str = "tiny-sd", seed: int = 0) -> Path:
    """A complete diffusers folder (model_index.json, unet/, vae/, text_encoder/, tokenizer/,
    scheduler/) saved as safetensors: what `models.load_stable_diffusion` expects from a hub repo."""
    from transformers import CLIPTokenizer

    path = Path(path)
    tokenizer_dir = save_tiny_tokenizer(path / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir)
    parts = build_stable_diffusion(arch, seed=seed, text_overrides={
        "vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id})
    for name in ("unet", "vae", "text_encoder"):
        parts[name].save_pretrained(path / name, safe_serialization=True)
    parts["scheduler"].save_pretrained(path / "scheduler")
    index = {
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.30.0",
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "DDIMScheduler"],
    }
    (path / "model_index.json").write_text(json.dumps(index, indent=2))
    return path


def save_tiny_sdseg(path: str | Path, image_size: int = 32, seed: int = 0) -> Path:
    """A complete SDSeg checkpoint folder with random weights (tiny VAE and UNet), written by the
    same `save_checkpoint` as `train sdseg`: for plumbing checks (demo, tests), never for results.
    The latent scale factor comes from a batch of disc masks, as training takes it from masks."""
    from diffusers import AutoencoderKL

    from ..methods.sdseg.build import (
        build_from_scratch,
        small_unet_config,
        small_vae_config,
    )
    from ..methods.sdseg.checkpoint import save_checkpoint
    from ..methods.sdseg.vae_training import as_rgb_mask

    torch.manual_seed(seed)
    vae = AutoencoderKL(**small_vae_config(image_size, (8, 16, 16), 4)).eval()
    model = build_from_scratch(vae, small_unet_config(image_size // 4, 4, (16, 32), 1, 0.0), 0.0, seed=seed).eval()
    yy, xx = torch.meshgrid(torch.arange(image_size), torch.arange(image_size), indexing="ij")
    discs = torch.stack([(yy - c) ** 2 + (xx - c) ** 2 < (image_size // 4) ** 2
                         for c in range(image_size // 3, 2 * image_size // 3, 2)])
    model.set_scale_factor_from(as_rgb_mask(discs))
    return save_checkpoint(model, path, {"kind": "sdseg", "image_size": image_size, "num_classes": 0,
                                         "class_values": [], "note": "random weights: a plumbing check"})
