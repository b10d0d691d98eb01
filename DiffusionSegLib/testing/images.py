"""Synthetic images with known geometry: for the demo, the Slicer self-test's kind of checks,
the README screenshot and the tests. Nothing here depends on real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk


def oblique_direction(angle_deg: float = 30.0) -> tuple[float, ...]:
    """A rotation about an oblique axis: no axis of the image is aligned with the patient."""
    a = np.deg2rad(angle_deg)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(a / 2), -np.sin(a / 2)], [0, np.sin(a / 2), np.cos(a / 2)]])
    return tuple((rz @ rx).ravel())


def ct_like_volume(size=(40, 36, 9), spacing=(0.7, 0.9, 3.0), origin=(-12.5, 30.25, 101.0),
                   direction=None, seed=0) -> sitk.Image:
    """A CT-like volume in HU: air, a soft-tissue ellipse and a brighter blob (I, J, K sizes)."""
    rng = np.random.default_rng(seed)
    ni, nj, nk = size
    k, j, i = np.mgrid[:nk, :nj, :ni]
    body = ((i - ni / 2) / (ni * 0.4)) ** 2 + ((j - nj / 2) / (nj * 0.4)) ** 2 < 1
    blob = ((i - ni * 0.6) / 5.0) ** 2 + ((j - nj * 0.45) / 4.0) ** 2 < 1
    array = np.where(body, 40.0, -1000.0) + 150.0 * (blob & body) + rng.normal(0, 5, body.shape)
    image = sitk.GetImageFromArray(array.astype(np.int16))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction or oblique_direction())
    return image


def rgb_image(height=50, width=70, seed=0) -> sitk.Image:
    """A pink background with a purple disc, like a stained cell."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    disc = (yy - height / 2) ** 2 + (xx - width / 2) ** 2 < (min(height, width) / 4) ** 2
    pixels = np.empty((height, width, 3))
    pixels[:] = (230, 190, 200)
    pixels[disc] = (110, 60, 150)
    pixels += rng.normal(0, 4, pixels.shape)
    return sitk.GetImageFromArray(np.clip(pixels, 0, 255).astype(np.uint8), isVector=True)


def fluorescence_image(height=96, width=128, seed=0) -> sitk.Image:
    """A fluorescence-microscopy-like photo: a bright cell with a brighter nucleus on a dark
    background (what the planted model names: the bright cell)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    cell = ((yy - height * 0.5) / (height * 0.28)) ** 2 + ((xx - width * 0.55) / (width * 0.2)) ** 2 < 1
    nucleus = ((yy - height * 0.47) / (height * 0.12)) ** 2 + ((xx - width * 0.57) / (width * 0.09)) ** 2 < 1
    pixels = np.empty((height, width, 3))
    pixels[:] = (20, 28, 36)
    pixels[cell] = (215, 245, 205)
    pixels[nucleus] = (230, 250, 225)
    pixels += rng.normal(0, 6, pixels.shape)
    return sitk.GetImageFromArray(np.clip(pixels, 0, 255).astype(np.uint8), isVector=True)


def write_demo_inputs(folder: Path) -> tuple[Path, Path]:
    """A fluorescence-microscopy-like RGB photo (cell.png) and an oblique, anisotropic CT-like
    volume with a bright lesion (ct.nrrd, HU) in `folder`: what `demo` segments. Plus a small
    labelled set of disc images (labelled/train: 24 pairs, labelled/test: 8) for trying
    `train sdseg` and `evaluate`."""
    folder.mkdir(parents=True, exist_ok=True)
    image, volume = folder / "cell.png", folder / "ct.nrrd"
    sitk.WriteImage(fluorescence_image(), str(image))
    sitk.WriteImage(ct_like_volume(size=(64, 56, 6)), str(volume), True)
    write_png_pairs(folder / "labelled" / "train", 24, size=64, seed=0)
    write_png_pairs(folder / "labelled" / "test", 8, size=64, seed=1)
    return image, volume


def disc_pairs(n: int, size: int = 32, seed: int = 0):
    """images (n, 3, size, size) in [0, 1], masks (n, size, size) int64 {0, 1} (torch tensors):
    bright discs on textured noise. The disc is visible in the image (so a model can find it) but
    not trivially (noise and a random colour), and positions/radii vary, so memorising one mask
    does not score."""
    import torch

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
    """images/NNN.png (RGB) and masks/NNN.png ({0, mask_value}) written with SimpleITK: a labelled
    folder pair as `train sdseg` and `evaluate` read them."""
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
