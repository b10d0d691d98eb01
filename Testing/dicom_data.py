"""Synthetic DICOM series for the tests, written with pydicom (and highdicom for the enhanced
multi-frame object): axial, oblique and gantry-tilted CT, MR, a missing slice, a localizer, two
series in one folder. Never real patient data; nothing here reads data from outside the repository.

The CT phantom: air (-1000 HU), a body ellipse (40 HU) and a bright disc (250 HU) on the middle
slices, stored as unsigned values with RescaleIntercept -1024, as scanners write them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


@dataclass
class Series:
    folder: Path
    files: list[Path]           # in slice order (what the reader must return), localizer excluded
    study: str
    series: str
    hu: np.ndarray              # (K, J, I) the stored values after rescale, in slice order


def phantom(slices: int, rows: int, columns: int, modality: str = "CT", seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:rows, 0:columns]
    body = ((yy - rows / 2) / (rows * 0.42)) ** 2 + ((xx - columns / 2) / (columns * 0.45)) ** 2 < 1
    volume = np.empty((slices, rows, columns), np.float32)
    for k in range(slices):
        disc = (yy - rows * 0.45) ** 2 + (xx - columns * (0.4 + 0.02 * k)) ** 2 < (rows * 0.15) ** 2
        middle = slices // 4 <= k < slices - slices // 4
        if modality == "CT":
            plane = np.where(body, 40.0, -1000.0) + np.where(body & disc & middle, 210.0, 0.0)
            plane += rng.normal(0, 5, plane.shape) * body
        else:
            plane = np.where(body, 300.0, 0.0) + np.where(body & disc & middle, 500.0, 0.0)
            plane += np.abs(rng.normal(0, 8, plane.shape)) * body
        volume[k] = np.round(plane)
    return volume


def _dataset(modality: str, study: str, series: str, frame_of_reference: str, number: int) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CT_STORAGE if modality == "CT" else MR_STORAGE
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Phantom^Synthetic", "DS-TEST-1", "19700101", "O"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame_of_reference
    ds.StudyDate, ds.StudyTime, ds.SeriesDate, ds.SeriesTime = "20240102", "101500", "20240102", "101500"
    ds.AccessionNumber, ds.StudyID, ds.ReferringPhysicianName = "A1", "1", ""
    ds.Modality, ds.SeriesNumber, ds.Manufacturer = modality, number, "DiffusionSeg tests"
    ds.SeriesDescription = f"synthetic {modality}"
    ds.PositionReferenceIndicator = ""
    ds.BodyPartExamined = "ABDOMEN"
    ds.PatientPosition = "HFS"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    if modality == "CT":
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
        ds.KVP, ds.AcquisitionNumber = 120, 1
    else:
        ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions, ds.MRAcquisitionType = "SE", "NONE", "", "2D"
        ds.EchoTime, ds.RepetitionTime, ds.EchoTrainLength, ds.MagneticFieldStrength = 10, 500, 1, 1.5
    return ds


def write_series(folder: Path, *, modality: str = "CT", slices: int = 8, rows: int = 40, columns: int = 48,
                 pixel_spacing=(0.7, 0.8), step: float = 2.5, orientation=(1, 0, 0, 0, 1, 0),
                 origin=(-20.0, -15.0, 30.0), tilt_degrees: float = 0.0, drop: int | None = None,
                 localizer: bool = False, study: str | None = None, number: int = 3, seed: int = 0,
                 shuffle_names: bool = True) -> Series:
    """A single-frame series in `folder`. `tilt_degrees`: the image planes are tilted about the
    row axis while the table steps along the slice normal of an untilted plane (a gantry tilt).
    `drop`: leave slice k out (a missing slice). `localizer`: add a coronal LOCALIZER image to
    the same series."""
    folder.mkdir(parents=True, exist_ok=True)
    study = study or generate_uid()
    series, frame = generate_uid(), generate_uid()
    values = phantom(slices, rows, columns, modality, seed)
    row, column = np.array(orientation[:3], float), np.array(orientation[3:], float)
    table = np.cross(row, column)
    if tilt_degrees:
        t = math.radians(tilt_degrees)
        column = math.cos(t) * column - math.sin(t) * table   # tilt the plane, keep the table's path
    kept, files = [], []
    order = np.random.default_rng(seed + 1).permutation(slices) if shuffle_names else np.arange(slices)
    for k in range(slices):
        if k == drop:
            continue
        ds = _dataset(modality, study, series, frame, number)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [f"{v:.6f}" for v in np.asarray(origin) + k * step * table]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*row, *column)]
        ds.PixelSpacing = [f"{v:g}" for v in pixel_spacing]
        ds.SliceThickness = step
        if tilt_degrees:
            ds.GantryDetectorTilt = tilt_degrees
        ds.Rows, ds.Columns = rows, columns
        stored = values[k] + (1024 if modality == "CT" else 0)
        ds.PixelData = stored.astype(np.uint16).tobytes()
        path = folder / f"IM{int(order[k]):04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
        kept.append(k)
    if localizer:
        ds = _dataset(modality, study, series, frame, number)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        ds.InstanceNumber = slices + 1
        ds.ImagePositionPatient = [f"{v:g}" for v in (origin[0], 0.0, origin[2] + step * slices)]
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "0", "-1"]
        ds.PixelSpacing = ["1", "1"]
        ds.SliceThickness = 1
        ds.Rows, ds.Columns = rows, columns
        ds.PixelData = np.full((rows, columns), 1000, np.uint16).tobytes()
        ds.save_as(folder / "SCOUT.dcm", enforce_file_format=True)
    return Series(folder, files, study, series, values[kept])


def write_multiframe(folder: Path, series: Series) -> Path:
    """The series as one legacy-converted enhanced CT object (every slice a frame of one file)."""
    from highdicom.legacy import LegacyConvertedEnhancedCTImage

    datasets = [pydicom.dcmread(p) for p in series.files]
    enhanced = LegacyConvertedEnhancedCTImage(datasets, series_instance_uid=generate_uid(), series_number=9,
                                              sop_instance_uid=generate_uid(), instance_number=1)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "enhanced.dcm"
    enhanced.save_as(path, enforce_file_format=True)
    return path
