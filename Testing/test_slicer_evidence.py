"""Slicer side of the result bundle, on slicer-core with the REAL worker: evidence maps imported
as volume nodes on the input's geometry, re-selection of proposals, toggling the proposal under
a RAS point, undo, user edits and other segments left alone, SDSeg-style probability threshold."""

import numpy as np
import pytest
from slicer_test_utils import (
    addVolume,
    ijkToRasMatrix,
    listFiles,
    newScene,
    rotation,
    sameRasPointSets,
    segmentVoxelsRas,
    voxelCentersRas,
)

pytest.importorskip("torch")

import slicer  # noqa: E402
import vtk  # noqa: E402
from DiffusionSegSlicerLib import JobSettings, SegmentationJob  # noqa: E402
from DiffusionSegSlicerLib.EvidenceImport import (  # noqa: E402
    PROPOSALS_ROLE,
    SCORES_ROLE,
    volumeArray,
)
from DiffusionSegSlicerLib.SelectionLogic import (  # noqa: E402
    ProbabilityThreshold,
    ProposalSelection,
    SelectionError,
)
from evidence_methods import REFERENCE  # noqa: E402
from slicer_worker_methods import EvidenceWorkerLauncher  # noqa: E402
from vtk.util import numpy_support  # noqa: E402

from DiffusionSegLib.imaging.intensity import choose_mapping  # noqa: E402


def threeLevelVolume(scene):
    """Background 0-200, a box at 500 and an ellipsoid at 1000: three grey-level proposals."""
    k, j, i = np.mgrid[0:12, 0:16, 0:20]
    sphere = ((i - 8.0) / 6) ** 2 + ((j - 7.0) / 5) ** 2 + ((k - 5.0) / 3) ** 2 < 1
    box = (i >= 15) & (i <= 18) & (j >= 11) & (j <= 14) & (k >= 2) & (k <= 9)
    array = np.random.default_rng(0).integers(0, 200, sphere.shape)
    array = np.where(box, 500, np.where(sphere, 1000, array)).astype(np.int16)
    volume = addVolume(scene, array, spacing=(0.9, 0.9, 2.9), origin=(12.5, -30.0, 5.25),  # square in-plane: no resampling
                       directions=rotation((1, 2, 3), 35), name="Oblique")
    return volume, array, sphere, box


def runJob(scene, volume, tmp_path, method="grey-proposals"):
    # Slices along k are 20 x 16: a model side of 20 means no resampling, so voxels are exact.
    settings = JobSettings(method=method, prompt="liver", device="cpu", axis="k", intensity="minmax",
                           params={"size": 20}, fillHoles=False, skipEmptySlices=False)
    job = SegmentationJob(scene, settings, volume, launcher=EvidenceWorkerLauncher(), temporaryRoot=str(tmp_path))
    logs = []
    job.log.connect(lambda *a: logs.append(a))
    job.start()
    assert job.waitForFinished(timeout=300) == job.SUCCEEDED, (job.error, logs)
    assert listFiles(tmp_path) == [], "the work folder and its bundle must be gone"
    return job


def setSegmentMask(segmentationNode, segmentId, volume, mask):
    """Replace a segment by a (K, J, I) mask on the volume's grid, as a Segment Editor edit does."""
    image = slicer.vtkOrientedImageData()
    image.SetDimensions(*volume.GetImageData().GetDimensions())
    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    image.SetImageToWorldMatrix(matrix)
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(mask.astype(np.uint8).ravel(), deep=True))
    assert slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
        image, segmentationNode, segmentId, slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE, image.GetExtent())


def addUserSegment(segmentationNode, volume, mask, name="My edit"):
    """A segment the user made, overlapping the result."""
    segmentId = segmentationNode.GetSegmentation().AddEmptySegment("", name)
    setSegmentMask(segmentationNode, segmentId, volume, mask)
    return segmentId


def rasOf(volume, i, j, k):
    return (ijkToRasMatrix(volume) @ np.array([i, j, k, 1.0]))[:3]


