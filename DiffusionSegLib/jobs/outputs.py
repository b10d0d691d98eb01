"""The files a finished job leaves: the labelmap (or DICOM SEG) and its provenance record.

Both are staged (written beside their targets, read back) before anything is renamed into place,
and the labelmap is committed last, so a labelmap on disk always comes with its record. A SEG is
written only for a non-empty result: a SEG without segments is not a valid object, so an empty
result says so instead (the record is still written: it is the evidence that nothing was found).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..contract.errors import InvalidRequest
from ..contract.request import JobRequest
from ..io.bundle import bundle_stem, stage_json
from ..io.images import SEG_SUFFIX, Volume, stage_labelmap
from ..io.output_files import StagedFile, check_output_target
from .provenance import provenance_path, seg_facts

EMPTY_SEG_WARNING = ("The result is empty, so no DICOM SEG was written (a SEG holds at least one segment); "
                     "the provenance record says what was run.")


def is_seg(output: str | Path) -> bool:
    return str(output).lower().endswith(SEG_SUFFIX)


def probability_seg_path(output: str | Path, name: str) -> Path:
    """`/x/liver.dcm` → `/x/liver.evidence.dcm`: a probability map as a SEG beside the labels SEG."""
    stem = bundle_stem(output)
    return stem.with_name(f"{stem.name}.{name}.dcm")


def check_result_targets(output: Path, request: JobRequest, probability_maps: tuple[str, ...] = ()) -> None:
    """Before any work: the record beside the output, and the probability SEGs a SEG output with
    evidence brings, must be free (or `overwrite`), like the output."""
    check_output_target(provenance_path(output), inputs=(request.input,), overwrite=request.overwrite,
                        what="provenance file")
    for name in probability_maps if is_seg(output) else ():
        check_output_target(probability_seg_path(output, name), inputs=(request.input,),
                            overwrite=request.overwrite, what=f"{name} SEG")


def check_seg_input(output: Path, input_path: str) -> None:
    """A SEG needs DICOM source images: refuse a .dcm output for a file that is plainly not DICOM
    before it is read (a DICOM folder or file is checked fully once read)."""
    from ..io.dicom_series import is_dicom_file

    path = Path(input_path).expanduser()
    if is_seg(output) and path.is_file() and not is_dicom_file(path):
        raise InvalidRequest(f"A DICOM SEG output ({output.name}) needs DICOM source images; the input {path.name} "
                             "is not a DICOM file.",
                             hint="Pass the DICOM series folder the image came from, or write .nrrd / .nii.gz.")


def stage_result(labels, segments: list[dict], volume: Volume, output: Path, request: JobRequest,
                 record: dict, probability: dict[str, np.ndarray] | None = None
                 ) -> tuple[dict[str, StagedFile], list[dict], str | None]:
    """(staged files in commit order, the segments as written, a warning or None). `probability`:
    the bundle's probability maps, written as fractional SEGs beside a SEG output."""
    staged: dict[str, StagedFile] = {}
    warning, seg = None, None
    try:
        if is_seg(output):
            from ..io.dicom_seg import SegInfo, consecutive_labels, derivation_text, stage_probability_seg, stage_seg

            labels, segments = consecutive_labels(labels, segments)
            record["segments"] = segments
            if segments:
                facts = seg_facts(record)
                info = SegInfo(method=record["method"], model=record["model"]["reference"],
                               version=record["diffusionseg"]["version"],
                               software=tuple(f"{k} {v}" for k, v in record["libraries"].items()
                                              if k in ("torch", "diffusers") and v),
                               parameters={"prompts": "; ".join(facts["prompts"]), "seed": str(facts["seed"]),
                                           "dtype": facts["dtype"], "device": facts["device"],
                                           "parameters": _compact(facts["parameters"])},
                               derivation=derivation_text(facts), identity=_identity(record))
                record["outputs"]["labelmap"] = str(output)
                seg = stage_seg(labels, volume.dicom, segments, info, output, request.seg_type)
                for name, values in (probability or {}).items():
                    path = probability_seg_path(output, name)
                    record["outputs"][f"{name}_seg"] = str(path)
                    staged[f"{name}_seg"] = stage_probability_seg(values, volume.dicom, str(segments[0]["name"]),
                                                                  info, path)
            else:
                seg, warning = None, EMPTY_SEG_WARNING
        else:
            record["outputs"]["labelmap"] = str(output)
            seg = stage_labelmap(labels, volume.reference, output, overwrite=request.overwrite)
        path = provenance_path(output)
        record["outputs"]["provenance"] = str(path)
        staged["provenance"] = stage_json(record, path)
        if seg is not None:
            staged["labelmap"] = seg
    except BaseException:
        for file in staged.values():
            file.discard()
        if seg is not None and "labelmap" not in staged:
            seg.discard()
        raise
    return staged, segments, warning


def _compact(value) -> str:
    import json

    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _identity(record: dict) -> str:
    """What the SEG's content depends on, without paths or times (makes its UIDs repeatable)."""
    request = {k: v for k, v in record["request"].items() if k not in ("input", "output", "overwrite", "device")}
    return _compact({"request": request, "weights": [f["sha256"] for f in record["model"]["files"]],
                     "input": record["input"]["sha256"]})
