"""Building an SDSeg model: entirely from scratch, or from pretrained diffusers weights.

From pretrained (the paper's setting): the VAE and a 4-channel UNet come from a diffusers
reference (hub id or local folder) through `models.load_component`; the UNet's first conv is
widened to 8 input channels with zeros for the new ones ("simply repeat is not working" in the
reference code), so at step 0 the widened UNet is exactly the pretrained one.

From scratch: a small VAE (trained first on the images and masks, see `vae_training`) and a small
UNet2DModel with the LDM layout, sizes configurable, so a complete model trains on a CPU.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .model import Conditioner, SDSegModel


def small_vae_config(image_size: int, channels: tuple[int, ...], latent_channels: int,
                     layers_per_block: int = 1) -> dict[str, Any]:
    """AutoencoderKL config with downsampling factor 2**(len(channels)-1). Sizes come from the
    caller (`train sdseg`'s options hold the defaults)."""
    return {
        "in_channels": 3, "out_channels": 3, "latent_channels": latent_channels,
        "sample_size": image_size, "block_out_channels": list(channels),
        "layers_per_block": layers_per_block, "norm_num_groups": min(32, min(channels) // 2),
        "down_block_types": ["DownEncoderBlock2D"] * len(channels),
        "up_block_types": ["UpDecoderBlock2D"] * len(channels),
        "scaling_factor": 1.0,
    }


def small_unet_config(latent_size: int, latent_channels: int, channels: tuple[int, ...], layers_per_block: int,
                      dropout: float, num_classes: int = 0) -> dict[str, Any]:
    """UNet2DModel config in the LDM layout (LDM's traits kept at small size: scale-shift time
    conditioning, no attention at full latent resolution, attention below, resnet up/down
    sampling). Sizes come from the caller (`train sdseg`'s options hold the defaults)."""
    down = ["DownBlock2D"] + ["AttnDownBlock2D"] * (len(channels) - 1)
    up = ["AttnUpBlock2D"] * (len(channels) - 1) + ["UpBlock2D"]
    config: dict[str, Any] = {
        "sample_size": latent_size, "in_channels": 2 * latent_channels, "out_channels": latent_channels,
        "block_out_channels": list(channels), "layers_per_block": layers_per_block,
        "down_block_types": down, "up_block_types": up, "attention_head_dim": 32,
        "norm_num_groups": min(32, min(channels) // 2), "resnet_time_scale_shift": "scale_shift",
        "downsample_type": "resnet", "upsample_type": "resnet", "dropout": dropout,
    }
    if num_classes:
        config["num_class_embeds"] = num_classes + 1  # label 0 is background / "no class"
    return config


def vae_scale(vae: nn.Module) -> int:
    return 2 ** (len(vae.config.block_out_channels) - 1)


def conditioner_from_vae(vae: nn.Module, dropout: float = 0.2) -> Conditioner:
    """A conditioner whose encoder starts as a copy of the VAE encoder's weights."""
    conditioner = Conditioner(dict(vae.config), dropout=dropout)
    missing, unexpected = conditioner.encoder.load_state_dict(vae.encoder.state_dict(), strict=True)
    assert not missing and not unexpected
    return conditioner


def widen_conv_in(unet: nn.Module, extra_channels: int) -> nn.Module:
    """Append `extra_channels` zero-initialised input channels to the UNet's first conv.

    The output for concat[z, c] then equals the original output for z, for any c: training starts
    from the pretrained denoiser and learns how to use the condition."""
    old: nn.Conv2d = unet.conv_in
    new = nn.Conv2d(old.in_channels + extra_channels, old.out_channels, old.kernel_size, old.stride,
                    old.padding, dtype=old.weight.dtype, device=old.weight.device)
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, :old.in_channels] = old.weight
        new.bias.copy_(old.bias)
    unet.conv_in = new
    unet.register_to_config(in_channels=new.in_channels)
    return unet


def build_from_scratch(vae: nn.Module, unet_config: dict[str, Any], conditioner_dropout: float = 0.2,
                       seed: int = 0, denoiser_skip: bool = False) -> SDSegModel:
    """An SDSeg model around an already trained (or given) VAE with a freshly initialised UNet."""
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    unet = UNet2DModel(**unet_config)
    return SDSegModel(vae, conditioner_from_vae(vae, conditioner_dropout), unet, denoiser_skip=denoiser_skip)


def build_from_pretrained(reference: str, vae_subfolder: str = "vae", unet_subfolder: str = "unet",
                          unet_dropout: float | None = 0.2, conditioner_dropout: float = 0.2,
                          num_classes: int = 0) -> SDSegModel:
    """VAE + 4-channel UNet from a diffusers reference, UNet widened to 8 zero-init channels.

    The paper starts from the LDM kl-f8 VAE and the LSUN-churches UNet (an unconditional
    UNet2DModel once converted). An SD text-to-image UNet (UNet2DConditionModel) also works; it
    then gets a fixed all-zero text context - a documented deviation (different prior)."""
    import json
    from pathlib import Path

    from diffusers import AutoencoderKL, UNet2DConditionModel, UNet2DModel

    from ...models.loading import load_component
    from ...models.references import is_local_reference

    vae = load_component(AutoencoderKL, reference, vae_subfolder, dtype=torch.float32)
    unet_cls = UNet2DModel
    if is_local_reference(reference):
        config_path = Path(reference).expanduser() / unet_subfolder / "config.json"
        if config_path.is_file() and json.loads(config_path.read_text()).get("_class_name") == \
                "UNet2DConditionModel":
            unet_cls = UNet2DConditionModel
    else:
        from huggingface_hub import hf_hub_download

        config_file = hf_hub_download(reference, "config.json", subfolder=unet_subfolder)
        if json.loads(Path(config_file).read_text()).get("_class_name") == "UNet2DConditionModel":
            unet_cls = UNet2DConditionModel
    extra: dict[str, Any] = {}
    if num_classes:
        extra = {"num_class_embeds": num_classes + 1, "low_cpu_mem_usage": False, "ignore_mismatched_sizes": False}
    unet = load_component(unet_cls, reference, unet_subfolder, dtype=torch.float32, **extra)
    if unet_dropout is not None:
        for module in unet.modules():
            if module.__class__.__name__ == "ResnetBlock2D":
                module.dropout = nn.Dropout(unet_dropout)
        unet.register_to_config(dropout=unet_dropout)
    latent = int(vae.config.latent_channels)
    if unet.config.in_channels != latent:
        from ...contract.errors import ModelLoadFailed

        raise ModelLoadFailed(f"The UNet in {reference} takes {unet.config.in_channels} input channels; "
                              f"SDSeg widens a UNet that takes the VAE's {latent} latent channels.")
    widen_conv_in(unet, latent)
    return SDSegModel(vae, conditioner_from_vae(vae, conditioner_dropout), unet)
