"""Reading a DICOM folder (or one DICOM file) into an image on its exact grid.

pydicom reads the headers of every file (no pixels), io/input_checks.py picks the one image
series and refuses or corrects what would be read wrongly, and the chosen files are decoded in
slice order by SimpleITK (GDCM: every transfer syntax Slicer reads, rescale slope/intercept
applied per file). The geometry is then set from the headers, not from what the series reader
inferred: that is what keeps a gantry-tilted series exact. The files and UIDs travel with the
volume (`DicomSource`), because a DICOM SEG must reference exactly the images it segments.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..contract.errors import InvalidImage
from .input_checks import ImageHeader, SeriesSelection, select_series

DICOM_MAGIC_OFFSET, DICOM_MAGIC = 128, b"DICM"


@dataclass(frozen=True)
class DicomSource:
    """Where a volume read from DICOM came from: its files in slice order (k = 0, 1 …) and the
    UIDs a derived object must share or reference."""

    files: tuple[str, ...]
    study: str
    series: str
    modality: str
    tilt_degrees: float = 0.0


def is_dicom_file(path: str | Path) -> bool:
    """A DICOM Part 10 file (the preamble's 'DICM'), whatever its name."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(DICOM_MAGIC_OFFSET + 4)
    except OSError:
        return False
    return head[DICOM_MAGIC_OFFSET:DICOM_MAGIC_OFFSET + 4] == DICOM_MAGIC


def dicom_files(folder: Path) -> list[Path]:
    """The DICOM files directly in `folder` (hidden files and DICOMDIR left out)."""
    return [p for p in sorted(folder.iterdir())
            if p.is_file() and not p.name.startswith(".") and p.name.upper() != "DICOMDIR" and is_dicom_file(p)]


def _floats(value, count: int) -> tuple[float, ...] | None:
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return numbers if len(numbers) == count and all(np.isfinite(numbers)) else None


def _number(value, kind=float):
    try:
        return kind(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def read_header(path: Path) -> ImageHeader:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise InvalidImage(f"{path} is not a readable DICOM file ({str(exc)[:160]}).",
                           hint="Remove it from the folder, or export the series again.") from None
    tilt = _number(ds.get("GantryDetectorTilt"))
    return ImageHeader(
        path=str(path), sop_class=str(ds.get("SOPClassUID", "")), sop_instance=str(ds.get("SOPInstanceUID", "")),
        study=str(ds.get("StudyInstanceUID", "")), series=str(ds.get("SeriesInstanceUID", "")),
        modality=str(ds.get("Modality", "")), description=str(ds.get("SeriesDescription", "")),
        image_type=tuple(str(v) for v in (ds.get("ImageType") or ())),
        frames=_number(ds.get("NumberOfFrames"), int) or 1, samples=_number(ds.get("SamplesPerPixel"), int) or 1,
        rows=_number(ds.get("Rows"), int) or 0, columns=_number(ds.get("Columns"), int) or 0,
        position=_floats(ds.get("ImagePositionPatient"), 3), orientation=_floats(ds.get("ImageOrientationPatient"), 6),
        pixel_spacing=_floats(ds.get("PixelSpacing"), 2), slice_thickness=_number(ds.get("SliceThickness")),
        instance_number=_number(ds.get("InstanceNumber"), int), gantry_tilt=tilt if tilt else None)


def read_dicom(path: Path) -> tuple[sitk.Image, DicomSource | None, list[str]]:
    """(image on its exact grid, its DICOM source, warnings) for a DICOM folder or file.

    A single file without patient geometry (a photograph, a projection X-ray without position)
    is read as a picture with no DicomSource: it can be segmented, not referenced by a SEG."""
    files = [path] if path.is_file() else dicom_files(path)
    where = f"The DICOM folder {path}" if path.is_dir() else str(path)
    headers = [read_header(p) for p in files]
    if len(headers) == 1 and headers[0].is_image and (headers[0].position is None or headers[0].orientation is None) \
            and headers[0].frames == 1:
        return _read_files([headers[0].path], None, headers[0].samples), None, []
    selection = select_series(headers, where)
    image = _read_files([h.path for h in selection.images], selection, selection.images[0].samples)
    first = selection.images[0]
    source = DicomSource(tuple(h.path for h in selection.images), first.study, first.series, first.modality,
                         selection.geometry.tilt_degrees)
    return image, source, selection.warnings


def _read_files(paths: list[str], selection: SeriesSelection | None, samples: int) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(paths)
    if samples == 1:
        reader.SetOutputPixelType(sitk.sitkFloat32)   # per-file rescale slopes may differ: never truncate
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else ""
        raise InvalidImage(f"Could not decode the DICOM pixels of {Path(paths[0]).parent} ({first}).",
                           hint="Check that the files are complete; a compressed transfer syntax GDCM cannot "
                                "decode must be decompressed first (dcmdjpeg, gdcmconv --raw).") from None
    if image.GetNumberOfComponentsPerPixel() == 1 and selection is None and image.GetDimension() == 3 \
            and image.GetSize()[2] == 1:
        image = image[:, :, 0]    # one picture without geometry: a 2D image, like a PNG
    if selection is None:
        return image
    geometry = selection.geometry
    size = image.GetSize()
    if image.GetDimension() != 3 or size[2] != len(paths) or (size[1], size[0]) != (selection.images[0].rows,
                                                                                     selection.images[0].columns):
        raise InvalidImage(f"The DICOM pixels of {Path(paths[0]).parent} decode to {'×'.join(map(str, size))} "
                           f"voxels, not {selection.images[0].columns}×{selection.images[0].rows}×{len(paths)}.")
    image.SetOrigin(tuple(float(v) for v in geometry.origin))
    image.SetSpacing(tuple(float(v) for v in geometry.spacing))
    image.SetDirection(tuple(float(v) for v in geometry.direction.ravel()))
    for key in image.GetMetaDataKeys():  # the reader's per-slice guesses describe another grid
        image.EraseMetaData(key)
    return image
