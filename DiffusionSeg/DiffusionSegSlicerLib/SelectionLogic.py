"""Steering a result without running the model again (no Qt, no torch).

`ProposalSelection` (ADZUS, and any result whose bundle has proposals and selection scores):
re-select with a new vote threshold, or toggle the proposal under a point, through
`DiffusionSegLib.decision.reselection.reselect_labels` — the same numpy code the worker ran, so the
job's own threshold gives its labelmap back. `ProbabilityThreshold` (SDSeg): the segment is the
probability volume above a threshold.

Both rewrite only the one segment the job created, and only while it still holds what
DiffusionSeg last wrote there: a segment the user edited in the Segment Editor is never
overwritten (SelectionError says so). Each change keeps the previous state, so `undo()` restores
it exactly. Other segments are never touched.
"""

from __future__ import annotations

import json
import math

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from DiffusionSegLib.api import SelectionBundle, reselect_labels, volume_reference

from .EvidenceImport import (
    EVIDENCE_ROLE,
    PROPOSALS_ROLE,
    SCORES_ROLE,
    SEGMENT_ATTRIBUTE,
    volumeArray,
)
from .VolumeIO import _worldToVolumeMatrix

MAX_UNDO = 20


class SelectionError(ValueError):
    """A change that cannot be made; the message is meant for the user."""


class ManagedSegment:
    """The segment a job created, on the grid of `geometryNode` (a volume of the bundle)."""

    def __init__(self, segmentationNode, segmentId: str, geometryNode):
        if segmentationNode.GetSegmentation().GetSegment(segmentId) is None:
            raise SelectionError("The result's segment was deleted; run the segmentation again to steer it.")
        if segmentationNode.GetTransformNodeID() != geometryNode.GetTransformNodeID():
            raise SelectionError(f"'{segmentationNode.GetName()}' and '{geometryNode.GetName()}' are under "
                                 "different transforms; re-selection needs them in the same space.")
        self.segmentationNode = segmentationNode
        self.segmentId = segmentId
        self.geometryNode = geometryNode
        self._history: list[tuple[np.ndarray, dict]] = []
        self.lastChangedVoxels = 0   # of the last change, for messages of calls that return other things
        self._written = self.currentMask()   # what the job wrote: the baseline for edit checks

    # -- reading and writing the segment --------------------------------------------------------

    def currentMask(self) -> np.ndarray:
        """The segment as a (K, J, I) bool array on the bundle's grid."""
        labelmap = slicer.vtkMRMLLabelMapVolumeNode()
        scene = self.segmentationNode.GetScene()
        scene.AddNode(labelmap)
        try:
            ids = vtk.vtkStringArray()
            ids.InsertNextValue(self.segmentId)
            if not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
                    self.segmentationNode, ids, labelmap, self.geometryNode, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY):
                raise SelectionError("Slicer could not read the result's segment.")
            return volumeArray(labelmap) > 0
        finally:
            scene.RemoveNode(labelmap)

    def isEdited(self) -> bool:
        """True when the segment no longer holds what DiffusionSeg last wrote (a user edit)."""
        return not np.array_equal(self.currentMask(), self._written)

    def _checkUntouched(self) -> None:
        segment = self.segmentationNode.GetSegmentation().GetSegment(self.segmentId)
        if segment is None:
            raise SelectionError("The result's segment was deleted; nothing was changed.")
        if self.isEdited():
            raise SelectionError(f"The segment '{segment.GetName()}' was edited after DiffusionSeg wrote it; "
                                 "re-selection would overwrite your edits, so nothing was changed. Run the "
                                 "segmentation again (into a new segmentation) to steer a fresh result.")

    def _writeMask(self, mask: np.ndarray) -> None:
        image = slicer.vtkOrientedImageData()
        dims = self.geometryNode.GetImageData().GetDimensions()
        image.SetDimensions(*dims)
        matrix = vtk.vtkMatrix4x4()
        self.geometryNode.GetIJKToRASMatrix(matrix)
        image.SetImageToWorldMatrix(matrix)
        image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(
            np.ascontiguousarray(mask, dtype=np.uint8).ravel(), deep=True, array_type=vtk.VTK_UNSIGNED_CHAR))
        if not slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
                image, self.segmentationNode, self.segmentId,
                slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE, image.GetExtent()):
            raise SelectionError("Slicer could not update the result's segment.")
        self._written = self.currentMask()

    def apply(self, mask: np.ndarray, newState: dict) -> int:
        """Replace the segment by `mask` (keeping the previous state for undo); returns the number
        of voxels that changed."""
        self._checkUntouched()
        changed = int(np.count_nonzero(mask != self._written))
        self.lastChangedVoxels = changed
        if changed:
            self._history.append((np.packbits(self._written), self.state()))
            del self._history[:-MAX_UNDO]
            self._writeMask(mask)
        self.setState(newState)
        return changed

    def canUndo(self) -> bool:
        return bool(self._history)

    def undo(self) -> bool:
        """Restore the state before the last change; False when there is nothing to undo."""
        if not self._history:
            return False
        self._checkUntouched()
        packed, state = self._history.pop()
        self._writeMask(np.unpackbits(packed, count=self._written.size).reshape(self._written.shape).astype(bool))
        self.setState(state)
        return True

    def state(self) -> dict:
        raise NotImplementedError

    def setState(self, state: dict) -> None:
        raise NotImplementedError

    # -- points -----------------------------------------------------------------------------------

    def ijkAtRas(self, rasWorld) -> tuple[int, int, int] | None:
        """The voxel (i, j, k) of the bundle's grid under a world RAS point, or None outside it."""
        worldToLocal = _worldToVolumeMatrix(self.geometryNode)
        rasToIjk = vtk.vtkMatrix4x4()
        self.geometryNode.GetRASToIJKMatrix(rasToIjk)
        local = worldToLocal.MultiplyPoint([*rasWorld[:3], 1.0])
        ijk = [int(round(v)) for v in rasToIjk.MultiplyPoint(local)[:3]]
        dims = self.geometryNode.GetImageData().GetDimensions()
        return tuple(ijk) if all(0 <= ijk[a] < dims[a] for a in range(3)) else None  # type: ignore[return-value]


