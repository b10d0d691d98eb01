"""The result bundle: the labelmap plus the evidence a method computed on the way, as files
beside it (`<stem>.evidence.nrrd`, `<stem>.scores.json` …) on exactly the input's grid.

Numpy and SimpleITK only (no torch): `reselect` and the Slicer process read bundles too.
What each map means: docs/evidence.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from ..contract.errors import InvalidRequest
from .images import check_output_path, labelmap_image, map_image, stage_image
from .output_files import StagedFile, check_output_target, stage_file

SCORES_FORMAT = "diffusionseg-scores"
# Volume outputs in the order they are written; "scores" is JSON, the labelmap is the job's output.
MAP_OUTPUTS = ("evidence", "uncertainty", "anomaly", "pseudo_healthy")
OUTPUT_NAMES = ("labelmap", "proposals", "scores", *MAP_OUTPUTS)


def bundle_stem(labelmap_path: str | Path) -> Path:
    """`/x/liver.nii.gz` → `/x/liver`: the prefix every bundle file shares."""
    path = Path(labelmap_path)
    if path.name.lower().endswith(".nii.gz"):
        return path.with_name(path.name[:-len(".nii.gz")])
    return path.with_suffix("")


def bundle_path(labelmap_path: str | Path, name: str) -> Path:
    """Where output `name` of the bundle of `labelmap_path` lives (always NRRD for volumes: it
    keeps float pixels and the full geometry in one file)."""
    if name not in OUTPUT_NAMES or name == "labelmap":
        raise ValueError(f"unknown bundle output {name!r}")
    stem = bundle_stem(labelmap_path)
    return stem.with_name(f"{stem.name}.{name}.json" if name == "scores" else f"{stem.name}.{name}.nrrd")


def check_bundle_targets(labelmap_path: str | Path, *, inputs: tuple = (), overwrite: bool = False) -> None:
    """Refuse, before any model work, bundle files that would replace an input or something the
    user made without `overwrite` (the same rule as for the labelmap)."""
    for name in OUTPUT_NAMES[1:]:
        check_output_target(bundle_path(labelmap_path, name), inputs=inputs, overwrite=overwrite,
                            what=f"{name.replace('_', '-')} file")


def stage_json(data: Any, path: str | Path) -> StagedFile:
    """The scores JSON written and read back like the images (temporary file, then rename)."""
    text = json.dumps(data, indent=1, allow_nan=False)

    def write(temp: str) -> None:
        Path(temp).write_text(text, encoding="utf-8")

    def verify(temp: str) -> None:
        json.loads(Path(temp).read_text(encoding="utf-8"))

    return stage_file(path, write, verify, suffix=".json")


def stage_bundle(labelmap_path: str | Path, reference: sitk.Image, proposals: np.ndarray | None,
                 maps: dict[str, np.ndarray], scores: dict | None, *, overwrite: bool = True) -> dict[str, StagedFile]:
    """Write and verify every present part of the bundle beside `labelmap_path`; the caller
    commits them (name → staged file) with the labelmap, or discards them. Maps are (K, J, I)
    float or (K, J, I, 3) colour arrays on the input grid."""
    check_output_path(labelmap_path, reference.GetDimension(), overwrite=overwrite)
    check_bundle_targets(labelmap_path, overwrite=overwrite)
    staged: dict[str, StagedFile] = {}
    try:
        if proposals is not None:
            staged["proposals"] = stage_image(labelmap_image(proposals, reference),
                                              bundle_path(labelmap_path, "proposals"), values=proposals)
        if scores is not None:
            staged["scores"] = stage_json(scores, bundle_path(labelmap_path, "scores"))
        for name in MAP_OUTPUTS:
            if maps.get(name) is not None:
                staged[name] = stage_image(map_image(maps[name], reference), bundle_path(labelmap_path, name),
                                           compress=compresses_well(maps[name]))
    except BaseException:
        for file in staged.values():
            file.discard()
        raise
    return staged


def compresses_well(values: np.ndarray) -> bool:
    """Whether gzip pays for a float map: only when runs of equal neighbours are common (ADZUS's
    vote margin is constant over each proposal: 300 MiB → 2 MiB in 1 s). A continuous map
    (probability, attention, residual) keeps ~80 % of its size for 10× the write time."""
    values = np.asarray(values)
    if values.shape[-1] < 2:
        return True
    step = max(1, values.shape[0] // 16)  # a sample of slices is enough to tell
    sample = values[::step]
    return bool(np.mean(sample[..., 1:] == sample[..., :-1]) > 0.5)


def read_scores(path: str | Path) -> dict:
    """The scores JSON of a bundle (parse it with `selection.scores_from_json`)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        stem = path.name.removesuffix(".scores.json")
        evidence, proposals = path.with_name(stem + ".evidence.nrrd"), path.with_name(stem + ".proposals.nrrd")
        if evidence.is_file() and not proposals.is_file():  # --evidence by a method without proposals (SDSeg)
            raise InvalidRequest(f"{path.name} is missing but {evidence.name} is there: the result comes from a method "
                                 f"that has no proposals to choose from (SDSeg; its evidence is the probability map). "
                                 f"Re-selection applies to ADZUS and DiffuGTS results.",
                                 hint="To change an SDSeg result, segment again with --param threshold=VALUE (the "
                                      "probability a pixel needs), or edit it in Slicer's Segment Editor.") from None
        raise InvalidRequest(f"Selection scores not found: {path}",
                             hint="Segment with --evidence (request \"evidence\": true) to write them.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidRequest(f"{path} is not a valid scores file: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != SCORES_FORMAT:
        raise InvalidRequest(f"{path} is not a DiffusionSeg scores file.")
    return data
