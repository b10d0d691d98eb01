"""An SDSeg checkpoint folder, loadable with `--model DIR`.

    config.json                  format, image size, scale factor, classes, how it was trained
    vae/                         the frozen AutoencoderKL (diffusers layout, safetensors)
    unet/                        the 8-channel UNet, EMA weights (diffusers layout, safetensors)
    conditioner.safetensors      the image conditioner, EMA weights
    README.md                    model card

Only what inference needs is stored (the reference's 5 GB checkpoints held the frozen VAE twice
plus optimizer state). The supervised baseline uses the same folder with `kind: supervised`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ...contract.errors import ModelLoadFailed, ModelNotFound

FORMAT = "diffusionseg.sdseg"
FORMAT_VERSION = 1


def save_checkpoint(model: Any, folder: str | Path, config: dict[str, Any]) -> Path:
    """Write the model's current weights (the caller swaps EMA weights in first)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if config.get("kind", "sdseg") == "sdseg":
        model.vae.save_pretrained(folder / "vae", safe_serialization=True)
        model.unet.save_pretrained(folder / "unet", safe_serialization=True)
        save_file({k: v.contiguous() for k, v in model.conditioner.state_dict().items()},
                  str(folder / "conditioner.safetensors"))
        config = {**config, "scale_factor": float(model.scale_factor),
                  "latent_channels": int(model.vae.config.latent_channels),
                  "unet_class": type(model.unet).__name__, "denoiser_skip": bool(model.denoiser_skip)}
    else:
        model.unet.save_pretrained(folder / "unet", safe_serialization=True)
    full = {"format": FORMAT, "format_version": FORMAT_VERSION, **config}
    (folder / "config.json").write_text(json.dumps(full, indent=2, sort_keys=True) + "\n")
    return folder


def read_config(folder: str | Path) -> dict[str, Any]:
    from ...models.kinds import SDSEG, check_folder_kind

    folder = Path(folder).expanduser()
    check_folder_kind(folder, SDSEG)  # a Stable Diffusion model or DiffuGTS heads: name it and its use
    path = folder / "config.json"
    if not path.is_file():
        raise ModelNotFound(f"No SDSeg checkpoint in {folder.resolve()}: config.json is missing.",
                            hint="Pass the folder written by `python -m DiffusionSegLib train sdseg --output DIR`.")
    config = json.loads(path.read_text())
    if config.get("format") != FORMAT:
        raise ModelLoadFailed(f"{folder} is not an SDSeg checkpoint (format {config.get('format')!r}).",
                              hint="SDSeg needs a checkpoint trained with `train sdseg`, not a base diffusion model.")
    from ..base import check_image_size

    check_image_size(config.get("image_size"), f"The SDSeg checkpoint {folder}", multiple=8)
    return config


def load_checkpoint(folder: str | Path, device: torch.device | str = "cpu",
                    dtype: torch.dtype = torch.float32) -> tuple[Any, dict[str, Any]]:
    """(model in eval mode, config). The VAE stays fp32: the mask decode is cheap and exact.
    Within a runner's job the model comes from its cache (see model_cache.py)."""
    from ...models.references import cache_identity
    from ...runtime.model_cache import cached_load

    key = ("sdseg", cache_identity(str(folder)), str(device), str(dtype))
    return cached_load(key, lambda: _load_checkpoint(folder, device, dtype))


def _load_checkpoint(folder: str | Path, device: torch.device | str, dtype: torch.dtype) -> tuple[Any, dict[str, Any]]:
    from diffusers import AutoencoderKL, UNet2DConditionModel, UNet2DModel

    from ...models.loading import load_component
    from .model import Conditioner, SDSegModel

    folder = Path(folder).expanduser()
    config = read_config(folder)
    reference = str(folder.resolve())
    if config.get("kind", "sdseg") != "sdseg":
        from .baseline import SupervisedUNet

        unet = load_component(UNet2DModel, reference, "unet", dtype=dtype)
        return SupervisedUNet(unet).to(device).eval(), config
    vae = load_component(AutoencoderKL, reference, "vae", dtype=torch.float32)
    unet_cls = UNet2DConditionModel if config.get("unet_class") == "UNet2DConditionModel" else UNet2DModel
    unet = load_component(unet_cls, reference, "unet", dtype=dtype)
    conditioner = Conditioner(dict(vae.config), dropout=float(config.get("conditioner_dropout", 0.2)))
    weights = folder / "conditioner.safetensors"
    if not weights.is_file():
        raise ModelNotFound(f"{folder} has no conditioner.safetensors; the checkpoint is incomplete.")
    conditioner.load_state_dict(load_file(str(weights)))
    model = SDSegModel(vae, conditioner.to(dtype), unet, scale_factor=float(config["scale_factor"]),
                       denoiser_skip=bool(config.get("denoiser_skip", False)))
    return model.to(device).eval(), config