def resultSegmentId(segmentationNode) -> str | None:
    return segmentationNode.GetAttribute(SEGMENT_ATTRIBUTE) if segmentationNode is not None else None


class ProposalSelection(ManagedSegment):
    """Re-selection of a result's proposals: vote threshold, include/exclude by point, undo.

    Given the result's own segment and nodes (what a finished job imported), or, without them,
    those the segmentation's link names (a scene saved and loaded again)."""

    def __init__(self, segmentationNode, segmentId=None, proposalsNode=None, scoresNode=None):
        proposalsNode = proposalsNode or segmentationNode.GetNodeReference(PROPOSALS_ROLE)
        scoresNode = scoresNode or segmentationNode.GetNodeReference(SCORES_ROLE)
        segmentId = segmentId or resultSegmentId(segmentationNode)
        if proposalsNode is None or scoresNode is None or not segmentId:
            raise SelectionError(f"'{segmentationNode.GetName()}' has no proposals and scores to re-select from.")
        try:
            self.bundle = SelectionBundle.from_document(np.array(volumeArray(proposalsNode)),
                                                        json.loads(scoresNode.GetText()))
        except ValueError as exc:
            raise SelectionError(f"The selection data of '{segmentationNode.GetName()}' is unusable: {exc}") from None
        super().__init__(segmentationNode, segmentId, proposalsNode)
        # The proposals' pieces, built now (about 3 s for 512x512x200) so that every slider move
        # and click after the import re-selects in a fraction of a second.
        self.bundle.graph()
        self.voteThreshold = self.defaultVoteThreshold
        self.include: set[int] = set()
        self.exclude: set[int] = set()

    @property
    def defaultVoteThreshold(self) -> float:
        return float(self.bundle.params.vote_threshold)

    @property
    def strongestContrast(self) -> float:
        """The largest evidence of any region, in the unit of the vote threshold (a multiple of
        the volume's reference): a threshold above it leaves the result empty, so a slider that
        reaches it can drop every region."""
        reference = volume_reference(self.bundle.tables, self.bundle.params)
        if not (math.isfinite(reference) and reference > 0):
            return 0.0
        contrasts = [table.score(pid) / reference for table in self.bundle.tables.values() for pid in table.proposals]
        return max((c for c in contrasts if math.isfinite(c)), default=0.0)

    def state(self) -> dict:
        return {"voteThreshold": self.voteThreshold, "include": set(self.include), "exclude": set(self.exclude)}

    def setState(self, state: dict) -> None:
        self.voteThreshold = float(state["voteThreshold"])
        self.include, self.exclude = set(state["include"]), set(state["exclude"])

    def _reselect(self, state: dict) -> int:
        labels = reselect_labels(self.bundle, state["voteThreshold"], None, state["include"], state["exclude"])
        return self.apply(labels > 0, state)

    def setVoteThreshold(self, value: float) -> int:
        """Re-select every slice with a new vote threshold (overrides stay); voxels changed."""
        return self._reselect({**self.state(), "voteThreshold": float(value)})

    def proposalAtRas(self, rasWorld) -> int:
        ijk = self.ijkAtRas(rasWorld)
        return 0 if ijk is None else int(self.bundle.proposals[ijk[2], ijk[1], ijk[0]])

    def toggleAtRas(self, rasWorld) -> tuple[int, bool] | None:
        """Add the proposal under the point if it is not in the segment, else remove it (in every
        slice where it carries that id). Returns (proposal id, now included) or None when the
        point is on no proposal."""
        pid = self.proposalAtRas(rasWorld)
        if pid == 0:
            return None
        inside = self._written[self.bundle.proposals == pid].mean() > 0.5
        include, exclude = set(self.include), set(self.exclude)
        if inside:
            include.discard(pid)
            exclude.add(pid)
        else:
            exclude.discard(pid)
            include.add(pid)
        self._reselect({"voteThreshold": self.voteThreshold, "include": include, "exclude": exclude})
        return pid, not inside


