"""A job's result in the scene, on slicer-core with the REAL worker: re-selection bound to the result
it came from (ADZUS-then-SDSeg and SDSeg-then-ADZUS in one segmentation, through the logic and the
panel), the finished slices previewed while the job runs and gone when it ends (cancelled: nothing
left), and removing a whole result."""

import json
import time

import numpy as np
import pytest
import slicer_test_utils  # noqa: F401  (puts the module folder on sys.path)
from DiffusionSegSlicerLib import JobSettings, SegmentationJob
from DiffusionSegSlicerLib.EvidenceImport import (
    EVIDENCE_ROLE,
    PROPOSALS_ROLE,
    SEGMENT_ATTRIBUTE,
)
from DiffusionSegSlicerLib.PartialPreview import PREVIEW_ATTRIBUTE
from DiffusionSegSlicerLib.SelectionLogic import ProbabilityThreshold, ProposalSelection, selectionFor
from slicer_test_utils import (
    ijkToRasMatrix,
    listFiles,
    newScene,
    sameRasPointSets,
    segmentVoxelsRas,
    voxelCentersRas,
)
from slicer_worker_methods import EvidenceWorkerLauncher, RealWorkerLauncher
from test_slicer_evidence import threeLevelVolume  # grey 0.5 box, grey 1.0 ellipsoid, square in-plane voxels

pytest.importorskip("torch")


def run(scene, volume, tmp_path, method, target=None, launcher=None, **params):
    settings = JobSettings(method=method, prompt="lesion", device="cpu", axis="k", intensity="minmax",
                           params={"size": 20, **params}, fillHoles=False, skipEmptySlices=False)
    job = SegmentationJob(scene, settings, volume, targetSegmentationNode=target,
                          launcher=launcher or EvidenceWorkerLauncher(), temporaryRoot=str(tmp_path))
    job.start()
    assert job.waitForFinished(timeout=300) == job.SUCCEEDED, job.error
    return job


def voxels(job, segmentId):
    return segmentVoxelsRas(job.segmentationNode, segmentId)


def test_adzus_then_sdseg_in_one_segmentation_steers_the_new_result(tmp_path):
    scene = newScene()
    volume, _, sphere, box = threeLevelVolume(scene)
    first = run(scene, volume, tmp_path, "grey-proposals", vote_threshold=3.5)      # the ellipsoid (grey 1.0)
    (firstId,) = first.segmentIds
    assert isinstance(selectionFor(first)[0], ProposalSelection)
    second = run(scene, volume, tmp_path, "sdseg", target=first.segmentationNode, threshold=0.8)
    (secondId,) = second.segmentIds
    segmentation = second.segmentationNode
    assert segmentation is first.segmentationNode and firstId != secondId
    # the segmentation's link names the SDSeg result only: no ADZUS proposals left to find
    assert segmentation.GetNodeReference(PROPOSALS_ROLE) is None
    assert segmentation.GetAttribute(SEGMENT_ATTRIBUTE) == secondId
    assert segmentation.GetNodeReference(EVIDENCE_ROLE) is second.evidenceNodes["evidence"]
    logic, evidence, message = selectionFor(second)
    assert isinstance(logic, ProbabilityThreshold) and evidence is second.evidenceNodes["evidence"] and not message
    assert logic.segmentId == secondId and logic.threshold == 0.8
    firstBefore = voxels(first, firstId)
    assert len(firstBefore) == sphere.sum() and sameRasPointSets(voxels(second, secondId), voxelCentersRas(volume, sphere))
    assert logic.setThreshold(0.45) == box.sum()          # the box (probability 0.5) joins the SDSeg segment
    assert sameRasPointSets(voxels(second, secondId), voxelCentersRas(volume, sphere | box))
    assert sameRasPointSets(voxels(first, firstId), firstBefore)   # the ADZUS segment is untouched


