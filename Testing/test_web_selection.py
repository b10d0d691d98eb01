"""The web app's evidence overlay and re-selection slider for a job run by a REAL `serve` process
(the bundle test methods registered): the WebApp is built (so the page with its selection part
builds), the job's evidence shows as the foreground of the app's slice views, and the slider and
Undo steer the result segment through the Slicer module's SelectionLogic."""

import numpy as np
import pytest

from slicer_test_utils import newScene, sameRasPointSets, segmentVoxelsRas, voxelCentersRas  # noqa: F401

pytest.importorskip("trame_slicer")
pytest.importorskip("torch")

import DiffusionSegWeb  # noqa: E402,F401  (the Slicer module's lib on the path)
from slicer_worker_methods import EvidenceWorkerLauncher  # noqa: E402
from test_slicer_evidence import setSegmentMask, threeLevelVolume  # noqa: E402
from test_slicer_service import manager, runJob  # noqa: E402,F401  (fixture)
from test_slicer_service_evidence import evidenceSettings  # noqa: E402


@pytest.fixture()
def app(tmp_path):
    from DiffusionSegSlicerLib.ServiceManager import ServiceSettings
    from trame.app import get_server

    from DiffusionSegWeb.app import WebApp
    from DiffusionSegWeb.files import Workspace

    workspace = Workspace(50_000_000)
    yield WebApp(server=get_server(f"test-web-selection-{tmp_path.name}"), workspace=workspace,
                 serviceSettings=ServiceSettings(mode="local"))
    workspace.remove()


def foregrounds(scene):
    composites = scene.GetNodesByClass("vtkMRMLSliceCompositeNode")
    return [composites.GetItemAsObject(i).GetForegroundVolumeID() for i in range(composites.GetNumberOfItems())]


def finishedJob(app, manager, method):
    scene = app.slicerApp.scene
    volume, array, sphere, box = threeLevelVolume(scene)
    job, logs = runJob(scene, volume, manager, evidenceSettings(method), launcher=EvidenceWorkerLauncher())
    assert job.waitForFinished(timeout=300) == job.SUCCEEDED, (job.error, logs)
    return job, volume, sphere, box


def test_server_job_evidence_overlay_and_vote_threshold_slider(app, manager):
    job, volume, sphere, box = finishedJob(app, manager, "grey-proposals")
    seg, (resultId,) = job.segmentationNode, job.segmentIds
    state, selection = app.state, app.selection
    selection.setResult(job)
    evidenceId = job.evidenceNodes["evidence"].GetID()
    assert foregrounds(app.slicerApp.scene) and set(foregrounds(app.slicerApp.scene)) == {evidenceId}
    assert state.ds_sel_overlay and state.ds_sel_has_overlay and state.ds_sel_kind == "votes"
    default = state.ds_sel_default
    assert state.ds_sel_value == default and state.ds_sel_max >= 2 * default and not state.ds_sel_can_undo

    selection.setValue(3.0)   # the box (contrast 2) drops out
    assert state.ds_sel_message == f"{box.sum()} voxel(s) changed." and state.ds_sel_value == 3.0
    assert sameRasPointSets(segmentVoxelsRas(seg, resultId), voxelCentersRas(volume, sphere))
    assert state.ds_sel_can_undo
    selection.undo()
    assert state.ds_sel_value == default and state.ds_sel_message == "Undone."
    assert sameRasPointSets(segmentVoxelsRas(seg, resultId), voxelCentersRas(volume, sphere | box))

    edited = sphere.copy()
    edited[5] = False   # the user erased a slice in the Segment Editor: never overwritten
    setSegmentMask(seg, resultId, volume, edited)
    selection.setValue(3.0)
    assert "edited" in state.ds_sel_message and state.ds_sel_value == default
    assert sameRasPointSets(segmentVoxelsRas(seg, resultId), voxelCentersRas(volume, edited))

    selection.showOverlay(False)
    assert set(foregrounds(app.slicerApp.scene)) == {None} and not state.ds_sel_overlay
    selection.clear()
    assert state.ds_sel_kind == "" and not state.ds_sel_has_overlay
    selection.setValue(1.0)   # nothing to steer: no change, no error
    assert sameRasPointSets(segmentVoxelsRas(seg, resultId), voxelCentersRas(volume, edited))


def test_evidence_without_proposals_shows_the_overlay_only(app, manager):
    job, *_ = finishedJob(app, manager, "repaints")
    app.selection.setResult(job)
    assert app.state.ds_sel_kind == "" and app.state.ds_sel_has_overlay and app.state.ds_sel_overlay
    assert set(foregrounds(app.slicerApp.scene)) == {job.evidenceNodes["evidence"].GetID()}
    app.selection.showOverlay(False)
    assert set(foregrounds(app.slicerApp.scene)) == {None}
