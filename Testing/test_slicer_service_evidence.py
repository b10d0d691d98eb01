"""The result bundle of a job run by the warm server: a REAL `serve` process (ServiceManager,
with the bundle test methods registered) computes the evidence; the Slicer side downloads every
listed file and imports it through the one-shot job's code path, so the evidence volumes lie on
the input's (oblique) geometry and the proposals can be re-selected."""

import numpy as np
import pytest
from slicer_test_utils import (
    ijkToRasMatrix,
    newScene,
    sameRasPointSets,
    segmentVoxelsRas,
    voxelCentersRas,
)

pytest.importorskip("torch")

from DiffusionSegSlicerLib import JobSettings  # noqa: E402
from DiffusionSegSlicerLib.EvidenceImport import (  # noqa: E402
    PROPOSALS_ROLE,
    SCORES_ROLE,
    volumeArray,
)
from DiffusionSegSlicerLib.SelectionLogic import ProposalSelection  # noqa: E402
from evidence_methods import REFERENCE  # noqa: E402
from slicer_worker_methods import EvidenceWorkerLauncher  # noqa: E402
from test_slicer_evidence import threeLevelVolume  # noqa: E402
from test_slicer_service import manager, runJob, serverJobFolders  # noqa: E402,F401  (fixture)

from DiffusionSegLib.imaging.intensity import choose_mapping  # noqa: E402


def evidenceSettings(method="grey-proposals", evidence=True):
    return JobSettings(method=method, prompt="liver", device="cpu", axis="k", intensity="minmax",
                       params={"size": 20}, fillHoles=False, skipEmptySlices=False, evidence=evidence)


def test_server_job_imports_the_bundle_and_reselects(manager):
    scene = newScene()
    volume, array, sphere, box = threeLevelVolume(scene)
    job, logs = runJob(scene, volume, manager, evidenceSettings(), launcher=EvidenceWorkerLauncher())
    assert job.waitForFinished(timeout=300) == job.SUCCEEDED, (job.error, logs)
    nodes = job.evidenceNodes
    assert set(nodes) == {"scores", "proposals", "evidence", "uncertainty"}
    seg, (resultId,) = job.segmentationNode, job.segmentIds
    assert seg.GetNodeReference(PROPOSALS_ROLE) is nodes["proposals"]
    assert seg.GetNodeReference(SCORES_ROLE) is nodes["scores"]
    for name in ("proposals", "evidence", "uncertainty"):
        assert nodes[name].GetImageData().GetDimensions() == volume.GetImageData().GetDimensions()
        np.testing.assert_allclose(ijkToRasMatrix(nodes[name]), ijkToRasMatrix(volume), atol=1e-6)
    mapping = choose_mapping(array.astype(np.float32), False, "minmax")
    grey = np.clip((array - mapping.low) / (mapping.high - mapping.low), 0, 1)
    np.testing.assert_allclose(volumeArray(nodes["evidence"]), grey / REFERENCE, rtol=1e-4, atol=1e-4)
    # re-selection from the downloaded proposals and scores, on the result segment only
    assert sameRasPointSets(segmentVoxelsRas(seg, resultId), voxelCentersRas(volume, sphere | box))
    selection = ProposalSelection(seg)
    assert selection.setVoteThreshold(selection.defaultVoteThreshold) == 0
    assert selection.setVoteThreshold(3.0) == box.sum()  # the box (contrast 2) drops out
    assert sameRasPointSets(segmentVoxelsRas(seg, resultId), voxelCentersRas(volume, sphere))
    assert selection.undo()
    assert sameRasPointSets(segmentVoxelsRas(seg, resultId), voxelCentersRas(volume, sphere | box))
    assert serverJobFolders(manager) == []  # the job's files were deleted on the server too
    assert manager.health()["jobs"] == 0


def test_server_job_without_evidence_downloads_only_the_labelmap(manager):
    scene = newScene()
    volume, array, sphere, box = threeLevelVolume(scene)
    job, logs = runJob(scene, volume, manager, evidenceSettings(evidence=False), launcher=EvidenceWorkerLauncher())
    assert job.waitForFinished(timeout=300) == job.SUCCEEDED, (job.error, logs)
    assert job.evidenceNodes == {} and job.segmentationNode.GetNodeReference(PROPOSALS_ROLE) is None
    assert sameRasPointSets(segmentVoxelsRas(job.segmentationNode, job.segmentIds[0]),
                            voxelCentersRas(volume, sphere | box))