def test_sdseg_then_adzus_in_one_segmentation_steers_the_new_result(tmp_path):
    scene = newScene()
    volume, _, sphere, box = threeLevelVolume(scene)
    first = run(scene, volume, tmp_path, "sdseg", threshold=0.45)                 # sphere and box
    (firstId,) = first.segmentIds
    second = run(scene, volume, tmp_path, "grey-proposals", target=first.segmentationNode, vote_threshold=1.5)
    (secondId,) = second.segmentIds
    segmentation = second.segmentationNode
    assert segmentation.GetNodeReference(EVIDENCE_ROLE) is second.evidenceNodes["evidence"]   # not SDSeg's map
    assert segmentation.GetNodeReference(PROPOSALS_ROLE) is second.evidenceNodes["proposals"]
    logic, _, _ = selectionFor(second)
    assert isinstance(logic, ProposalSelection) and logic.segmentId == secondId
    firstBefore = voxels(first, firstId)
    assert len(firstBefore) == (sphere | box).sum()
    assert logic.setVoteThreshold(3.5) == box.sum()      # the box's contrast 2 < 3.5: it leaves the ADZUS segment
    assert sameRasPointSets(voxels(second, secondId), voxelCentersRas(volume, sphere))
    assert sameRasPointSets(voxels(first, firstId), firstBefore)


def test_remove_result_takes_out_the_jobs_segments_and_evidence_only(tmp_path):
    scene = newScene()
    volume, _, sphere, box = threeLevelVolume(scene)
    first = run(scene, volume, tmp_path, "sdseg", threshold=0.45)
    second = run(scene, volume, tmp_path, "grey-proposals", target=first.segmentationNode, vote_threshold=3.5)
    segmentation = second.segmentationNode
    evidence = list(second.evidenceNodes.values())
    assert second.hasResult() and len(evidence) >= 3
    assert second.removeResult() == 1 and not second.hasResult()
    assert segmentation.GetScene() is scene and segmentation.GetSegmentation().GetNumberOfSegments() == 1
    assert all(node.GetScene() is None for node in evidence)
    assert segmentation.GetAttribute(SEGMENT_ATTRIBUTE) is None    # its link went with it
    assert sameRasPointSets(voxels(first, first.segmentIds[0]), voxelCentersRas(volume, sphere | box))
    assert first.removeResult() == 1 and segmentation.GetScene() is None   # the job made the node: it goes too


def previewRecorder(job, volume):
    """Checks each preview update: on the input's exact grid and transform, growing."""
    seen = []

    def onPartial(node, slicesDone):
        assert node.GetScene() is volume.GetScene() and node.GetAttribute(PREVIEW_ATTRIBUTE) == "1"
        assert not node.GetSaveWithScene() and node.GetTransformNodeID() == volume.GetTransformNodeID()
        assert np.allclose(ijkToRasMatrix(node), ijkToRasMatrix(volume))
        assert node.GetImageData().GetDimensions() == volume.GetImageData().GetDimensions()
        seen.append((node, slicesDone, job.preview.voxels()))

    job.partial.connect(onPartial)
    return seen


def test_finished_slices_are_previewed_then_replaced_by_the_result(tmp_path):
    scene = newScene()
    volume, _, sphere, box = threeLevelVolume(scene)
    settings = JobSettings(method="bright-threshold", prompt="lesion", device="cpu", axis="k", intensity="minmax",
                           params={"size": 20, "threshold": 0.75}, fillHoles=False, skipEmptySlices=False,
                           batchSize=3)
    job = SegmentationJob(scene, settings, volume, launcher=RealWorkerLauncher(), temporaryRoot=str(tmp_path))
    seen = previewRecorder(job, volume)
    job.start()
    assert job.waitForFinished(timeout=300) == job.SUCCEEDED, job.error
    assert [count for _, count, _ in seen] == [3, 6, 9, 12]          # one update per batch of 3 slices
    assert seen[-1][2] == sphere.sum() and len({id(node) for node, _, _ in seen}) == 1
    assert seen[0][0].GetScene() is None                              # the preview is gone
    assert not [n for n in scene.GetNodesByClass("vtkMRMLLabelMapVolumeNode") if n.GetAttribute(PREVIEW_ATTRIBUTE)]
    assert sameRasPointSets(voxels(job, job.segmentIds[0]), voxelCentersRas(volume, sphere))


