"""Which proposals are foreground: the zero-shot decisions, in numpy only.

A 2D zero-shot method applied to a volume must be able to say "not here". This module holds
every rule that turns a method's proposals and their evidence into a labelmap, so that the
method (through the volume pipeline), `reselect` (from a saved result bundle) and the Slicer
process (no torch there) all reach the same labels from the same data. It imports numpy and
scipy only.

Data model (everything a method can save next to its labelmap)
-----------------------------------------------------------------
proposals
    An integer array, 2D (one image) or 3D (a volume), on any grid: per slice, ids 1..K of that
    slice's proposals (ADZUS: DiffSeg segments; DiffuGTS: connected components of the refined
    mask before any gate); 0 where there is no proposal (padding, skipped slices, outside the
    ROI). Ids are local to a slice.
tables
    ``{slice index: SliceScores}``, slice index along ``axis`` of `proposals` (0 for a 2D
    image). A slice without a table contributes nothing. `SliceScores` holds, per proposal id,
    ``{"score": float, "area": float, "border": float}`` and per slice ``reference`` (ADZUS:
    the slice's background level, `background_level`) and ``gate`` (DiffuGTS: the image-level
    abnormality evidence).
params
    `SelectionParams`: the foreground mode and the thresholds below. ``SelectionParams.from_dict``
    reads a method's parameter dictionary, so a saved request's ``params`` is enough.

Entry points
------------
``select_labels(proposals, tables, params, axis=0) -> uint16 array`` (same shape as
`proposals`): the labels before the pipeline's 3D post-processing (hole filling, largest
component). Mode "all" returns the proposals themselves, with ids still local to each slice.
The rules decide per (slice, proposal); they run on the proposals' pieces
(`proposal_graph.ProposalGraph`), which gives the voxels of the rule below exactly, at the
cost of a few thousand pieces instead of the volume's voxels (`reselect` keeps the graph).
``scores_to_json`` / ``scores_from_json``: the scores file of a result bundle; floats survive
the JSON round trip exactly, so a re-selection with the same parameters gives the same labels.
``result_warning(labels, tissue, axis)``: the text of the `warning` event for an empty result,
or one that covers at least 95 % of the tissue on every segmented slice.

The rules
---------
"prompt" (ADZUS): a proposal's score is its mean absolute prompt attention (each pixel's share
of cross-attention on the prompt's tokens). It is compared with ONE reference for the whole
volume, never with a per-slice rescale: the median over slices of each slice's background
level (`background_level`: the least-attended proposals covering 5 % of the slice), so
contrast = score / reference. Comparing with the background rather than with the slice's
median attention finds a target that covers most of an image or ROI too. A proposal is a
candidate when contrast >= ``vote_threshold`` (a slice may have none). The volume-level step
then keeps the 3D-connected (26-neighbourhood) components of candidate voxels that contain a
seed, a proposal with contrast >= ``seed_threshold``: runs of strong evidence survive, weaker
candidates survive only when connected to one, and an isolated slice whose best proposal is
merely above the vote threshold is dropped. A single image gets the same rule in 2D.
"anomaly" (DiffuGTS): a proposal's score is already absolute (mean anomaly difference, in units
of the normal prompt's mean attention inside the body, or a trained head's probability), so the
reference is 1. The floor (``vote_threshold``) makes candidates and (``seed_threshold``) seeds
as above; a slice whose ``gate`` is below ``gate_threshold`` seeds nothing, but its candidates
are kept when connected to a seed on a slice that passed (a tumour's small first and last slices).
"border": per slice, all proposals except those holding >= ``border_threshold`` of the valid
region's border and the one holding most (no prompt involved; a slice may be empty).
"all": every proposal is its own label.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
from scipy import ndimage

from .proposal_graph import ProposalGraph

SCORES_VERSION = 1
MODES = ("prompt", "anomaly", "border", "all")
WHOLE_TISSUE_FRACTION = 0.95
TINY = 1e-12
# The background of a slice, for the prompt vote: its least-attended proposals that together cover
# this share of the valid area. Small enough that a target covering 90 % of an image or ROI
# leaves background to compare with; large enough that no speck of a proposal sets the level.
BACKGROUND_SHARE = 0.05


@dataclass
class SliceScores:
    """The evidence of one slice: per proposal id its score, area (px) and border share."""

    proposals: dict[int, dict[str, float]] = field(default_factory=dict)
    reference: float = math.nan
    gate: float | None = None

    def score(self, pid: int) -> float:
        return float(self.proposals[pid].get("score", math.nan))

    def to_dict(self) -> dict:
        data: dict[str, Any] = {"proposals": {str(k): {name: _finite_or_none(value) for name, value in v.items()}
                                              for k, v in sorted(self.proposals.items())},
                                "reference": _finite_or_none(self.reference)}
        if self.gate is not None:
            data["gate"] = float(self.gate)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SliceScores":
        proposals = {int(k): {name: (math.nan if value is None else float(value)) for name, value in v.items()}
                     for k, v in (data.get("proposals") or {}).items()}
        reference = data.get("reference")
        gate = data.get("gate")
        return cls(proposals, math.nan if reference is None else float(reference),
                   None if gate is None else float(gate))


@dataclass(frozen=True)
class SelectionParams:
    """Thresholds of the decision. No defaults here: a method's spec defines them once
    (`from_dict` reads its resolved parameters) and a scores file records the ones used."""

    mode: str
    vote_threshold: float = math.nan
    seed_threshold: float = math.nan
    border_threshold: float = math.nan
    gate_threshold: float | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"selection mode must be one of {', '.join(MODES)}; got {self.mode!r}")

    @classmethod
    def from_dict(cls, params: Mapping[str, Any], mode: str | None = None,
                  has_prompt: bool = True) -> "SelectionParams":
        """From a method's resolved parameters (ADZUS or DiffuGTS names, every one present: the
        defaults live in the method's spec, not here). ADZUS's foreground 'auto' is 'prompt' with
        a prompt, else 'border'. (DiffuGTS with trained heads decides at the adapter's 0.5: use
        the `selection` a scores file records, or `DiffuGTS.selection()`.)"""
        if mode is None:
            mode = str(_required(params, "foreground"))
        if mode == "auto":
            mode = "prompt" if has_prompt else "border"
        if mode == "anomaly":
            gate = float(_required(params, "gate_threshold"))
            return cls(mode="anomaly", vote_threshold=float(_required(params, "anomaly_floor")),
                       seed_threshold=float(_required(params, "anomaly_seed")),
                       gate_threshold=gate if gate > 0 else None)
        if mode == "prompt":
            return cls(mode=mode, vote_threshold=float(_required(params, "vote_threshold")),
                       seed_threshold=float(_required(params, "seed_threshold")),
                       border_threshold=float(params.get("border_threshold", math.nan)))
        if mode == "border":
            return cls(mode=mode, border_threshold=float(_required(params, "border_threshold")))
        return cls(mode=mode)


def _required(params: Mapping[str, Any], name: str) -> Any:
    if name not in params:
        raise ValueError(f"the selection needs the method's resolved parameter {name!r}")
    return params[name]


# -- per-slice evidence (numpy; the methods use these on their own maps) ------------------------

def proposal_table(proposals: np.ndarray, evidence: np.ndarray | None, valid: np.ndarray,
                   statistic: str = "mean") -> dict[int, dict[str, float]]:
    """Per proposal id: the `statistic` ("mean" or "median") of `evidence` over its valid pixels,
    its valid area and border share. The median ignores a fringe: attention that a blurry map
    spills over a proposal's edge from a strong neighbour moves its mean, not its median."""
    proposals = np.asarray(proposals)
    valid = np.asarray(valid, dtype=bool)
    ids = proposals[valid].astype(np.int64)
    count = int(ids.max(initial=0)) + 1
    areas = np.bincount(ids, minlength=count).astype(np.float64)
    sums = None
    if evidence is not None:
        values = np.asarray(evidence, dtype=np.float64)[valid]
        if statistic == "median":
            sums = _medians(ids, values, count) * areas
        elif statistic == "mean":
            sums = np.bincount(ids, weights=values, minlength=count)
        else:
            raise ValueError(f"statistic must be 'mean' or 'median'; got {statistic!r}")
    border = valid_border(valid)
    border_counts = np.bincount(proposals[border].astype(np.int64), minlength=count).astype(np.float64)
    border_total = max(float(border_counts[1:].sum()), 1.0)
    table: dict[int, dict[str, float]] = {}
    for pid in range(1, count):
        if areas[pid] == 0:
            continue
        score = float(sums[pid] / areas[pid]) if sums is not None else math.nan
        table[pid] = {"score": score, "area": float(areas[pid]), "border": float(border_counts[pid] / border_total)}
    return table


