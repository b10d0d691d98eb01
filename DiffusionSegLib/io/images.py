"""Reading images into volumes and writing labelmaps on exactly the input's grid.

Everything goes through SimpleITK, so NRRD, NIfTI, MHA, DICOM series and PNG/JPG/BMP/TIFF share
one path, and the output's size, spacing, origin and direction are *copied* from the input image
(never recomputed), which is what keeps segmentations in the right place in patient space.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ContextManager

import numpy as np
import SimpleITK as sitk

from ..contract.errors import InputNotFound, InvalidImage, InvalidRequest, WriteFailed
from .dicom_series import DicomSource, dicom_files, is_dicom_file, read_dicom
from .formats import LOSSY_SUFFIXES, PICTURE_SUFFIXES, mismatch_message, viewable_labels
from .output_files import StagedFile, check_output_target, stage_file

LABEL_SUFFIXES = (".nrrd", ".nii", ".nii.gz", ".mha", ".png", ".bmp", ".tif", ".tiff", ".jpg")
SEG_SUFFIX = ".dcm"   # a DICOM Segmentation object (io/dicom_seg.py): needs a DICOM input
OUTPUT_SUFFIXES = LABEL_SUFFIXES + (SEG_SUFFIX,)
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
    notes: list[str] = field(default_factory=list)   # what was changed on reading (alpha dropped…)
    dicom: DicomSource | None = None   # the DICOM images it was read from, in slice order

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
    """A folder without DICOM files: the one image file it holds (GDCM finds no series there)."""
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
    path = check_input_path(path)
    if (path.is_dir() and dicom_files(path)) or (path.is_file() and is_dicom_file(path)):
        image, source, warnings = read_dicom(path)
        volume = volume_from_image(image, str(path), allow_constant=allow_constant)
        volume.dicom = source
        volume.notes.extend(warnings)
        return volume
    try:
        image = _read_series(path) if path.is_dir() else sitk.ReadImage(str(path))
    except RuntimeError as exc:
        mismatch = None if path.is_dir() else mismatch_message(path, _suffix(path))
        if mismatch:
            raise InvalidImage(mismatch, hint="The file's contents decide its format; its name must agree.") from None
        first = str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else ""
        raise InvalidImage(f"Could not read {path} as an image ({first}).",
                           hint="Supported: NRRD, NIfTI, MHA/MHD, a DICOM series folder, PNG, JPG, BMP, TIFF.") from None
    return volume_from_image(image, str(path), allow_constant=allow_constant)


def check_input_path(path: str | Path) -> Path:
    """An existing regular file or folder. Anything else (a FIFO would block the reader forever,
    deaf to cancel) is refused before it is opened."""
    path = Path(path).expanduser()
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise InputNotFound(f"Input image not found: {path}", hint="Check the path and try again.") from None
    except OSError as exc:
        raise InvalidImage(f"Cannot open the input {path}: {exc.strerror}.") from None
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise InvalidImage(f"The input {path} is not a regular file or folder (a FIFO, socket or device).",
                           hint="Save the image to a file and pass that file.")
    return path


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
    notes = []
    if components == 4:
        array = array[..., :3]
        notes.append(f"{path} is RGBA: the alpha channel was dropped and the RGB colours used.")
    is_rgb = components != 1
    array = np.ascontiguousarray(array, dtype=np.float32)
    finite = np.isfinite(array)
    if not finite.all():
        bad = int((~finite).sum())
        raise InvalidImage(f"{path} has {bad} NaN or infinite voxel(s).",
                           hint="Replace them (e.g. with the background value) before segmenting.")
    if not allow_constant and float(array.max()) == float(array.min()):
        raise InvalidImage(f"{path} is empty: every voxel has the value {float(array.min()):g}.")
    return Volume(array=array, reference=image, is_rgb=is_rgb, path=path, notes=notes)


def check_output_path(path: str | Path, dimension: int | None = None, *, inputs: tuple = (),
                      overwrite: bool = True) -> Path:
    """Fail before any model work if the output cannot be written (or cannot hold a labelmap of
    the input's `dimension`), is one of the `inputs`, or exists and `overwrite` is false."""
    path = Path(path).expanduser()
    if dimension is not None and dimension != 2 and _suffix(path) in PICTURE_SUFFIXES:
        raise InvalidRequest(f"A {_suffix(path)} output can only hold a 2D labelmap; use .nrrd or .nii.gz.")
    if _suffix(path) not in OUTPUT_SUFFIXES:
        raise InvalidRequest(f"Unsupported output format '{_suffix(path) or path.name}'.",
                             hint=f"Use one of {', '.join(OUTPUT_SUFFIXES)} (e.g. result.nrrd; .dcm: a DICOM SEG).")
    if not path.parent.is_dir():
        raise InvalidRequest(f"Output folder does not exist: {path.parent}")
    if not os.access(path.parent, os.W_OK):
        raise InvalidRequest(f"Output folder is not writable: {path.parent}")
    return check_output_target(path, inputs=inputs, overwrite=overwrite)


def check_output_fits(volume: Volume, path: str | Path) -> None:
    """Refuse, before any model loads, an output format that cannot hold this volume's result
    exactly: a SEG without DICOM source images, NIfTI for a sheared (gantry-tilted) grid."""
    path = Path(path)
    suffix = _suffix(path)
    if suffix == SEG_SUFFIX and volume.dicom is None:
        raise InvalidRequest(f"A DICOM SEG output ({path.name}) needs DICOM source images to reference; the input "
                             f"{volume.path} is not a DICOM series with patient geometry.",
                             hint="Write .nrrd or .nii.gz instead, or segment the DICOM series the image came from.")
    direction = volume.direction
    if suffix in (".nii", ".nii.gz") and not np.allclose(direction.T @ direction, np.eye(3), atol=1e-6):
        raise InvalidRequest(f"The input's grid is sheared (a gantry-tilted series); NIfTI cannot hold it exactly, so "
                             f"{path.name} would put the labels in the wrong place.",
                             hint="Write .nrrd, .mha or .dcm (DICOM SEG): they keep the exact grid.")


def labelmap_image(labels: np.ndarray, reference: sitk.Image, suffix: str = ".nrrd") -> sitk.Image:
    """Labels (K, J, I) as an image with the reference's exact geometry; in a picture format the
    viewable rendering of formats.viewable_labels."""
    is_rgb = False
    if suffix in PICTURE_SUFFIXES:
        labels, is_rgb = viewable_labels(labels)
    else:
        largest = int(labels.max(initial=0))
        dtype = np.uint8 if largest < 2**8 else np.uint16 if largest < 2**16 else np.uint32
        labels = labels.astype(dtype, copy=False)
    if reference.GetDimension() == 2:
        labels = labels[0]
    image = sitk.GetImageFromArray(labels, isVector=is_rgb)
    image.CopyInformation(reference)
    return image


def _verifier(image: sitk.Image, suffix: str, values: np.ndarray | None = None) -> Callable[[str], None]:
    """Read the written file back: same size and pixels (lossy JPEG: same size, decodable).
    `values`: what the caller asked to write (labels in a label format), compared instead of the
    converted image, so a value the file type could not hold is caught, not compared with itself."""
    expected = sitk.GetArrayViewFromImage(image) if values is None else np.asarray(values)
    if values is not None and image.GetDimension() == 2 and expected.ndim == 3:
        expected = expected[0]

    def verify(temp: str) -> None:
        written = sitk.ReadImage(temp)
        if written.GetSize() != image.GetSize():
            raise WriteFailed(f"The written file holds {written.GetSize()} voxels, not {image.GetSize()}.")
        pixels = sitk.GetArrayViewFromImage(written)
        if pixels.ndim == expected.ndim + 1 and (pixels == pixels[..., :1]).all():
            pixels = pixels[..., 0]   # a grey BMP reads back as equal R, G and B
        if suffix not in LOSSY_SUFFIXES and not np.array_equal(pixels, expected):
            raise WriteFailed("The written labelmap differs from the computed one.")
    return verify


def stage_labelmap(labels: np.ndarray, reference: sitk.Image, path: str | Path, *,
                   overwrite: bool = True) -> StagedFile:
    """Write and verify the labelmap in a temporary file beside `path`; commit() renames it."""
    path = check_output_path(path, reference.GetDimension(), overwrite=overwrite)
    suffix = _suffix(path)
    image = labelmap_image(labels, reference, suffix)
    compress = suffix not in PICTURE_SUFFIXES
    values = None if suffix in PICTURE_SUFFIXES else labels
    return stage_file(path, lambda temp: sitk.WriteImage(image, temp, compress), _verifier(image, suffix, values),
                      suffix=suffix)


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


def stage_image(image: sitk.Image, path: str | Path, *, compress: bool = True,
                values: np.ndarray | None = None) -> StagedFile:
    """Write and verify any image (a bundle map) beside `path` like the labelmap; commit()
    renames it. `compress`: gzip where the format has it (labelmaps shrink ~100×; continuous
    float maps barely shrink and take ten times longer to write, so callers may turn it off).
    `values`: the array the image was made from, for the read-back check."""
    path = Path(path)
    suffix = _suffix(path)
    compress = compress and suffix not in PICTURE_SUFFIXES
    return stage_file(path, lambda temp: sitk.WriteImage(image, temp, compress), _verifier(image, suffix, values),
                      suffix=suffix)


def write_labelmap(labels: np.ndarray, reference: sitk.Image, path: str | Path, *, overwrite: bool = True,
                   guard: Callable[[], ContextManager] | None = None) -> Path:
    """Write atomically and verified: a temporary file in the same folder, read back, renamed
    when complete (under `guard`), so a full disk, a cancel or a crash never leaves a partial
    result where the caller looks for one."""
    staged = stage_labelmap(labels, reference, path, overwrite=overwrite)
    try:
        if guard is None:
            return staged.commit()
        with guard():
            return staged.commit()
    finally:
        staged.discard()
