"""A result as a DICOM Segmentation object (SEG), written with highdicom.

The SEG references the very images the volume was read from (io/dicom_series.py keeps them in
slice order), so frame k of the labelmap lies on source image k: the plane positions are the
source images' own, which keeps gantry-tilted and oblique series exact. Each label is one segment,
coded from the shared terminology table (io/terminology.py), marked AUTOMATIC and named after
DiffusionSeg, the method and the model; the facts of io/provenance go into the algorithm's
parameters and the derivation description. Written like every other output: a temporary file
beside the target, read back with highdicom and compared voxel for voxel, then renamed.

highdicom and pydicom are the `dicom` extra (`pip install -e ".[dicom]"`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..contract.errors import InvalidRequest, WriteFailed
from .dicom_series import DicomSource
from .output_files import StagedFile, stage_file
from .terminology import segment_codes

SEG_TYPES = ("binary", "labelmap")
FRACTION_STEPS = 255     # a probability SEG stores k / 255: within 0.002 of the map
MANUFACTURER = "DiffusionSeg"
UID_NAMESPACE = "diffusionseg-seg"


def import_highdicom() -> Any:
    try:
        import highdicom
    except ImportError:
        raise InvalidRequest("Writing DICOM SEG needs highdicom, which is not installed.",
                             hint='Install it with `pip install -e ".[dicom]"` (or `pip install highdicom`).') from None
    return highdicom


@dataclass(frozen=True)
class SegInfo:
    """What a SEG says about how it was made (a subset of the provenance record)."""

    method: str
    model: str | None
    version: str
    software: tuple[str, ...] = ()
    parameters: dict[str, str] = field(default_factory=dict)   # name → text (AlgorithmParameters)
    derivation: str = ""                                       # up to 1024 characters
    identity: str = ""       # what the result depends on (request without paths): makes the UIDs
    # AUTOMATIC for a job's own output; SEMIAUTOMATIC for a result a person reviewed and edited
    algorithm_type: str = "AUTOMATIC"

    def algorithm_name(self) -> str:
        model = Path(self.model).name if self.model and ("/" in self.model or "\\" in self.model) else self.model
        name = f"{MANUFACTURER} {self.method}" + (f" ({model})" if model else "")
        return name if len(name) <= 64 else name[:63] + "…"


def consecutive_labels(labels: np.ndarray, segments: list[dict]) -> tuple[np.ndarray, list[dict]]:
    """A SEG numbers its segments 1, 2, 3 …: labels with gaps (an absent prompt) are renumbered
    in order, and each segment's `label` says its new number."""
    present = sorted(int(s["label"]) for s in segments)
    if present == list(range(1, len(present) + 1)):
        return labels, segments
    lookup = np.zeros(int(labels.max(initial=0)) + 1, np.uint16)
    for number, value in enumerate(present, start=1):
        lookup[value] = number
    renumbered = lookup[labels]
    mapping = {value: number for number, value in enumerate(present, start=1)}
    return renumbered, [{**s, "label": mapping[int(s["label"])]} for s in segments]


def deterministic_uid(*parts: str) -> str:
    """A UID under 2.25 from a name-based UUID (RFC 4122 version 5) of `parts`: the same result
    of the same request on the same series gets the same UIDs, so storing it twice cannot make
    a second object in a PACS."""
    import uuid

    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, '|'.join((UID_NAMESPACE, *parts))).int}"


def _coded(hd: Any, code) -> Any:
    scheme, value, meaning = code
    return hd.sr.CodedConcept(value=value, scheme_designator=scheme, meaning=meaning)


def _descriptions(hd: Any, segments: list[dict], info: SegInfo) -> list:
    algorithm = hd.AlgorithmIdentificationSequence(
        name=info.algorithm_name(), family=hd.sr.CodedConcept("123110", "DCM", "Artificial Intelligence"),
        version=info.version[:64], parameters={k: v[:1024] for k, v in info.parameters.items()} or None)
    out = []
    for segment in sorted(segments, key=lambda s: s["label"]):
        name = str(segment.get("name") or f"segment {segment['label']}")
        codes = segment_codes(name)
        colour = hd.color.CIELabColor.from_rgb(*codes.color) if codes.color else None
        out.append(hd.seg.SegmentDescription(
            segment_number=int(segment["label"]), segment_label=name[:64],
            segmented_property_category=_coded(hd, codes.category), segmented_property_type=_coded(hd, codes.type),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues[info.algorithm_type], algorithm_identification=algorithm,
            anatomic_regions=[_coded(hd, codes.region)] if codes.region else None, display_color=colour))
    return out


def source_datasets(source: DicomSource) -> list:
    import pydicom

    return [pydicom.dcmread(path, stop_before_pixels=True) for path in source.files]


