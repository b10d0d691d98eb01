"""Reading images into volumes and writing labelmaps on exactly the input's grid.

Everything goes through SimpleITK, so NRRD, NIfTI, MHA, DICOM series and PNG/JPG/BMP/TIFF share
one path, and the output's size, spacing, origin and direction are *copied* from the input image
(never recomputed), which is what keeps segmentations in the right place in patient space.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import InputNotFound, InvalidImage, InvalidRequest

LABEL_SUFFIXES = (".nrrd", ".nii", ".nii.gz", ".mha", ".png", ".tif", ".tiff")
MIN_SLICE_SIDE = 8


@dataclass
class Volume:
    """Pixels as a numpy array in SimpleITK order (K, J, I[, 3]) plus the image they came from.

    A 2D image is a one-slice volume (K = 1); `reference` keeps its original dimension so the
    labelmap is written back as a 2D image.
    """

    array: np.ndarray
    reference: sitk.Image
    is_rgb: bool
    path: str

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.array.shape[:3])  # type: ignore[return-value]

    @property
    def direction(self) -> np.ndarray:
        """3×3 direction cosines (columns = I, J, K axes in LPS), 2D images embedded."""
        dim = self.reference.GetDimension()
        matrix = np.eye(3)
        matrix[:dim, :dim] = np.array(self.reference.GetDirection()).reshape(dim, dim)
        return matrix

    @property
    def spacing(self) -> tuple[float, float, float]:
        spacing = list(self.reference.GetSpacing())
        return tuple(spacing + [1.0] * (3 - len(spacing)))  # type: ignore[return-value]


def _suffix(path: str | Path) -> str:
    name = str(path).lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def _read_series(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(folder))
    if not series:
        files = [p for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")]
        if len(files) == 1:  # a folder holding one image file (one case per folder)
            return sitk.ReadImage(str(files[0]))
        raise InvalidImage(f"The folder {folder} holds no DICOM series and not exactly one image file.",
                           hint="Pass an image file, or a folder with one DICOM series.")
    if len(series) > 1:
        raise InvalidImage(f"The folder {folder} holds {len(series)} DICOM series ({', '.join(series[:4])}…).",
                           hint="Pass a folder that holds exactly one series.")
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder), series[0]))
    return reader.Execute()


def read_volume(path: str | Path, *, allow_constant: bool = False) -> Volume:
    """Read and validate an image: 2D or 3D, scalar or RGB(A), finite, not empty.

    `allow_constant` is for masks, where all-background is a valid value."""
    path = Path(path).expanduser()
    if not path.exists():
        raise InputNotFound(f"Input image not found: {path}", hint="Check the path and try again.")
    try:
        image = _read_series(path) if path.is_dir() else sitk.ReadImage(str(path))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else ""
        raise InvalidImage(f"Could not read {path} as an image ({first}).",
                           hint="Supported: NRRD, NIfTI, MHA/MHD, a DICOM series folder, PNG, JPG, BMP, TIFF.") from None
    return volume_from_image(image, str(path), allow_constant=allow_constant)


def volume_from_image(image: sitk.Image, path: str = "<memory>", allow_constant: bool = False) -> Volume:
    dim = image.GetDimension()
    if dim > 3:
        raise InvalidImage(f"{path} is a {dim}D image ({'×'.join(map(str, image.GetSize()))}).",
                           hint="Segment one 3D time point or channel; in Slicer pick a single frame of the sequence.")
    if dim < 2:
        raise InvalidImage(f"{path} is {dim}D; an image needs at least two dimensions.")
    if any(size == 0 for size in image.GetSize()):
        raise InvalidImage(f"{path} is empty (size {'×'.join(map(str, image.GetSize()))}).")
    components = image.GetNumberOfComponentsPerPixel()
    pixel = image.GetPixelIDTypeAsString()
    if "complex" in pixel.lower():
        raise InvalidImage(f"{path} has complex pixels ({pixel}); use a magnitude image.")
    if components not in (1, 3, 4):
        raise InvalidImage(f"{path} has {components} components per pixel; expected a scalar or an RGB image.",
                           hint="Split the channels and segment one of them.")
    array = sitk.GetArrayFromImage(image)
    if dim == 2:
        array = array[np.newaxis]
    if components == 4:
        array = array[..., :3]  # drop alpha
    is_rgb = components != 1
    array = np.ascontiguousarray(array, dtype=np.float32)
    finite = np.isfinite(array)
    if not finite.all():
        bad = int((~finite).sum())
        raise InvalidImage(f"{path} has {bad} NaN or infinite voxel(s).",
                           hint="Replace them (e.g. with the background value) before segmenting.")
    if not allow_constant and float(array.max()) == float(array.min()):
        raise InvalidImage(f"{path} is empty: every voxel has the value {float(array.min()):g}.")
    return Volume(array=array, reference=image, is_rgb=is_rgb, path=path)


def check_output_path(path: str | Path, dimension: int | None = None) -> Path:
    """Fail before any model work if the output cannot be written (or cannot hold a labelmap of
    the input's `dimension`)."""
    path = Path(path).expanduser()
    if dimension is not None and dimension != 2 and _suffix(path) in (".png", ".tif", ".tiff"):
        raise InvalidRequest(f"A {_suffix(path)} output can only hold a 2D labelmap; use .nrrd or .nii.gz.")
    if _suffix(path) not in LABEL_SUFFIXES:
        raise InvalidRequest(f"Unsupported output format '{_suffix(path) or path.name}'.",
                             hint=f"Use one of {', '.join(LABEL_SUFFIXES)} (e.g. result.nrrd).")
    if not path.parent.is_dir():
        raise InvalidRequest(f"Output folder does not exist: {path.parent}")
    if not os.access(path.parent, os.W_OK):
        raise InvalidRequest(f"Output folder is not writable: {path.parent}")
    return path


def labelmap_image(labels: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """Labels (K, J, I) as an image with the reference's exact geometry."""
    dtype = np.uint8 if labels.max(initial=0) < 256 else np.uint16
    labels = labels.astype(dtype, copy=False)
    if reference.GetDimension() == 2:
        labels = labels[0]
    image = sitk.GetImageFromArray(labels)
    image.CopyInformation(reference)
    return image


def write_labelmap(labels: np.ndarray, reference: sitk.Image, path: str | Path) -> Path:
    """Write atomically: a temporary file in the same folder, renamed when complete, so a
    cancelled or crashed job never leaves a partial result where the caller looks for one."""
    path = check_output_path(path, reference.GetDimension())
    return write_image(labelmap_image(labels, reference), path)


def map_image(values: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """A float map (K, J, I) or a colour map (K, J, I, 3) as a float32 image with the
    reference's exact geometry (evidence, uncertainty, pseudo-healthy volumes)."""
    values = np.asarray(values, dtype=np.float32)
    vector = values.ndim == 4
    if reference.GetDimension() == 2:
        values = values[0]
    image = sitk.GetImageFromArray(values, isVector=vector)
    image.CopyInformation(reference)
    return image


def write_image(image: sitk.Image, path: str | Path, compress: bool = True) -> Path:
    """Write any image atomically (temporary file in the same folder, then rename).
    `compress`: gzip where the format has it (labelmaps shrink ~100×; continuous float maps
    barely shrink and take ten times longer to write, so callers may turn it off)."""
    path = Path(path)
    suffix = _suffix(path)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(handle)
    try:
        sitk.WriteImage(image, temp, compress and suffix not in (".png", ".tif", ".tiff"))
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.remove(temp)
    return path
