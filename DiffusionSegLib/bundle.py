"""The result bundle: the labelmap plus the evidence a method computed on the way, as files
beside it (`<stem>.evidence.nrrd`, `<stem>.scores.json` …) on exactly the input's grid.

Numpy and SimpleITK only (no torch): `reselect` and the Slicer process read bundles too.
What each map means: docs/evidence.md.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from .errors import InvalidRequest
from .imageio import check_output_path, labelmap_image, map_image, write_image

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


def check_bundle_paths(labelmap_path: str | Path, names: tuple[str, ...] = OUTPUT_NAMES[1:],
                       overwrite: bool = True) -> None:
    """Refuse, before any model work, to replace bundle files that exist unless allowed."""
    if overwrite:
        return
    taken = [str(bundle_path(labelmap_path, n)) for n in names if bundle_path(labelmap_path, n).exists()]
    if taken:
        raise InvalidRequest(f"Evidence files already exist: {', '.join(taken)}.",
                             hint="Choose another output name or pass --overwrite.")


def write_json(data: Any, path: str | Path) -> Path:
    """Atomic JSON write (temporary file in the same folder, then rename), like the images."""
    path = Path(path)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(data, stream, indent=1, allow_nan=False)
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.remove(temp)
    return path


def write_bundle(labelmap_path: str | Path, reference: sitk.Image, proposals: np.ndarray | None,
                 maps: dict[str, np.ndarray], scores: dict | None) -> dict[str, str]:
    """Write every present part of the bundle beside `labelmap_path`; returns name → path (the
    `outputs` of the result event, without the labelmap). Maps are (K, J, I) float or
    (K, J, I, 3) colour arrays on the input grid."""
    check_output_path(labelmap_path, reference.GetDimension())
    written: dict[str, str] = {}
    if proposals is not None:
        path = bundle_path(labelmap_path, "proposals")
        written["proposals"] = str(write_image(labelmap_image(proposals, reference), path))
    if scores is not None:
        written["scores"] = str(write_json(scores, bundle_path(labelmap_path, "scores")))
    for name in MAP_OUTPUTS:
        if maps.get(name) is not None:
            written[name] = str(write_image(map_image(maps[name], reference), bundle_path(labelmap_path, name),
                                            compress=compresses_well(maps[name])))
    return written


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
        raise InvalidRequest(f"Selection scores not found: {path}",
                             hint="Segment with --evidence (request \"evidence\": true) to write them.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidRequest(f"{path} is not a valid scores file: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != SCORES_FORMAT:
        raise InvalidRequest(f"{path} is not a DiffusionSeg scores file.")
    return data