def test_a_cancelled_job_leaves_no_preview_and_no_segment(tmp_path):
    scene = newScene()
    volume, _, _, _ = threeLevelVolume(scene)
    nodesBefore = scene.GetNumberOfNodes()
    settings = JobSettings(method="slow-bright-threshold", prompt="lesion", device="cpu", axis="k",
                           intensity="minmax", params={"size": 20, "threshold": 0.75}, skipEmptySlices=False,
                           batchSize=1)
    job = SegmentationJob(scene, settings, volume, launcher=RealWorkerLauncher(), temporaryRoot=str(tmp_path))
    seen = previewRecorder(job, volume)
    job.partial.connect(lambda node, count: job.cancel() if count >= 5 else None)   # slices 3, 4 hold the sphere
    job.start()
    assert job.waitForFinished(timeout=300) == job.CANCELLED
    assert len(seen) >= 5 and seen[-1][2] > 0 and seen[0][0].GetScene() is None
    assert scene.GetNumberOfNodes() == nodesBefore and job.segmentationNode is None
    assert listFiles(tmp_path) == []


def test_the_panel_steers_the_last_result_of_two_in_one_segmentation(tmp_path, monkeypatch):
    """The same ADZUS-then-SDSeg case through the panel (stand-in widgets, the real logic)."""
    from slicer_panel_standin import StandInParameterNode, installStandIns
    from test_slicer_panel import buildPanel

    from DiffusionSegLib.methods.base import MethodInfo
    from evidence_methods import GreyProposals, SdsegStandIn

    gui = installStandIns(monkeypatch)
    from DiffusionSegSlicerLib.Logic import DiffusionSegLogic

    scene = newScene()
    volume, _, sphere, box = threeLevelVolume(scene)
    logic = DiffusionSegLogic(scene, temporaryRoot=str(tmp_path))
    logic._methods = {cls.info.name: cls.info for cls in (GreyProposals, SdsegStandIn)}
    assert all(isinstance(info, MethodInfo) for info in logic._methods.values())
    monkeypatch.setattr(logic, "launcherFor", lambda python="": EvidenceWorkerLauncher(""))
    gui.Widget.qt.QSettings().setValue(gui.ServiceWidget.SETTINGS_KEY + "/mode", "off")
    setup = buildPanel(gui, logic=logic)
    node = StandInParameterNode()
    setup.panel.setParameterNode(node)
    node.inputVolume, node.axis, node.intensity = volume, "axial", "minmax"    # axial: k for this volume
    node.fillHoles, node.skipEmptySlices = False, False

    def apply(method, **params):
        setup.ui.methodComboBox.setCurrentIndex(setup.ui.methodComboBox.findData(method))
        node.methodParamsJson = json.dumps({method: {"size": 20, **params}})
        setup.panel.onMethodChanged()
        setup.ui.applyButton.click()
        job = setup.panel.job
        while setup.panel._pollTimer.isActive():
            setup.panel._pollTimer.fire()
            time.sleep(0.05)
        assert job.state == job.SUCCEEDED, (job.error, setup.ui.logTextEdit.plainText[-2000:])
        node.outputSegmentation = job.segmentationNode    # the next job adds to the same segmentation
        return job

    first = apply("grey-proposals", vote_threshold=3.5)
    assert setup.panel.selection.sliderLabel.text == "Vote threshold:"
    second = apply("sdseg", threshold=0.8)
    selection = setup.panel.selection
    assert selection.sliderLabel.text == "Probability threshold:" and not selection.clickButton.visible
    firstBefore = voxels(first, first.segmentIds[0])
    selection.slider.value = 0.45
    selection._timer.fire()
    assert sameRasPointSets(voxels(second, second.segmentIds[0]), voxelCentersRas(volume, sphere | box))
    assert sameRasPointSets(voxels(first, first.segmentIds[0]), firstBefore)