def _check_slices(values: np.ndarray, images: list, what: str) -> None:
    if values.shape[0] != len(images):
        raise InvalidRequest(f"The {what} has {values.shape[0]} slices; the DICOM series {len(images)} images.")


def _shared_attributes(source: DicomSource, info: SegInfo, images: list, digest: str, kind: str,
                       description: str) -> dict[str, Any]:
    """What every SEG DiffusionSeg writes says about itself: UIDs repeatable from what it depends
    on, the series number beside the source's, manufacturer, software, descriptions."""
    series_number = int(images[0].get("SeriesNumber") or 0) + (2000 if kind == "fractional" else 1000)
    return dict(
        series_instance_uid=deterministic_uid(source.series, info.identity, digest, "series"),
        series_number=min(series_number, 2**31 - 1),
        sop_instance_uid=deterministic_uid(source.series, info.identity, digest, kind, "instance"),
        instance_number=1, manufacturer=MANUFACTURER, manufacturer_model_name=f"{MANUFACTURER} {info.method}"[:64],
        software_versions=[v[:64] for v in (info.version, *info.software)], device_serial_number="0",
        series_description=f"{MANUFACTURER} {info.method}{description}"[:64],
        content_description=(f"{MANUFACTURER} {info.method}, automatic; review before clinical use"
                             if info.algorithm_type == "AUTOMATIC" else
                             f"{MANUFACTURER} {info.method}, reviewed and edited")[:64],
        content_label="DIFFUSIONSEG", content_creator_name=None)


def build_seg(labels: np.ndarray, source: DicomSource, segments: list[dict], info: SegInfo,
              seg_type: str = "binary", images: list | None = None) -> Any:
    """The SEG dataset for labels (K, J, I) on the source series' grid, one frame per image
    (`images`: the source headers in slice order, when already read)."""
    hd = import_highdicom()
    if seg_type not in SEG_TYPES:
        raise InvalidRequest(f"Unknown SEG type {seg_type!r}; choose one of {', '.join(SEG_TYPES)}.")
    kind = hd.seg.SegmentationTypeValues.LABELMAP if seg_type == "labelmap" else hd.seg.SegmentationTypeValues.BINARY
    images = images if images is not None else source_datasets(source)
    _check_slices(labels, images, "labelmap")
    dtype = np.uint8 if int(labels.max(initial=0)) < 256 else np.uint16
    names = ", ".join(str(s.get("name")) for s in segments)
    seg = hd.seg.Segmentation(
        source_images=images, pixel_array=np.ascontiguousarray(labels, dtype=dtype), segmentation_type=kind,
        segment_descriptions=_descriptions(hd, segments, info),
        **_shared_attributes(source, info, images, _labels_digest(labels), seg_type, f": {names}"))
    if info.derivation:
        seg.DerivationDescription = info.derivation[:1024]
    return seg


def build_probability_seg(probability: np.ndarray, source: DicomSource, name: str, info: SegInfo,
                          images: list | None = None) -> Any:
    """A fractional SEG (PROBABILITY, 8 bits) of one map in [0, 1] (K, J, I) on the source grid:
    the evidence a viewer can show next to the labels SEG, e.g. SDSeg's foreground probability."""
    hd = import_highdicom()
    images = images if images is not None else source_datasets(source)
    _check_slices(probability, images, "probability map")
    values = np.clip(np.nan_to_num(np.asarray(probability, np.float32)), 0.0, 1.0)
    seg = hd.seg.Segmentation(
        source_images=images, pixel_array=np.ascontiguousarray(values),
        segmentation_type=hd.seg.SegmentationTypeValues.FRACTIONAL,
        fractional_type=hd.seg.SegmentationFractionalTypeValues.PROBABILITY, max_fractional_value=FRACTION_STEPS,
        segment_descriptions=_descriptions(hd, [{"label": 1, "name": name}], info),
        **_shared_attributes(source, info, images, _labels_digest(values), "fractional", f" probability: {name}"))
    if info.derivation:
        seg.DerivationDescription = info.derivation[:1024]
    return seg


def _labels_digest(labels: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(labels).tobytes() + str(labels.shape).encode()).hexdigest()


def read_seg_labels(path: str | Path, source: DicomSource | list[str] | None = None) -> tuple[np.ndarray, list[dict]]:
    """(labels (K, J, I) with segment numbers as values, [{label, name}]) of a SEG, on the grid of
    its source images: `source` gives their SOP Instance UIDs in slice order (a DicomSource, or
    the UID list); without it, the order in which the SEG references them."""
    hd = import_highdicom()
    seg = hd.seg.segread(str(path))
    if isinstance(source, DicomSource):
        uids = [str(d.SOPInstanceUID) for d in source_datasets(source)]
    elif source is not None:
        uids = list(source)
    else:
        uids = [str(item.ReferencedSOPInstanceUID) for series in seg.ReferencedSeriesSequence
                for item in series.ReferencedInstanceSequence]
    labels = seg.get_pixels_by_source_instance(uids, combine_segments=True, dtype=np.uint16)
    segments = [{"label": int(d.SegmentNumber), "name": str(d.SegmentLabel)} for d in seg.SegmentSequence]
    return labels, segments


