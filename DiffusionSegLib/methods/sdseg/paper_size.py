"""A random-weight SDSeg checkpoint at the paper's size, for `benchmark` (timings without weights).

`python -m DiffusionSegLib.methods.sdseg.paper_size --output DIR` writes the KL-f8 VAE (SD v1 layout) and
the LDM LSUN-churches UNet layout widened to 8 input channels (295 M parameters in the paper),
256 px input / 32 px latent, so per-slice time and memory are the real ones.

Mapping of the LDM UNet to diffusers UNet2DModel (reference/methods.md 4.7): channels 192 x
(1, 2, 2, 4, 4), 2 res blocks, attention at latent 32/16/8/4, scale-shift norm, resnet up/down
sampling, dropout 0.2. LDM fixes 8 heads per block; UNet2DModel takes one head size, so 48 is
used (4-16 heads): the same FLOPs in the projections, slightly different attention shapes.
"""

from __future__ import annotations

import argparse
from typing import Any


def paper_unet_config(num_classes: int = 0) -> dict[str, Any]:
    config: dict[str, Any] = {
        "sample_size": 32, "in_channels": 8, "out_channels": 4, "layers_per_block": 2,
        "block_out_channels": [192, 384, 384, 768, 768],
        "down_block_types": ["AttnDownBlock2D"] * 4 + ["DownBlock2D"],
        "up_block_types": ["UpBlock2D"] + ["AttnUpBlock2D"] * 4,
        "attention_head_dim": 48, "norm_num_groups": 32, "resnet_time_scale_shift": "scale_shift",
        "downsample_type": "resnet", "upsample_type": "resnet", "dropout": 0.2,
    }
    if num_classes:
        config["num_class_embeds"] = num_classes + 1
    return config


def main(argv: list[str] | None = None) -> int:
    import torch
    from diffusers import AutoencoderKL

    from ...models.architectures import architecture
    from .build import build_from_scratch
    from .checkpoint import save_checkpoint

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    vae = AutoencoderKL(**{**architecture("sd-v1")["vae"], "sample_size": 256})
    model = build_from_scratch(vae, paper_unet_config(), conditioner_dropout=0.2, seed=args.seed)
    unet_params = sum(p.numel() for p in model.unet.parameters()) / 1e6
    save_checkpoint(model, args.output, {"kind": "sdseg", "image_size": 256, "num_classes": 0,
                                         "note": "random weights, for benchmarking only"})
    print(f"wrote {args.output}: UNet {unet_params:.1f} M parameters")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
