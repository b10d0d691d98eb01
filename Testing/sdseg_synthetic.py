"""Synthetic image/mask pairs for the SDSeg tests: bright discs on textured noise.

The disc is visible in the image (so a conditioner can find it) but not trivially (noise and a
random colour), and positions/radii vary, so memorising one mask does not score."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def disc_pairs(n: int, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """images (n, 3, size, size) in [0, 1], masks (n, size, size) int64 {0, 1}."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    images, masks = [], []
    for _ in range(n):
        cy, cx = torch.randint(size // 4, size - size // 4, (2,), generator=g)
        r = torch.randint(size // 8, size // 4, (1,), generator=g)
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r ** 2
        colour = 0.4 + 0.4 * torch.rand(3, 1, 1, generator=g)
        image = 0.3 * torch.rand(3, size, size, generator=g) + mask.float() * colour
        images.append(image.clamp(0, 1))
        masks.append(mask.long())
    return torch.stack(images), torch.stack(masks)


def write_png_pairs(folder: Path, n: int, size: int = 32, seed: int = 0, mask_value: int = 255) -> tuple[Path, Path]:
    """images/NNN.png (RGB) and masks/NNN.png ({0, mask_value}) written with SimpleITK."""
    import SimpleITK as sitk

    images, masks = disc_pairs(n, size, seed)
    image_dir, mask_dir = folder / "images", folder / "masks"
    image_dir.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        rgb = (images[i].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        sitk.WriteImage(sitk.GetImageFromArray(rgb, isVector=True), str(image_dir / f"{i:03d}.png"))
        sitk.WriteImage(sitk.GetImageFromArray((masks[i].numpy() * mask_value).astype(np.uint8)),
                        str(mask_dir / f"{i:03d}.png"))
    return image_dir, mask_dir