def stage_seg(labels: np.ndarray, source: DicomSource, segments: list[dict], info: SegInfo, path: str | Path,
              seg_type: str = "binary") -> StagedFile:
    """Write and verify the SEG in a temporary file beside `path`; commit() renames it. The
    labels must be numbered 1 … n (consecutive_labels) and non-empty (a SEG holds segments)."""
    if not segments or not labels.any():
        raise InvalidRequest("An empty result has no segment to put in a DICOM SEG.")
    images = source_datasets(source)
    order = [str(ds.SOPInstanceUID) for ds in images]
    seg = build_seg(labels, source, segments, info, seg_type, images)

    def write(temp: str) -> None:
        seg.save_as(temp, enforce_file_format=True)

    def verify(temp: str) -> None:
        written, _ = read_seg_labels(temp, order)
        if written.shape != labels.shape or not np.array_equal(written, labels):
            raise WriteFailed("The written DICOM SEG differs from the computed labelmap.")

    return stage_file(path, write, verify, suffix=".dcm")


def stage_probability_seg(probability: np.ndarray, source: DicomSource, name: str, info: SegInfo,
                          path: str | Path) -> StagedFile:
    """Write and verify a probability SEG beside `path` (read back within half a step of 1/255)."""
    images = source_datasets(source)
    order = [str(ds.SOPInstanceUID) for ds in images]
    seg = build_probability_seg(probability, source, name, info, images)
    expected = np.clip(np.nan_to_num(np.asarray(probability, np.float32)), 0.0, 1.0)

    def write(temp: str) -> None:
        seg.save_as(temp, enforce_file_format=True)

    def verify(temp: str) -> None:
        written = read_probability(temp, order)
        if written.shape != expected.shape or float(np.abs(written - expected).max(initial=0.0)) > 0.5 / FRACTION_STEPS + 1e-6:
            raise WriteFailed("The written probability SEG differs from the computed map.")

    return stage_file(path, write, verify, suffix=".dcm")


def read_probability(path: str | Path, order: list[str]) -> np.ndarray:
    """The probability (K, J, I) in [0, 1] of a one-segment fractional SEG, frames in `order`."""
    hd = import_highdicom()
    seg = hd.seg.segread(str(path))
    values = seg.get_pixels_by_source_instance(order, segment_numbers=[1], combine_segments=False,
                                               rescale_fractional=True, dtype=np.float32)
    return values[..., 0]


def seg_summary(path: str | Path) -> dict[str, Any]:
    """The identity of a written SEG (for the batch summary and STOW): its UIDs and segments."""
    import pydicom

    ds = pydicom.dcmread(str(path), stop_before_pixels=True)
    return {"sop_instance_uid": str(ds.SOPInstanceUID), "series_instance_uid": str(ds.SeriesInstanceUID),
            "study_instance_uid": str(ds.StudyInstanceUID),
            "segments": [str(s.SegmentLabel) for s in ds.get("SegmentSequence", [])]}


def derivation_text(facts: dict[str, Any]) -> str:
    """A compact, readable line of the provenance facts for DerivationDescription (ST, 1024)."""
    return "; ".join(f"{k}={json.dumps(v, separators=(',', ':'), default=str) if not isinstance(v, str) else v}"
                     for k, v in facts.items() if v not in (None, "", {}, []))[:1024]


def seg_measures(path: str | Path) -> tuple[dict[int, int], float, int, int]:
    """(voxels per segment number, voxel volume in mm³, 3, voxel count) of a SEG, for a summary:
    the volume is the pixel area times the distance between planes along their normal, which
    is right for a sheared (tilted) grid too."""
    import pydicom

    labels, _ = read_seg_labels(path)
    ds = pydicom.dcmread(str(path), stop_before_pixels=True)
    shared = ds.SharedFunctionalGroupsSequence[0]
    rows, columns = (float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing)
    orientation = np.array([float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient])
    normal = np.cross(orientation[:3], orientation[3:])
    along = sorted({round(float(np.dot([float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient], normal)), 4)
                    for f in ds.PerFrameFunctionalGroupsSequence})
    step = float(np.median(np.diff(along))) if len(along) > 1 else float(
        shared.PixelMeasuresSequence[0].get("SliceThickness") or 1.0)
    values, counts = np.unique(labels, return_counts=True)
    return ({int(v): int(c) for v, c in zip(values, counts) if v != 0}, rows * columns * step, 3, int(counts.sum()))
