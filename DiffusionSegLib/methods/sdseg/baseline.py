"""The plain supervised UNet SDSeg is compared with: same diffusers UNet2DModel family and a
similar parameter count, trained for the same wall time, but mapping the image straight to
mask logits in pixel space with BCE + soft Dice. It answers "what does the diffusion
formulation buy over ordinary supervised segmentation at equal cost?".
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F


def supervised_unet_config(image_size: int, channels: tuple[int, ...], layers_per_block: int = 1,
                           num_classes: int = 0) -> dict[str, Any]:
    down = ["DownBlock2D"] * (len(channels) - 1) + ["AttnDownBlock2D"]
    up = ["AttnUpBlock2D"] + ["UpBlock2D"] * (len(channels) - 1)
    return {"sample_size": image_size, "in_channels": 3, "out_channels": max(1, num_classes + 1 if num_classes else 1),
            "block_out_channels": list(channels), "layers_per_block": layers_per_block,
            "down_block_types": down, "up_block_types": up, "attention_head_dim": 32,
            "norm_num_groups": min(32, min(channels) // 2), "dropout": 0.0}


class SupervisedUNet(nn.Module):
    """Image in [-1, 1] → foreground logits; the timestep input is fixed at 0 (unused)."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        t = torch.zeros(images.shape[0], dtype=torch.long, device=images.device)
        return self.unet(images, t).sample

    def loss(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """BCE + soft Dice on the foreground (masks (B, S, S) in {0, 1})."""
        logits = self.logits(images)[:, 0]
        target = masks.float()
        bce = F.binary_cross_entropy_with_logits(logits, target)
        prob = torch.sigmoid(logits)
        inter = (prob * target).flatten(1).sum(1)
        soft_dice = (2 * inter + 1) / (prob.flatten(1).sum(1) + target.flatten(1).sum(1) + 1)
        return bce + (1 - soft_dice).mean()

    @torch.no_grad()
    def predict_probability(self, images: torch.Tensor, **_: Any) -> torch.Tensor:
        return torch.sigmoid(self.logits(images)[:, 0].float())
