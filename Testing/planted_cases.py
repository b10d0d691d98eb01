"""Images with a known right answer for the planted model (`--model planted`,
DiffusionSegLib/models/planted.py): CT-like slices and volumes in HU (air -1000, tissue 40,
lesions 200), and a fluorescence-like RGB photo. The truth is the planted model's contract:
pixels whose normalised intensity (under the job's intensity preset) is at least 0.75."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from DiffusionSegLib.io.images import read_volume
from DiffusionSegLib.models.planted import planted_truth

TISSUE, LESION, AIR = 40.0, 200.0, -1000.0
CT = "ct-soft-tissue"


def disc(shape: tuple[int, int], centre: tuple[float, float], area: float) -> np.ndarray:
    """A disc of `area` pixels (pixel centres inside) at `centre` (row, column)."""
    yy, xx = np.mgrid[:shape[0], :shape[1]] + 0.5
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 < area / np.pi


def ct_slice(side: int, body_fraction: float | None, lesion_fraction: float, seed: int = 0,
             centre: tuple[float, float] = (0.5, 0.52)) -> np.ndarray:
    """One slice in HU: tissue in a disc covering `body_fraction` of the image (None: all of it),
    a lesion covering `lesion_fraction` of the tissue."""
    rng = np.random.default_rng(seed)
    shape = (side, side)
    body = np.ones(shape, bool) if body_fraction is None else disc(shape, (side / 2, side / 2), body_fraction * side**2)
    lesion = disc(shape, (centre[0] * side, centre[1] * side), lesion_fraction * body.sum()) & body
    plane = np.where(body, TISSUE, AIR)
    plane = np.where(lesion, LESION, plane)
    return plane + rng.normal(0, 8, shape)


def ct_volume(depth: int, side: int, lesions: dict[int, float], body_fraction: float = 0.6,
              spacing=(0.8, 0.8, 3.0), seed: int = 0) -> sitk.Image:
    """A volume in HU: tissue on every slice, a lesion covering lesions[k] of the tissue on slice k."""
    planes = [ct_slice(side, body_fraction, lesions.get(k, 0.0), seed=seed + k) for k in range(depth)]
    image = sitk.GetImageFromArray(np.stack(planes).astype(np.float32))
    image.SetSpacing(spacing)
    return image


def sphere_volume(size=(28, 28, 12), spacing=(0.7, 0.7, 5.0), radius_mm: float = 6.5,
                  direction=None, seed: int = 0) -> sitk.Image:
    """Anisotropic CT (I, J, K voxels): a tissue block and a lesion that is a sphere in millimetres."""
    rng = np.random.default_rng(seed)
    ni, nj, nk = size
    k, j, i = np.mgrid[:nk, :nj, :ni].astype(float)
    centre = np.array([ni * 0.55, nj * 0.5, nk * 0.5])
    distance = np.sqrt(((i - centre[0]) * spacing[0]) ** 2 + ((j - centre[1]) * spacing[1]) ** 2
                       + ((k - centre[2]) * spacing[2]) ** 2)
    body = (np.abs(i - ni / 2) < ni * 0.42) & (np.abs(j - nj / 2) < nj * 0.42)
    array = np.where(body, TISSUE, AIR)
    array = np.where(body & (distance < radius_mm), LESION, array) + rng.normal(0, 8, array.shape)
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.SetSpacing(spacing)
    if direction is not None:
        image.SetDirection(direction)
    return image


def write(image: sitk.Image, path: Path) -> Path:
    sitk.WriteImage(image, str(path), True)
    return path


def truth_of(path: Path, preset: str = "auto") -> np.ndarray:
    volume = read_volume(path)
    return planted_truth(volume.array, volume.is_rgb, preset)


def labels_of(path: str | Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path))) > 0


def dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    total = prediction.sum() + truth.sum()
    return 1.0 if total == 0 else float(2 * (prediction & truth).sum() / total)


def slices_with(mask: np.ndarray, axis: int = 0) -> list[int]:
    other = tuple(a for a in range(mask.ndim) if a != axis)
    return [int(k) for k in np.nonzero(mask.any(axis=other))[0]]