class ProbabilityThreshold(ManagedSegment):
    """SDSeg: the segment is the mean foreground probability above a threshold."""

    def __init__(self, segmentationNode, threshold: float = 0.5, segmentId=None, evidenceNode=None):
        evidenceNode = evidenceNode or segmentationNode.GetNodeReference(EVIDENCE_ROLE)
        segmentId = segmentId or resultSegmentId(segmentationNode)
        if evidenceNode is None or not segmentId:
            raise SelectionError(f"'{segmentationNode.GetName()}' has no probability volume to threshold.")
        super().__init__(segmentationNode, segmentId, evidenceNode)
        self.probability = np.array(volumeArray(evidenceNode), dtype=np.float32)
        self.threshold = float(threshold)

    def state(self) -> dict:
        return {"threshold": self.threshold}

    def setState(self, state: dict) -> None:
        self.threshold = float(state["threshold"])

    def setThreshold(self, value: float) -> int:
        """Foreground where the probability exceeds `value` (the worker's rule, > threshold)."""
        return self.apply(self.probability > float(value), {"threshold": float(value)})


def selectionFor(job):
    """(logic, evidence node, message) for a finished job: the ProposalSelection of an ADZUS-style
    result, the ProbabilityThreshold of an SDSeg one, or None (message says why when it is an
    error). Bound to the job's own result: its one segment and the nodes it imported — never
    data an earlier job linked to the same segmentation. Shared by the Slicer panel and the web
    app, so both steer the same results."""
    nodes = getattr(job, "evidenceNodes", None) or {}
    evidenceNode = nodes.get("evidence")
    segmentation = job.segmentationNode
    segmentIds = list(getattr(job, "segmentIds", None) or [])
    if segmentation is None or len(segmentIds) != 1:
        return None, evidenceNode, ""
    try:
        if nodes.get("proposals") is not None and nodes.get("scores") is not None:
            return ProposalSelection(segmentation, segmentIds[0], nodes["proposals"], nodes["scores"]), evidenceNode, ""
        if evidenceNode is not None and job.settings.method == "sdseg":
            threshold = float(job.settings.params.get("threshold", 0.5))
            return ProbabilityThreshold(segmentation, threshold, segmentIds[0], evidenceNode), evidenceNode, ""
    except SelectionError as error:
        return None, evidenceNode, str(error)
    return None, evidenceNode, ""
