"""What a DICOM folder holds, checked before any pixel is decoded or any model loads.

A folder from a PACS export or a scanner is rarely "one clean series": it may hold a localizer,
a second series, a SEG or SR, a missing slice, several time points at each position, a
gantry-tilted acquisition or an enhanced multi-frame object. SimpleITK's series reader accepts
most of these and returns a volume whose geometry is quietly wrong (a missing slice stretches
the volume, a tilt loses its shear). Here each case is named: refused with what was found and
what to do, or corrected exactly and reported as a warning.

Numpy and the headers only: pydicom reads them (io/dicom_series.py), this module decides.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from ..contract.choices import data_file
from ..contract.errors import InvalidImage


@lru_cache(maxsize=1)
def rules() -> dict:
    return json.loads(data_file("dicom.json").read_text(encoding="utf-8"))


@dataclass(frozen=True)
class ImageHeader:
    """The attributes of one DICOM object that decide how (and whether) it is read."""

    path: str
    sop_class: str
    sop_instance: str
    study: str
    series: str
    modality: str
    description: str = ""
    image_type: tuple[str, ...] = ()
    frames: int = 1
    samples: int = 1
    rows: int = 0
    columns: int = 0
    position: tuple[float, float, float] | None = None
    orientation: tuple[float, ...] | None = None
    pixel_spacing: tuple[float, float] | None = None
    slice_thickness: float | None = None
    instance_number: int | None = None
    gantry_tilt: float | None = None

    @property
    def is_image(self) -> bool:
        return self.rows > 0 and self.columns > 0 and self.modality.upper() not in rules()["non_image_modalities"]

    @property
    def is_localizer(self) -> bool:
        return any(value.upper() in rules()["localizer_image_types"] for value in self.image_type)

    def label(self) -> str:
        number = f"instance {self.instance_number}" if self.instance_number is not None else "an image"
        return f"{number} ({self.path.rsplit('/', 1)[-1]})"


@dataclass
class SeriesGeometry:
    """The exact grid of a stack of slices in LPS: `direction` columns are the row, column and
    slice-step directions. For a gantry tilt the third column is not normal to the first two
    (a sheared grid, held exactly by NRRD, MHA and DICOM SEG)."""

    origin: np.ndarray
    spacing: tuple[float, float, float]
    direction: np.ndarray
    tilt_degrees: float = 0.0


@dataclass
class SeriesSelection:
    images: list[ImageHeader]            # the series' images, in slice order
    geometry: SeriesGeometry
    warnings: list[str] = field(default_factory=list)


def _series_line(series: str, members: list[ImageHeader]) -> str:
    first = members[0]
    name = f" '{first.description}'" if first.description else ""
    return f"{first.modality or '?'}{name}, {len(members)} object(s), SeriesInstanceUID {series}"


def select_series(headers: list[ImageHeader], where: str) -> SeriesSelection:
    """The one image series of a folder, its images in order and its exact geometry; every
    problem is refused here with what was found and what to do."""
    warnings: list[str] = []
    images = [h for h in headers if h.is_image]
    others = [h for h in headers if not h.is_image]
    if others:
        kinds = ", ".join(f"{n} {m or 'unknown'}" for m, n in Counter(h.modality for h in others).items())
        warnings.append(f"{where}: ignored {len(others)} object(s) that are not images to segment ({kinds}).")
    if not images:
        raise InvalidImage(f"{where} holds no DICOM images to segment (only {len(others)} other object(s)).",
                           hint="Pass the folder of an image series (CT, MR, PET …).")
    by_series: dict[str, list[ImageHeader]] = {}
    for header in images:
        by_series.setdefault(header.series, []).append(header)
    scouts = [s for s, members in by_series.items() if all(h.is_localizer for h in members)]
    if scouts and len(scouts) < len(by_series):
        for series in scouts:
            warnings.append(f"{where}: ignored the localizer series {_series_line(series, by_series.pop(series))}.")
    if len(by_series) > 1:
        listed = "; ".join(_series_line(s, m) for s, m in list(by_series.items())[:6])
        raise InvalidImage(f"{where} holds {len(by_series)} image series: {listed}.",
                           hint="Put each series in its own folder and pass one of them (or give batch the "
                                "parent folder: every sub-folder is a case).")
    members = next(iter(by_series.values()))
    multi = [h for h in members if h.frames > 1]
    if multi:
        raise InvalidImage(f"{multi[0].label()} in {where} is a multi-frame object ({multi[0].frames} frames in one "
                           "file, e.g. an enhanced CT/MR or a cine); DiffusionSeg reads series of single-frame "
                           "images.", hint="Export the series as classic single-frame images (Slicer: load and "
                                           "save as NRRD; dcm4che emf2sf), or pass a NRRD/NIfTI volume.")
    localizers = [h for h in members if h.is_localizer]
    if localizers and len(localizers) < len(members):
        members = [h for h in members if not h.is_localizer]
        warnings.append(f"{where}: dropped {len(localizers)} localizer image(s) from the series "
                        f"({', '.join(h.label() for h in localizers[:3])}); they lie across the other slices.")
    missing = [h for h in members if h.position is None or h.orientation is None or h.pixel_spacing is None]
    if missing and len(members) > 1:
        raise InvalidImage(f"{missing[0].label()} in {where} has no ImagePositionPatient, ImageOrientationPatient "
                           "or PixelSpacing, so its place in the patient is unknown.",
                           hint="Export the series with its geometry (a secondary capture has none).")
    _check_same_matrix(members, where)
    members = _one_orientation(members, where)
    ordered, geometry = _stack(members, where)
    if geometry.tilt_degrees > 0:
        tags = {h.gantry_tilt for h in ordered if h.gantry_tilt}
        said = f" (GantryDetectorTilt {', '.join(f'{t:g}' for t in sorted(tags))})" if tags else ""
        warnings.append(
            f"{where} was acquired with a gantry tilt of {geometry.tilt_degrees:.2f}°{said}: its slices are sheared. "
            "The volume keeps the exact sheared grid (a non-orthogonal direction), so every label stays on its "
            "slice; NRRD, MHA and DICOM SEG hold it exactly, NIfTI cannot.")
    return SeriesSelection(ordered, geometry, warnings)


def _check_same_matrix(members: list[ImageHeader], where: str) -> None:
    shapes = Counter((h.rows, h.columns) for h in members)
    if len(shapes) > 1:
        listed = ", ".join(f"{n} of {r}×{c}" for (r, c), n in shapes.most_common())
        raise InvalidImage(f"The images of {where} differ in size ({listed} pixels).",
                           hint="A series must share one matrix; pass the images of one acquisition.")
    spacings = {tuple(round(v, 4) for v in h.pixel_spacing) for h in members if h.pixel_spacing}
    if len(spacings) > 1:
        raise InvalidImage(f"The images of {where} differ in pixel spacing ({', '.join(map(str, sorted(spacings)))} mm).",
                           hint="A series must share one pixel spacing; pass the images of one acquisition.")


def _plane(orientation) -> str:
    """'axial', 'coronal', 'sagittal' or 'oblique' for a row/column direction pair."""
    normal = np.cross(orientation[:3], orientation[3:])
    axis = int(np.argmax(np.abs(normal)))
    if abs(normal[axis]) < 0.9:
        return "oblique"
    return ("sagittal", "coronal", "axial")[axis]


def _one_orientation(members: list[ImageHeader], where: str) -> list[ImageHeader]:
    tolerance = rules()["orientation_tolerance"]
    groups: list[list[ImageHeader]] = []
    for header in members:
        for group in groups:
            if np.allclose(group[0].orientation, header.orientation, atol=tolerance):
                group.append(header)
                break
        else:
            groups.append([header])
    if len(groups) > 1:
        groups.sort(key=len, reverse=True)
        listed = ", ".join(f"{len(g)} {_plane(g[0].orientation)} ({', '.join(f'{v:.3f}' for v in g[0].orientation)})"
                           for g in groups[:4])
        raise InvalidImage(f"The images of {where} lie in {len(groups)} orientations: {listed}.",
                           hint="Pass the images of one orientation (a series reformatted in several planes, or "
                                "a localizer without its LOCALIZER image type: remove those files).")
    return members


def _stack(members: list[ImageHeader], where: str) -> tuple[list[ImageHeader], SeriesGeometry]:
    """Slices ordered along the normal; refuse duplicates (4D), gaps and uneven steps; measure a
    tilt exactly from the positions (never from the GantryDetectorTilt tag alone)."""
    first = members[0]
    row, column = np.array(first.orientation[:3], float), np.array(first.orientation[3:], float)
    normal = np.cross(row, column)
    normal /= np.linalg.norm(normal)
    spacing_rc = first.pixel_spacing or (1.0, 1.0)
    if len(members) == 1:
        step = float(first.slice_thickness or 1.0)
        return members, SeriesGeometry(np.array(first.position, float), (spacing_rc[1], spacing_rc[0], step),
                                       np.column_stack([row, column, normal]))
    ordered = sorted(members, key=lambda h: float(np.dot(h.position, normal)))
    positions = np.array([h.position for h in ordered], float)
    steps = np.diff(positions, axis=0)
    along = steps @ normal
    tolerance = rules()["position_tolerance_mm"]
    same = np.flatnonzero(along < tolerance)
    if same.size:
        per_position = Counter(np.round(positions @ normal / tolerance).astype(np.int64))
        times = max(per_position.values())
        raise InvalidImage(
            f"{where} holds {len(ordered)} images at {len(per_position)} positions: up to {times} share one position "
            f"({ordered[same[0]].label()} and {ordered[same[0] + 1].label()}). The series is 4D (time points, "
            "phases, echoes or b-values) or holds a copy of some images.",
            hint="Pass one time point / phase / echo (split the series by its TemporalPositionIdentifier, "
                 "TriggerTime or EchoTime), or remove duplicated files.")
    typical = float(np.median(along))
    relative = rules()["relative_step_tolerance"]
    uneven = np.flatnonzero(np.abs(along - typical) > max(tolerance, relative * typical))
    if uneven.size:
        k = int(uneven[0])
        gap = float(along[k])
        ratio = gap / typical
        if ratio > 1.5 and abs(ratio - round(ratio)) < 0.1:
            what = (f"a gap of {gap:.3g} mm between {ordered[k].label()} and {ordered[k + 1].label()} where the "
                    f"other slices are {typical:.3g} mm apart: about {round(ratio) - 1} slice(s) missing")
        else:
            what = (f"unevenly spaced slices: steps from {float(along.min()):.3g} to {float(along.max()):.3g} mm "
                    f"(first at {ordered[k].label()})")
        more = f" ({uneven.size} uneven steps in all)" if uneven.size > 1 else ""
        raise InvalidImage(f"{where} has {what}{more}.",
                           hint="Export the complete series again (a slice may have failed to transfer), or "
                                "resample it to even spacing (Slicer: Resample Scalar Volume) and pass the volume.")
    mean_step = (positions[-1] - positions[0]) / (len(ordered) - 1)
    residual = positions - (positions[0] + np.outer(np.arange(len(ordered)), mean_step))
    if float(np.abs(residual).max()) > max(tolerance, relative * typical):
        raise InvalidImage(f"The slices of {where} do not lie on one straight line (off by up to "
                           f"{float(np.abs(residual).max()):.3g} mm): a curved or irregular reformat.",
                           hint="Pass a regular series, or resample it to a regular grid first.")
    length = float(np.linalg.norm(mean_step))
    cosine = float(np.dot(mean_step, normal)) / length
    tilt = math.degrees(math.acos(min(1.0, cosine)))
    direction = np.column_stack([row, column, mean_step / length])
    if tilt < 0.01:
        tilt, direction = 0.0, np.column_stack([row, column, normal])
    return ordered, SeriesGeometry(positions[0], (spacing_rc[1], spacing_rc[0], length), direction, tilt)