def test_bundle_volumes_are_imported_on_the_input_geometry(tmp_path):
    scene = newScene()
    volume, array, sphere, box = threeLevelVolume(scene)
    job = runJob(scene, volume, tmp_path)
    nodes = job.evidenceNodes
    assert set(nodes) == {"scores", "proposals", "evidence", "uncertainty"}
    seg = job.segmentationNode
    assert seg.GetNodeReference(PROPOSALS_ROLE) is nodes["proposals"]
    assert seg.GetNodeReference(SCORES_ROLE) is nodes["scores"]
    for name in ("proposals", "evidence", "uncertainty"):
        node = nodes[name]
        assert node.GetImageData().GetDimensions() == volume.GetImageData().GetDimensions()
        np.testing.assert_allclose(ijkToRasMatrix(node), ijkToRasMatrix(volume), atol=1e-6)
    mapping = choose_mapping(array.astype(np.float32), False, "minmax")
    grey = np.clip((array - mapping.low) / (mapping.high - mapping.low), 0, 1)
    np.testing.assert_allclose(volumeArray(nodes["evidence"]), grey / REFERENCE, rtol=1e-4, atol=1e-4)
    assert not nodes["proposals"].GetDisplayNode().GetVisibility()
    display = nodes["evidence"].GetDisplayNode()
    assert display.GetWindowLevelMin() == 0.0 and display.GetWindowLevelMax() >= 0.9 * 4.0  # up to the sphere's
    assert display.GetApplyThreshold()
    legends = [nodes["evidence"].GetNthDisplayNode(n) for n in range(nodes["evidence"].GetNumberOfDisplayNodes())]
    assert any(d.IsA("vtkMRMLColorLegendDisplayNode") for d in legends)
    margin = nodes["uncertainty"].GetDisplayNode()
    assert margin.GetWindowLevelMin() == -margin.GetWindowLevelMax()  # symmetric about the decision


def test_reselect_toggle_and_undo_touch_only_the_result_segment(tmp_path):
    scene = newScene()
    volume, array, sphere, box = threeLevelVolume(scene)
    job = runJob(scene, volume, tmp_path)
    seg, (resultId,) = job.segmentationNode, job.segmentIds

    def resultVoxels():
        return segmentVoxelsRas(seg, resultId)

    assert sameRasPointSets(resultVoxels(), voxelCentersRas(volume, sphere | box))  # contrasts 4 and 2 ≥ 1.5
    userId = addUserSegment(seg, volume, box | (np.arange(20)[None, None, :] < 5) & sphere)
    userBefore = segmentVoxelsRas(seg, userId)
    selection = ProposalSelection(seg)
    assert selection.setVoteThreshold(selection.defaultVoteThreshold) == 0  # defaults reproduce the result
    assert selection.setVoteThreshold(3.0) == box.sum()                     # the box (contrast 2) drops out
    assert sameRasPointSets(resultVoxels(), voxelCentersRas(volume, sphere))
    assert selection.undo() and selection.voteThreshold == selection.defaultVoteThreshold
    assert sameRasPointSets(resultVoxels(), voxelCentersRas(volume, sphere | box))
    # a click on the box in slice 3 removes the box proposal from every slice, a second adds it back
    pid, included = selection.toggleAtRas(rasOf(volume, 16, 12, 3))
    assert not included and selection.exclude == {pid}
    assert sameRasPointSets(resultVoxels(), voxelCentersRas(volume, sphere))
    assert selection.toggleAtRas(rasOf(volume, 17, 13, 8)) == (pid, True)
    assert sameRasPointSets(resultVoxels(), voxelCentersRas(volume, sphere | box))
    assert selection.toggleAtRas(rasOf(volume, 0, 0, 0) - 100.0) is None  # outside the volume
    assert selection.undo() and selection.exclude == {pid}
    assert sameRasPointSets(resultVoxels(), voxelCentersRas(volume, sphere))
    assert sameRasPointSets(segmentVoxelsRas(seg, userId), userBefore), "the user's segment changed"


def test_a_segment_the_user_edited_is_never_overwritten(tmp_path):
    scene = newScene()
    volume, array, sphere, box = threeLevelVolume(scene)
    job = runJob(scene, volume, tmp_path)
    seg, (resultId,) = job.segmentationNode, job.segmentIds
    selection = ProposalSelection(seg)
    edited = sphere.copy()
    edited[5] = False  # the user erased one slice of the result in the Segment Editor
    setSegmentMask(seg, resultId, volume, edited)
    with pytest.raises(SelectionError, match="edited"):
        selection.setVoteThreshold(3.0)
    assert sameRasPointSets(segmentVoxelsRas(seg, resultId), voxelCentersRas(volume, edited))


def test_probability_threshold_slider_logic(tmp_path):
    scene = newScene()
    volume, array, sphere, box = threeLevelVolume(scene)
    job = runJob(scene, volume, tmp_path, method="repaints")  # labels: grey > 0.8, evidence: grey
    seg, (resultId,) = job.segmentationNode, job.segmentIds
    assert set(job.evidenceNodes) == {"evidence", "anomaly", "pseudo_healthy"}
    threshold = ProbabilityThreshold(seg, threshold=0.8)
    assert threshold.setThreshold(0.8) == 0
    assert threshold.setThreshold(0.45) == box.sum()  # the box (grey 0.5) joins
    assert sameRasPointSets(segmentVoxelsRas(seg, resultId), voxelCentersRas(volume, sphere | box))
    assert threshold.undo() and threshold.threshold == 0.8
    assert sameRasPointSets(segmentVoxelsRas(seg, resultId), voxelCentersRas(volume, sphere))
    assert not threshold.undo()
