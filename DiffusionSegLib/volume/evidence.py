"""Collecting a method's evidence maps onto the input grid while the volume pipeline runs.

Methods return their maps per slice batch on the model grid (`SliceSegmentation.evidence` …).
The collector maps each batch back through the letterbox and the slice plan into arrays
preallocated on the input grid, so no list of per-slice tensors grows with the volume: the
extra memory is one float32 volume per map (see docs/evidence.md for a 512²×300 CT).
"""

from __future__ import annotations

import numpy as np

from ..contract.request import PipelineOptions
from ..decision.reselection import (
    SelectionBundle,
    scores_document,
    volume_proposals,
    vote_margin,
)
from ..decision.selection import SelectionParams, SliceScores, volume_reference
from ..imaging.intensity import IntensityMapping
from ..imaging.letterbox import Letterbox
from ..imaging.slicing import SlicePlan
from ..io.bundle import stage_bundle
from ..io.images import Volume
from ..io.output_files import StagedFile
from ..methods.base import SliceSegmentation

SCALAR_MAPS = ("evidence", "uncertainty", "anomaly")


class EvidenceCollector:
    """Streams optional maps and per-slice selection tables of a job, batch by batch."""

    def __init__(self, volume: Volume, plan: SlicePlan, box: Letterbox, mapping: IntensityMapping):
        self.volume, self.plan, self.box, self.mapping = volume, plan, box, mapping
        self.maps: dict[str, np.ndarray] = {}
        self.local_proposals: np.ndarray | None = None  # ids local to each slice (as the scores name them)
        self.proposals: np.ndarray | None = None        # the same, ids matched across slices
        self.tables: dict[int, SliceScores] = {}
        self.selection: SelectionParams | None = None

    def set_proposals(self, local: np.ndarray | None, matched: np.ndarray | None,
                      tables: dict[int, SliceScores], selection: SelectionParams | None) -> None:
        """The pipeline's proposals (before and after matching ids across slices), the scores
        per slice and the selection parameters it decided the volume with."""
        self.local_proposals, self.proposals = local, matched
        self.tables, self.selection = dict(tables), selection

    def _target(self, name: str) -> np.ndarray:
        if name not in self.maps:
            if name == "pseudo_healthy":
                # Outside the ROI and on skipped slices nothing was repainted: the input itself.
                self.maps[name] = self.volume.array.astype(np.float32, copy=True)
            else:
                self.maps[name] = np.zeros(self.volume.shape, np.float32)
        return self.maps[name]

    def add(self, batch: list[int], result: SliceSegmentation) -> None:
        """Place one batch's maps (model grid) on the input grid."""
        for name in SCALAR_MAPS:
            values = getattr(result, name)
            if values is None:
                continue
            restored = self.box.inverse_maps(values.detach().float().cpu().unsqueeze(1))[:, 0].numpy()
            target = self._target(name)
            for n, index in enumerate(batch):
                self.plan.place(target, index, restored[n])
        if result.pseudo_healthy is not None:
            restored = self.box.inverse_maps(result.pseudo_healthy.detach().float().cpu()).numpy()
            target = self._target("pseudo_healthy")
            for n, index in enumerate(batch):
                self.plan.place(target, index, to_input_units(restored[n], self.mapping))

    def bundle_parts(self, method: str, options: PipelineOptions
                     ) -> tuple[np.ndarray | None, dict[str, np.ndarray], dict | None]:
        """(proposals with volume-wide ids, maps, scores JSON) as the bundle stores them.

        With selection scores, the prompt attention is divided by the volume's reference (the
        contrast the vote thresholds compare) and the uncertainty is the vote margin."""
        maps = dict(self.maps)
        if self.proposals is None or self.local_proposals is None:
            return None, maps, None
        axis, params = self.plan.axis, self.selection
        proposals, tables = volume_proposals(self.local_proposals, self.proposals, axis, self.tables)
        if params is None or not tables:
            return proposals, maps, None
        scores = scores_document(tables, params, axis, method, options.fill_holes, options.largest_component)
        if params.mode in ("prompt", "anomaly"):
            reference = volume_reference(tables, params)
            if params.mode == "prompt" and "evidence" in maps and np.isfinite(reference) and reference > 0:
                np.divide(maps["evidence"], np.float32(reference), out=maps["evidence"])  # in place: no copy
            maps["uncertainty"] = vote_margin(SelectionBundle(proposals, tables, params, axis, scores["pipeline"]))
        return proposals, maps, scores


def stage_evidence(collector: EvidenceCollector, method: str, options: PipelineOptions, reference,
                   labelmap_path, *, overwrite: bool = True) -> tuple[dict[str, StagedFile], dict[str, np.ndarray]]:
    """(the bundle written and verified beside `labelmap_path`, waiting to be committed with the
    labelmap under the job's cancel guard; its maps, for a probability SEG)."""
    proposals, maps, scores = collector.bundle_parts(method, options)
    return stage_bundle(labelmap_path, reference, proposals, maps, scores, overwrite=overwrite), maps


def to_input_units(image: np.ndarray, mapping: IntensityMapping) -> np.ndarray:
    """A model-input image (3, H, W) in [0, 1] back in the input's intensity units: (H, W) for a
    scalar input (channel mean), (H, W, 3) for RGB.

    The normalisation is a clipped linear window, so it inverts exactly inside the window and
    not at all outside it: values the window clipped (CT bone above a soft-tissue window, air
    below it) come back as the window's edges."""
    scale = max(mapping.high - mapping.low, 1e-6)  # as IntensityMapping.apply
    if mapping.rgb:
        return np.moveaxis(image, 0, -1) * scale + mapping.low
    return image.mean(axis=0) * scale + mapping.low

