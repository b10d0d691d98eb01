"""The selection scenario of the module's self-test, Qt-free so pytest runs the same code on
slicer-core (Testing/test_slicer_selection_selftest.py) and the self-test drives it through the
panel's real widgets.

A steerable result is built without any model: the result bundle is written with the
backend's own writers (numpy-only selection, proposals, scores, evidence) for a generated
oblique volume with three grey levels, then imported exactly as a finished job imports it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import vtk

from .EvidenceImport import EvidenceImporter, volumeArray
from .JobSettings import JobSettings
from .SegmentationImport import SegmentationImporter
from .SelfTest import addTestVolume
from .VolumeIO import exportVolume

VOTE, SEED = 1.5, 2.0


@dataclass
class SteerableResult:
    """What the panel's selection section reads from a finished job."""

    inputVolumeNode: object
    segmentationNode: object
    segmentIds: list
    evidenceNodes: dict
    settings: JobSettings = field(default_factory=lambda: JobSettings(method="adzus", prompt="lesion"))
    ellipse: np.ndarray | None = None   # (K, J, I) masks of the two foreground proposals
    box: np.ndarray | None = None


def addSteerableVolume(scene):
    """The module self-test's oblique, anisotropic volume (a bright ellipse at 900 on a 200-240
    background) with a box at 560 added: three grey levels, three proposals."""
    volume = addTestVolume(scene, "DiffusionSegSelectionTest")
    array = volumeArray(volume)      # a view of the node's voxels
    k, j, i = np.indices(array.shape)
    ellipse = array == 900
    box = (i >= 38) & (i <= 45) & (j >= 5) & (j <= 12)
    array[box] = 560
    volume.GetImageData().Modified()
    return volume, np.array(array), ellipse, box


def buildSteerableResult(scene, folder: str) -> SteerableResult:
    """Write a result bundle for the generated volume with the backend's code and import it."""
    import SimpleITK as sitk

    from DiffusionSegLib.api import (
        SelectionParams,
        SliceScores,
        match_labels_across_slices,
        proposal_table,
        scores_document,
        select_labels,
        stage_bundle,
        volume_proposals,
        write_labelmap,
    )

    volume, array, ellipse, box = addSteerableVolume(scene)
    inputPath = exportVolume(volume, os.path.join(folder, "input.nrrd"))
    reference = sitk.ReadImage(inputPath)
    grey = (array - 200.0) / 700.0
    proposals = 1 + (array >= 500).astype(np.int64) + (array >= 800)   # 1 background, 2 box, 3 ellipse
    valid = np.ones(array.shape[1:], bool)
    tables = {k: SliceScores(proposal_table(proposals[k], grey[k], valid), reference=0.1)
              for k in range(array.shape[0])}
    params = SelectionParams(mode="prompt", vote_threshold=VOTE, seed_threshold=SEED)
    labels = select_labels(proposals, tables, params, 0)
    globalProposals, globalTables = volume_proposals(proposals, match_labels_across_slices(proposals, 0), 0, tables)
    outputPath = os.path.join(folder, "result.nrrd")
    staged = stage_bundle(outputPath, reference, globalProposals, {"evidence": grey / 0.1},
                          scores_document(globalTables, params, 0, "adzus", False, False))
    outputs = {name: str(file.commit()) for name, file in staged.items()}
    write_labelmap(labels, reference, outputPath)
    segmentationNode, segmentIds = SegmentationImporter().importLabelmap(
        scene, outputPath, volume, {1: "lesion"}, nodeName=f"{volume.GetName()} lesion")
    nodes = EvidenceImporter().importBundle(scene, outputs, volume, segmentationNode, segmentIds[0], "adzus",
                                            f"{volume.GetName()} lesion")
    return SteerableResult(volume, segmentationNode, segmentIds, nodes, ellipse=ellipse, box=box)


def segmentMask(result: SteerableResult) -> np.ndarray:
    """The result segment on the input grid, (K, J, I) bool."""
    import slicer

    labelmap = slicer.vtkMRMLLabelMapVolumeNode()
    scene = result.segmentationNode.GetScene()
    scene.AddNode(labelmap)
    try:
        ids = vtk.vtkStringArray()
        ids.InsertNextValue(result.segmentIds[0])
        slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
            result.segmentationNode, ids, labelmap, result.inputVolumeNode, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY)
        return volumeArray(labelmap) > 0
    finally:
        scene.RemoveNode(labelmap)


def rasOfVoxel(volumeNode, i: int, j: int, k: int):
    matrix = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(matrix)
    return matrix.MultiplyPoint([i, j, k, 1.0])[:3]


def exerciseSelection(result: SteerableResult, setVoteThreshold, toggleAt, undo) -> None:
    """Threshold, click-toggle and undo through the given callables (the logic's, or the
    panel's widgets); raises AssertionError when the segment is not what the rule says."""
    both, ellipse = result.ellipse | result.box, result.ellipse
    assert np.array_equal(segmentMask(result), both), "the imported result is not box + ellipse"
    setVoteThreshold(VOTE)                       # the job's own threshold: nothing changes
    assert np.array_equal(segmentMask(result), both)
    setVoteThreshold(7.0)                        # box contrast 5.1, ellipse 10: the box drops out
    assert np.array_equal(segmentMask(result), ellipse), "a stricter threshold must drop the box"
    undo()
    assert np.array_equal(segmentMask(result), both), "undo must restore the previous segment"
    toggleAt(rasOfVoxel(result.inputVolumeNode, 40, 8, 1))   # a click on the box in slice 1
    assert np.array_equal(segmentMask(result), ellipse), "the click must remove the box from every slice"
    toggleAt(rasOfVoxel(result.inputVolumeNode, 41, 9, 2))
    assert np.array_equal(segmentMask(result), both), "a second click must add it back"
