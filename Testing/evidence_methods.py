"""Model-free methods with a result bundle whose maps and scores are known exactly, for the
bundle, `reselect` and Slicer-side evidence tests (registered in-process or in a real worker)."""

from __future__ import annotations

import numpy as np
import torch

from DiffusionSegLib.decision.selection import (
    SelectionParams,
    SliceScores,
    proposal_table,
    select_labels,
)
from DiffusionSegLib.methods.base import Method, MethodInfo, Param, SliceSegmentation

REFERENCE = 0.25  # every slice's reference attention, so the volume's reference is known exactly


class GreyProposals(Method):
    """Proposals = four grey-level bins, evidence = grey level, every slice's reference fixed;
    the pipeline decides the volume with `selection.select_labels` (seed = vote threshold, so
    the volume step keeps every candidate and the expected labels are simple)."""

    info = MethodInfo(name="grey-proposals", label="Grey proposals (test)", description="test", prompt="optional",
                      needs_checkpoint=False, default_model=None,
                      params=(Param("vote_threshold", "float", 1.5, "vote", minimum=0.0, maximum=10.0),
                              Param("size", "int", 40, "model side", minimum=8, maximum=512)))

    def load(self) -> None:
        self.image_size = self.params["size"]

    def _selection(self) -> SelectionParams:
        vote = float(self.params["vote_threshold"])
        return SelectionParams(mode="prompt", vote_threshold=vote, seed_threshold=vote)

    def segment(self, images: torch.Tensor, valid: torch.Tensor, indices=None) -> SliceSegmentation:
        grey = images.mean(1).numpy()
        labels, maps, tables = [], [], []
        for b in range(images.shape[0]):
            proposals = np.where(valid[b].numpy(), 1 + np.minimum((grey[b] * 4).astype(int), 3), 0)
            table = SliceScores(proposal_table(proposals, grey[b], valid[b].numpy()), reference=REFERENCE)
            labels.append(select_labels(proposals, {0: table}, self._selection()))
            maps.append(proposals)
            tables.append(table)
        return SliceSegmentation(labels=torch.from_numpy(np.stack(labels).astype(np.int64)),
                                 segment_map=torch.from_numpy(np.stack(maps)),
                                 evidence=torch.from_numpy(grey), scores=tables, selection=self._selection())


class Repaints(Method):
    """Returns its input as the 'pseudo-healthy' image and the grey level as residual/anomaly."""

    info = MethodInfo(name="repaints", label="Repaints (test)", description="test", prompt="optional",
                      needs_checkpoint=False, default_model=None,
                      params=(Param("size", "int", 40, "model side", minimum=8, maximum=512),))

    def load(self) -> None:
        self.image_size = self.params["size"]

    def segment(self, images: torch.Tensor, valid: torch.Tensor, indices=None) -> SliceSegmentation:
        grey = images.mean(1)
        return SliceSegmentation(labels=(grey > 0.8).long(), probabilities=grey, evidence=grey,
                                 anomaly=1 - grey, pseudo_healthy=images.clone())


class ManyProposals(Method):
    """More proposals than 16 bits can number: every slice is cut into 1×8 bars, lying on even
    slices and standing on odd ones, so no bar continues into the next slice and every slice adds
    512 new volume ids (129 slices: 66 048). Evidence = grey level, reference fixed: the bars on
    the bright disc are foreground."""

    info = MethodInfo(name="many-proposals", label="Many proposals (test)", description="test", prompt="optional",
                      needs_checkpoint=False, default_model=None,
                      params=(Param("vote_threshold", "float", 1.5, "vote", minimum=0.0, maximum=10.0),))

    def load(self) -> None:
        self.image_size = 64

    def segment(self, images: torch.Tensor, valid: torch.Tensor, indices=None) -> SliceSegmentation:
        grey = images.mean(1).numpy()
        rows, cols = np.mgrid[:64, :64]
        selection = SelectionParams(mode="prompt", vote_threshold=1.5, seed_threshold=1.5)
        labels, maps, tables = [], [], []
        for b, index in enumerate(indices if indices is not None else range(images.shape[0])):
            bars = rows * 8 + cols // 8 if index % 2 == 0 else cols * 8 + rows // 8
            proposals = np.where(valid[b].numpy(), bars + 1, 0)
            table = SliceScores(proposal_table(proposals, grey[b], valid[b].numpy()), reference=REFERENCE)
            labels.append(select_labels(proposals, {0: table}, selection))
            maps.append(proposals)
            tables.append(table)
        return SliceSegmentation(labels=torch.from_numpy(np.stack(labels).astype(np.int64)),
                                 segment_map=torch.from_numpy(np.stack(maps)),
                                 evidence=torch.from_numpy(grey), scores=tables, selection=selection)


class SdsegStandIn(Repaints):
    """Registered as "sdseg" in a test worker: labels = probability > threshold, the probability as
    the evidence map — an SDSeg-shaped bundle (what the Slicer side steers with a probability
    threshold) without a checkpoint."""

    info = MethodInfo(name="sdseg", label="SDSeg (test stand-in)", description="test", prompt="optional",
                      needs_checkpoint=False, default_model=None, prompt_conditioned=False,
                      probability_maps=("evidence",),
                      params=(Param("threshold", "float", 0.5, "probability threshold", minimum=0.0, maximum=1.0),
                              Param("size", "int", 40, "model side", minimum=8, maximum=512)))

    def segment(self, images: torch.Tensor, valid: torch.Tensor, indices=None) -> SliceSegmentation:
        grey = images.mean(1)
        return SliceSegmentation(labels=(grey > self.params["threshold"]).long(), probabilities=grey, evidence=grey)