def _medians(ids: np.ndarray, values: np.ndarray, count: int) -> np.ndarray:
    """Median of `values` per id (0..count-1; NaN where an id is absent), with one sort."""
    order = np.lexsort((values, ids))
    ids, values = ids[order], values[order]
    starts = np.searchsorted(ids, np.arange(count), side="left")
    ends = np.searchsorted(ids, np.arange(count), side="right")
    out = np.full(count, np.nan)
    present = ends > starts
    low = values[np.maximum((starts + ends - 1) // 2, 0)[present]]
    high = values[np.maximum((starts + ends) // 2, 0)[present]]
    out[present] = (low + high) / 2.0
    return out


def background_level(proposals: Mapping[int, Mapping[str, float]], share: float = BACKGROUND_SHARE) -> float:
    """The evidence of a slice's background: the area-weighted mean score of its lowest-scoring
    proposals that together cover `share` of their total area (the last one counted in part).

    The prompt vote divides by this, not by the median attention: a target that covers most of an
    image or ROI (a centred cell, a liver in a liver ROI) is then still compared with what lies
    around it, and a slice without target has contrast about 1 everywhere. NaN without scores."""
    rows = sorted((float(v.get("score", math.nan)), float(v.get("area", 0.0))) for v in proposals.values()
                  if math.isfinite(float(v.get("score", math.nan))) and float(v.get("area", 0.0)) > 0)
    total = sum(area for _, area in rows)
    if not rows or total <= 0:
        return math.nan
    wanted, taken, weighted = share * total, 0.0, 0.0
    for score, area in rows:
        part = min(area, wanted - taken)
        taken += part
        weighted += part * score
        if taken >= wanted:
            break
    return weighted / taken


def valid_border(valid: np.ndarray) -> np.ndarray:
    """Valid pixels with an invalid pixel or the image edge among their 8 neighbours."""
    valid = np.asarray(valid, dtype=bool)
    padded = np.pad(valid, 1, constant_values=False)
    inside = ndimage.binary_erosion(padded, structure=np.ones((3, 3), bool), border_value=0)[1:-1, 1:-1]
    return valid & ~inside


# -- the decision ---------------------------------------------------------------------------------

def volume_reference(tables: Mapping[int, SliceScores], params: SelectionParams) -> float:
    """The one reference the scores are divided by (1 for absolute anomaly scores)."""
    if params.mode != "prompt":
        return 1.0
    refs = [t.reference for t in tables.values() if math.isfinite(t.reference) and t.reference >= 0]
    # a median of exactly 0 (attention only on the target) must not divide by zero
    return max(float(np.median(refs)), TINY) if refs else math.nan


def slice_decision(table: SliceScores, params: SelectionParams, reference: float) -> tuple[set[int], set[int]]:
    """(candidates, seeds) of one slice: proposal ids over the vote and the seed threshold. A
    DiffuGTS slice whose gate is below `gate_threshold` may hold candidates but no seed: the
    first and last slices of a tumour, too small to pass the gate, are kept when connected to it."""
    if not (math.isfinite(reference) and reference > 0):
        return set(), set()
    may_seed = not (params.mode == "anomaly" and params.gate_threshold is not None
                    and not (table.gate is not None and table.gate >= params.gate_threshold))
    candidates, seeds = set(), set()
    for pid in table.proposals:
        contrast = table.score(pid) / reference
        if contrast >= params.vote_threshold:  # NaN compares False: no evidence, no foreground
            candidates.add(pid)
            if may_seed and contrast >= params.seed_threshold:
                seeds.add(pid)
    return candidates, seeds


def border_decision(table: SliceScores, threshold: float) -> set[int]:
    """Foreground ids by the border rule (the proposal holding most border is background)."""
    if not table.proposals:
        return set()
    shares = {pid: float(v.get("border", 0.0)) for pid, v in table.proposals.items()}
    most = max(shares, key=lambda pid: (shares[pid], -pid))
    return {pid for pid, share in shares.items() if pid != most and share < threshold}


def select_labels(proposals: np.ndarray, tables: Mapping[int, SliceScores], params: SelectionParams,
                  axis: int = 0) -> np.ndarray:
    """The labelmap the proposals and their scores give under `params` (see the module doc).

    The decision runs on the proposals' pieces (`proposal_graph.py`: exactly the voxel rule, at
    the cost of the pieces); `reselect` keeps the graph and calls `decide_pieces` itself."""
    proposals = np.asarray(proposals)
    if params.mode == "all":
        volume, plane_axis = (proposals[None], 0) if proposals.ndim == 2 else (proposals, axis)
        out = np.zeros(volume.shape, np.uint16)
        for index in tables:
            _plane(out, plane_axis, index)[...] = _plane(volume, plane_axis, index)
        return out[0] if proposals.ndim == 2 else out
    graph = ProposalGraph.build(proposals, axis)
    return graph.paint(decide_pieces(graph, tables, params))


def decide_pieces(graph: ProposalGraph, tables: Mapping[int, SliceScores], params: SelectionParams) -> np.ndarray:
    """Kept or not, per piece of `graph`: candidates per slice, then (prompt/anomaly) the volume
    step — candidates 26-connected to a seed."""
    chosen: dict[int, set[int]] = {}
    strong: dict[int, set[int]] = {}
    reference = volume_reference(tables, params)
    for index, table in tables.items():
        if params.mode == "border":
            chosen[index] = border_decision(table, params.border_threshold)
        else:
            chosen[index], strong[index] = slice_decision(table, params, reference)
    candidates = graph.pieces_of(chosen)
    if params.mode == "border":
        return candidates
    return graph.connected_to(candidates, graph.pieces_of(strong))


def _plane(array: np.ndarray, axis: int, index: int) -> np.ndarray:
    """A writable view of slice `index` along `axis`."""
    selector: list[Any] = [slice(None)] * array.ndim
    selector[axis] = int(index)
    return array[tuple(selector)]


# -- result bundle and warnings --------------------------------------------------------------------

def scores_to_json(tables: Mapping[int, SliceScores], params: SelectionParams | None = None,
                   axis: int = 0, method: str = "") -> dict:
    """The scores file of a result bundle (JSON-ready; floats round-trip exactly)."""
    data: dict[str, Any] = {"version": SCORES_VERSION, "method": method, "axis": int(axis),
                            "slices": {str(k): t.to_dict() for k, t in sorted(tables.items())}}
    if params is not None:
        data["selection"] = {"mode": params.mode, "vote_threshold": _finite_or_none(params.vote_threshold),
                             "seed_threshold": _finite_or_none(params.seed_threshold),
                             "border_threshold": _finite_or_none(params.border_threshold),
                             "gate_threshold": params.gate_threshold}
    return data


def scores_from_json(data: Mapping[str, Any]) -> tuple[dict[int, SliceScores], SelectionParams | None, int]:
    """(tables, selection parameters or None, axis) from `scores_to_json`'s output."""
    version = int(data.get("version", 0))
    if version != SCORES_VERSION:
        raise ValueError(f"scores file version {version} is not supported (expected {SCORES_VERSION})")
    tables = {int(k): SliceScores.from_dict(v) for k, v in (data.get("slices") or {}).items()}
    params = None
    if data.get("selection"):
        recorded = dict(data["selection"])
        for name in ("vote_threshold", "seed_threshold", "border_threshold"):   # a mode's unused ones
            recorded[name] = math.nan if recorded.get(name) is None else float(recorded[name])
        params = SelectionParams(**recorded)
    return tables, params, int(data.get("axis", 0))


# What to try when a result is empty or covers all the tissue, by the rule that chose it (None:
# a method without proposals to choose from, i.e. SDSeg's trained checkpoint)
EMPTY_ADVICE = {
    "prompt": "the target is absent, the model does not know the prompt (try another wording), "
              "vote_threshold or seed_threshold is too strict, or the model has random weights",
    "anomaly": "the image holds no tumour, the model does not know the prompt's anomaly, gate_threshold, "
               "anomaly_floor or anomaly_seed is too strict, or the model has random weights",
    "border": "every segment touches the image border (raise border_threshold), or the model has random weights",
    "all": "the model found no segment at all, which usually means it has random weights",
    None: "the target is absent, the image is unlike the checkpoint's training images (another modality or "
          "intensity preset), the checkpoint is undertrained (see the validation Dice in its README.md), "
          "or its threshold is too strict",
}
WHOLE_ADVICE = {
    "prompt": "the prompt did not single anything out (a prompt the model does not know, vote_threshold too "
              "loose, or a model with random weights)",
    "anomaly": "the whole organ looks abnormal to the model (a prompt it does not know, anomaly_floor or "
               "gate_threshold too loose, or a model with random weights)",
    "border": "no segment touches the border (lower border_threshold), or the model has random weights",
    "all": "the model merged everything into its segments, which usually means it has random weights",
    None: "the checkpoint marks all tissue as foreground (undertrained: see the validation Dice in its "
          "README.md; images unlike its training images; or a threshold too low)",
}


def result_warning(labels: np.ndarray, tissue: np.ndarray, axis: int = 0,
                   slices: list[int] | None = None, mode: str | None = None) -> str | None:
    """Why a result is suspicious, or None: empty, or >= 95 % of the tissue on every slice.

    tissue: bool array like `labels` (the body/foreground voxels); slices: the segmented slice
    indices along `axis` (default: every slice with tissue); mode: the selection rule that chose
    the foreground (SelectionParams.mode), None for a method without one (SDSeg), which picks
    the advice."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        labels, tissue, axis = labels[None], np.asarray(tissue)[None], 0
    if slices is None:
        slices = [k for k in range(labels.shape[axis]) if _plane(tissue, axis, k).any()]
    if not (labels > 0).any():
        evidence = "no slice had evidence above the thresholds" if mode else "no pixel reached the threshold"
        return f"The result is empty: {evidence}. This usually means {EMPTY_ADVICE.get(mode, EMPTY_ADVICE[None])}."
    fractions = []
    for k in slices:
        body = _plane(tissue, axis, k)
        if body.any():
            fractions.append(float((_plane(labels, axis, k)[body] > 0).mean()))
    if fractions and min(fractions) >= WHOLE_TISSUE_FRACTION:
        return (f"The result covers at least {WHOLE_TISSUE_FRACTION:.0%} of the tissue on every slice. This "
                f"usually means {WHOLE_ADVICE.get(mode, WHOLE_ADVICE[None])}.")
    return None


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None
