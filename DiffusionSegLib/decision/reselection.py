"""Re-selecting a result's proposals without the model: numpy and scipy only.

A result bundle keeps the proposals (ids consistent across slices) and the scores file (each
proposal's evidence per slice, the selection parameters, the slice axis and the pipeline's
post-processing switches). Re-selection runs the decision of `selection.select_labels` — the
very code the method's job ran — then the pipeline's post-processing (`finish_labels`), then
the user's include/exclude overrides, so the defaults give the written labelmap back bit for
bit. All of it runs on the proposals' pieces (`proposal_graph.py`, built once per bundle and
exact to the voxel), so a re-selection of a 512×512×200 volume takes a fraction of a second.
`reselect` (command line) and the Slicer panel (no torch there) both call `reselect_labels`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping

import numpy as np

from ..io.bundle import SCORES_FORMAT
from .proposal_graph import ProposalGraph
from .selection import (
    SelectionParams,
    SliceScores,
    decide_pieces,
    scores_from_json,
    scores_to_json,
    volume_reference,
)


@dataclass
class SelectionBundle:
    """What a re-selection needs: proposals (K, J, I) with volume-wide ids, their scores per
    slice, the job's selection parameters, slice axis and post-processing switches."""

    proposals: np.ndarray
    tables: dict[int, SliceScores]
    params: SelectionParams
    axis: int
    pipeline: dict[str, Any] = field(default_factory=dict)
    _graph: ProposalGraph | None = field(default=None, repr=False)

    @classmethod
    def from_document(cls, proposals: np.ndarray, document: Mapping[str, Any]) -> "SelectionBundle":
        """From a proposals array and the parsed scores JSON; ValueError names what is missing."""
        if document.get("format") != SCORES_FORMAT:
            raise ValueError("not a DiffusionSeg scores document")
        tables, params, axis = scores_from_json(document)
        if params is None:
            raise ValueError("the scores document has no selection parameters")
        return cls(np.asarray(proposals), tables, params, axis, dict(document.get("pipeline") or {}))

    def graph(self) -> ProposalGraph:
        """The proposals' pieces and their contacts, built on first use (about 3 s for
        512×512×200) and kept: every later re-selection costs the pieces, not the voxels."""
        if self._graph is None:
            self._graph = ProposalGraph.build(self.proposals, self.axis)
        return self._graph

    def proposal_ids(self) -> set[int]:
        """Ids present in the proposals volume: those of the graph's pieces."""
        ids = self.graph().id_of
        return {int(v) for v in np.unique(ids[ids > 0])}


def scores_document(tables: Mapping[int, SliceScores], params: SelectionParams, axis: int, method: str,
                    fill_holes: bool, largest_component: bool) -> dict:
    """The bundle's scores JSON: `selection.scores_to_json` plus what re-selection must redo."""
    document = scores_to_json(tables, params, axis, method)
    document["format"] = SCORES_FORMAT
    document["pipeline"] = {"fill_holes": bool(fill_holes), "largest_component": bool(largest_component)}
    return document


def volume_proposals(local: np.ndarray, matched: np.ndarray, axis: int, tables: Mapping[int, SliceScores]
                     ) -> tuple[np.ndarray, dict[int, SliceScores]]:
    """The tables renamed from per-slice proposal ids (`local`) to the ids matched across
    slices (`matched`, `postprocess.match_labels_across_slices` of `local`).

    The matching is a bijection within each slice, so `select_labels` picks the same voxels
    under either naming. A proposal that has a score but no voxel on the input grid (lost when
    a tiny segment is resized back) keeps its table entry under a fresh id, because rules that
    compare proposals within a slice (the border rule's "holds most border") still count it."""
    matched = matched.astype(np.uint16 if matched.max(initial=0) < 2**16 else np.uint32, copy=False)
    next_id = int(matched.max(initial=0)) + 1
    renamed: dict[int, SliceScores] = {}
    for index, table in tables.items():
        before = np.take(local, index, axis=axis).ravel()
        after = np.take(matched, index, axis=axis).ravel()
        inside = before != 0
        pairs = np.unique(before[inside].astype(np.int64) << 32 | after[inside].astype(np.int64))
        mapping = {int(p >> 32): int(p & 0xFFFFFFFF) for p in pairs}
        proposals = {}
        for pid, values in table.proposals.items():
            if pid not in mapping:
                mapping[pid] = next_id
                next_id += 1
            proposals[mapping[pid]] = dict(values)
        renamed[index] = replace(table, proposals=proposals)
    return matched, renamed


