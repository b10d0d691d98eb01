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


def write_demo_inputs(folder: Path) -> tuple[Path, Path]:
    """A stained-cell-like RGB photo (cell.png) and an oblique, anisotropic CT-like volume
    (ct.nrrd, HU) in `folder`: what `demo` segments."""
    folder.mkdir(parents=True, exist_ok=True)
    image, volume = folder / "cell.png", folder / "ct.nrrd"
    sitk.WriteImage(rgb_image(height=96, width=128), str(image))
    sitk.WriteImage(ct_like_volume(size=(64, 56, 6)), str(volume), True)
    return image, volume
