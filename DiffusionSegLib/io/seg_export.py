"""A segmentation someone refined (Slicer's `.seg.nrrd`) as a DICOM SEG of the series it was made on.

The job's own SEG (jobs/outputs.py) is written from the computed labels. A result reviewed and
edited in the Segment Editor lives in a `.seg.nrrd` on the viewer's grid instead, with the
segments' names in its header and overlapping segments in separate layers. This reads that file,
puts its labels on the DICOM series' grid (nearest neighbour, through patient space, so a viewer
that stacked the slices in the other order or on an oblique grid still lands every voxel on its
source image) and writes the SEG through io/dicom_seg.py, verified like every other output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..contract.errors import InvalidRequest
from .dicom_seg import SegInfo, consecutive_labels, stage_seg
from .dicom_series import read_dicom


def read_seg_nrrd(path: str | Path) -> tuple[sitk.Image, list[dict]]:
    """(one label image, [{label, name}]) of a Slicer segmentation file: segment i gets label i + 1,
    read from its layer and label value (`Segment{i}_Layer`, `Segment{i}_LabelValue`); where
    segments overlap, the later one wins in this single labelmap."""
    image = sitk.ReadImage(str(path))
    keys = set(image.GetMetaDataKeys())
    layers = sitk.GetArrayFromImage(image)
    if image.GetNumberOfComponentsPerPixel() == 1:
        layers = layers[..., None]
    labels = np.zeros(layers.shape[:-1], np.uint16)
    segments: list[dict] = []

    def meta(index: int, field: str, default: str = "") -> str:
        key = f"Segment{index}_{field}"
        return image.GetMetaData(key) if key in keys else default

    index = 0
    while f"Segment{index}_ID" in keys:
        layer, value = int(meta(index, "Layer", "0")), int(meta(index, "LabelValue", "1"))
        labels[layers[..., layer] == value] = index + 1
        segments.append({"label": index + 1, "name": meta(index, "Name") or f"segment {index + 1}"})
        index += 1
    if not segments:
        raise InvalidRequest(f"{Path(path).name} holds no segment (it is not a Slicer segmentation file).")
    out = sitk.GetImageFromArray(labels)
    out.SetOrigin(image.GetOrigin())
    out.SetSpacing(image.GetSpacing())
    out.SetDirection(image.GetDirection())
    return out, segments


def labels_on_grid(labels: sitk.Image, grid: sitk.Image) -> np.ndarray:
    """The labels (K, J, I) at the voxel centres of `grid`: nearest neighbour through patient
    space, 0 outside the labels' extent. Identical grids give identical voxels."""
    resampled = sitk.Resample(labels, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt16)
    return sitk.GetArrayFromImage(resampled)


def write_seg_for_series(seg_nrrd: str | Path, dicom_folder: str | Path, output: str | Path, info: SegInfo,
                         seg_type: str = "binary") -> dict:
    """Write `output` (a DICOM SEG referencing the series in `dicom_folder`) from a `.seg.nrrd`;
    {path, segments, voxels} of what was written. Segments with no voxel on the series' grid are
    left out (a SEG segment must hold something) and named in `left_out`."""
    image, source, _ = read_dicom(Path(dicom_folder))
    if source is None:
        raise InvalidRequest(f"{Path(dicom_folder).name} is a single picture without patient geometry; "
                             "a DICOM SEG needs a series with positions to refer to.")
    labels_image, segments = read_seg_nrrd(seg_nrrd)
    labels = labels_on_grid(labels_image, image)
    present = set(np.unique(labels).tolist()) - {0}
    kept = [s for s in segments if s["label"] in present]
    if not kept:
        raise InvalidRequest("No segment has a voxel on the DICOM series' grid; there is nothing to export.")
    labels, kept = consecutive_labels(labels, kept)
    stage_seg(labels, source, kept, info, output, seg_type).commit()
    return {"path": str(output), "segments": [s["name"] for s in kept],
            "left_out": [s["name"] for s in segments if s["label"] not in present],
            "voxels": int(np.count_nonzero(labels))}