def parse_ids(text: str | Iterable[int] | None) -> set[int]:
    """'3,7, 12' (or an iterable) → {3, 7, 12}; ValueError on anything else."""
    if text is None:
        return set()
    if isinstance(text, str):
        parts = [p for p in text.replace(" ", "").split(",") if p]
        try:
            values = {int(p) for p in parts}
        except ValueError:
            raise ValueError(f"proposal ids must be whole numbers separated by commas; got {text!r}") from None
    else:
        values = {int(v) for v in text}
    if any(v <= 0 for v in values):
        raise ValueError("proposal ids are positive (0 is background)")
    return values


def reselect_labels(bundle: SelectionBundle, vote_threshold: float | None = None,
                    seed_threshold: float | None = None, include: Iterable[int] = (),
                    exclude: Iterable[int] = ()) -> np.ndarray:
    """The labelmap for new thresholds and overrides (None/empty: the job's own choice).

    include/exclude name proposal ids of `bundle.proposals`; they win over the rule and the
    post-processing in every slice where the proposal carries that id (exclude over include)."""
    if bundle.params.mode == "all":
        raise ValueError("the result kept every proposal (foreground 'all'); there is nothing to re-select")
    for name, value in (("vote threshold", vote_threshold), ("seed threshold", seed_threshold)):
        # NaN passes every comparison the rule makes (nothing would be selected, silently)
        if value is not None and (isinstance(value, bool) or not math.isfinite(float(value)) or float(value) < 0):
            raise ValueError(f"the {name} must be a finite number of 0 or more; got {value!r}")
    include, exclude = set(include), set(exclude)
    unknown = sorted((include | exclude) - bundle.proposal_ids())
    if unknown:
        raise ValueError(f"proposal id(s) {', '.join(map(str, unknown))} do not occur in the proposals volume")
    params = bundle.params
    if vote_threshold is not None:
        params = replace(params, vote_threshold=float(vote_threshold))
    if seed_threshold is not None:
        params = replace(params, seed_threshold=float(seed_threshold))
    # select_labels and finish_labels, on the pieces: the same voxels (proposal_graph.py)
    graph = bundle.graph()
    kept = decide_pieces(graph, bundle.tables, params)
    if bundle.pipeline.get("fill_holes", False):
        kept = graph.fill_holes(kept)
    if bundle.pipeline.get("largest_component", False):
        kept = graph.largest_component(kept)
    # The user's word is final: after hole filling (which would refill an excluded island) and
    # the largest-component step (which would drop an included far-away region).
    if include:
        kept |= graph.with_ids(include)
    if exclude:
        kept &= ~graph.with_ids(exclude)
    return graph.paint(kept)


def contrasts(bundle: SelectionBundle, params: SelectionParams | None = None) -> dict[int, dict[int, float]]:
    """Per slice, per proposal id: score / the volume's reference (what the thresholds compare)."""
    params = params or bundle.params
    reference = volume_reference(bundle.tables, params)
    ok = math.isfinite(reference) and reference > 0
    return {index: {pid: (table.score(pid) / reference if ok else math.nan) for pid in table.proposals}
            for index, table in bundle.tables.items()}


def vote_margin(bundle: SelectionBundle, params: SelectionParams | None = None) -> np.ndarray:
    """Per voxel: its proposal's contrast minus the vote threshold (float32). > 0: a candidate;
    near 0: a decision a small threshold change flips. Voxels without a scored proposal have no
    evidence (contrast 0), so they read -vote_threshold."""
    params = params or bundle.params
    floor = np.float32(-params.vote_threshold)
    out = np.full(bundle.proposals.shape, floor, np.float32)
    for index, values in contrasts(bundle, params).items():
        if not values:
            continue
        plane_ids = np.take(bundle.proposals, index, axis=bundle.axis)
        lookup = np.full(int(max(max(values), plane_ids.max(initial=0))) + 1, floor, np.float32)
        for pid, contrast in values.items():
            if math.isfinite(contrast):
                lookup[pid] = contrast - params.vote_threshold
        selector: list[Any] = [slice(None)] * out.ndim
        selector[bundle.axis] = index
        out[tuple(selector)] = lookup[plane_ids]
    return out
