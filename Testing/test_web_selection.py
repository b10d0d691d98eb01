"""The web app's evidence overlay and re-selection slider for a job run by a REAL `serve` process
(the bundle test methods registered): the WebApp is built (so the page with its selection part
builds), the job's evidence shows as the foreground of the app's slice views, and the slider and
Undo steer the result segment through the Slicer module's SelectionLogic. Click mode: left button
presses sent through a slice view's own VTK interactor (as trame-slicer forwards the browser's)
toggle the proposal under them, and do nothing to the selection while the mode is off."""

import re

import pytest
import vtk
from slicer_test_utils import (  # noqa: F401
    newScene,
    sameRasPointSets,
    segmentVoxelsRas,
    voxelCentersRas,
)

pytest.importorskip("trame_slicer")
pytest.importorskip("torch")

from slicer_worker_methods import EvidenceWorkerLauncher  # noqa: E402
from test_slicer_evidence import rasOf, setSegmentMask, threeLevelVolume  # noqa: E402
from test_slicer_service import manager, runJob  # noqa: E402,F401  (fixture)
from test_slicer_service_evidence import evidenceSettings  # noqa: E402

import DiffusionSegWeb  # noqa: E402,F401  (the Slicer module's lib on the path)


@pytest.fixture()
def app(web_app):
    return web_app("local")


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
    # the result first: the evidence overlay starts off, its legend ready for when it is on
    assert foregrounds(app.slicerApp.scene) and set(foregrounds(app.slicerApp.scene)) == {None}
    assert not state.ds_sel_overlay and state.ds_sel_has_overlay and state.ds_sel_kind == "votes"
    legend = state.ds_sel_legend
    assert legend["gradient"].startswith("linear-gradient(to right, rgb(") and legend["text"].startswith("Colour: ")
    assert float(legend["low"]) < float(legend["high"])
    selection.showOverlay(True)
    assert set(foregrounds(app.slicerApp.scene)) == {evidenceId} and state.ds_sel_overlay
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
    assert app.state.ds_sel_kind == "" and app.state.ds_sel_has_overlay and not app.state.ds_sel_overlay
    app.selection.showOverlay(True)
    assert set(foregrounds(app.slicerApp.scene)) == {job.evidenceNodes["evidence"].GetID()}
    app.selection.showOverlay(False)
    assert set(foregrounds(app.slicerApp.scene)) == {None}


def sliceView(app, name):
    return next(v for v in app.slicerApp.view_manager.get_slice_views() if v.name == name)


def clickAt(view, ras):
    """A left click in `view` where it shows the world point `ras`: the view is centred on the
    point, the point mapped to the view's pixels by the slice node's XY-to-RAS matrix, and the
    press and release sent to the view's interactor (trame-slicer's path for browser events)."""
    sliceNode = view.get_view_node()
    sliceNode.JumpSliceByCentering(*ras)
    rasToXy = vtk.vtkMatrix4x4()
    vtk.vtkMatrix4x4.Invert(sliceNode.GetXYToRAS(), rasToXy)
    x, y, z, _ = rasToXy.MultiplyPoint([*ras, 1.0])
    assert abs(z) < 1e-3 and 0 <= x < sliceNode.GetDimensions()[0] and 0 <= y < sliceNode.GetDimensions()[1]
    interactor = view.interactor()
    interactor.SetEventInformation(int(round(x)), int(round(y)), 0, 0)
    interactor.MouseMoveEvent()
    interactor.LeftButtonPressEvent()
    interactor.LeftButtonReleaseEvent()


def test_click_mode_toggles_the_proposal_under_a_slice_view_click(app, manager):
    from trame_slicer.segmentation import (
        SegmentationEffectNoTool,
        SegmentationEffectPaint,
        SegmentationOverwriteMode,
    )

    # As opening a volume does (app.loadVolume): the Segment Editor's effect pipelines are then
    # made for views that exist (made at start-up, before the views, they have no view to paint).
    app.slicerApp.scene.Clear()
    job, volume, sphere, box = finishedJob(app, manager, "grey-proposals")
    seg, (resultId,) = job.segmentationNode, job.segmentIds
    state, selection = app.state, app.selection
    selection.setResult(job)
    app.slicerApp.display_manager.show_volume(volume, do_reset_views=True)

    def result():
        return segmentVoxelsRas(seg, resultId)

    def tableVoxels():   # the page's segment table
        name = seg.GetSegmentation().GetSegment(resultId).GetName()
        return {row["name"]: row["voxels"] for row in state.ds_segments}[name]

    # A user segment and the Segment Editor's paint brush: a click paints it unless click mode is on.
    editor = app.segmentEditorLogic.segmentation_editor
    editor.set_active_segmentation(seg, volume)
    userId = editor.add_empty_segment(segment_name="My edit")
    editor.set_overwrite_mode(SegmentationOverwriteMode.ALLOW_OVERLAP)   # its dab leaves the result be
    editor.set_active_effect_type(SegmentationEffectPaint)
    boxCentre, boxCorner = rasOf(volume, 16, 12, 5), rasOf(volume, 17, 13, 8)

    assert not state.ds_sel_click
    clickAt(sliceView(app, "Red"), boxCentre)   # mode off: the view's own interaction (a paint dab)
    assert sameRasPointSets(result(), voxelCentersRas(volume, sphere | box))
    assert state.ds_sel_message == "" and not state.ds_sel_can_undo
    painted = len(segmentVoxelsRas(seg, userId))
    assert painted > 0, "the control click did not reach the paint effect: the test would prove nothing"

    selection.setClickMode(True)   # the Segment Editor's tool is put down: the click is the mode's
    assert state.ds_sel_click and editor.active_effect_name == SegmentationEffectNoTool.get_effect_name()
    clickAt(sliceView(app, "Red"), boxCentre)   # on the box in slice 5: the box leaves every slice
    pid = int(re.match(r"Region (\d+) removed", state.ds_sel_message).group(1))
    assert state.ds_sel_message == f"Region {pid} removed: {box.sum()} voxel(s) changed."
    assert sameRasPointSets(result(), voxelCentersRas(volume, sphere))
    assert tableVoxels() == sphere.sum() and state.ds_sel_can_undo
    assert len(segmentVoxelsRas(seg, userId)) == painted, "a click-mode click also painted"

    clickAt(sliceView(app, "Green"), boxCorner)  # another view, another voxel of the box: it is back
    assert state.ds_sel_message == f"Region {pid} added: {box.sum()} voxel(s) changed."
    assert sameRasPointSets(result(), voxelCentersRas(volume, sphere | box))
    assert tableVoxels() == (sphere | box).sum()
    selection.undo()
    assert state.ds_sel_message == "Undone." and tableVoxels() == sphere.sum()
    assert sameRasPointSets(result(), voxelCentersRas(volume, sphere))

    outside = rasOf(volume, -3, 8, 5)   # in the Red view, beside the volume
    clickAt(sliceView(app, "Red"), outside)
    assert state.ds_sel_message == "No region under that point."
    assert sameRasPointSets(result(), voxelCentersRas(volume, sphere))

    editor.set_active_effect_type(SegmentationEffectPaint)   # picking a tool ends click mode
    assert not state.ds_sel_click and not selection.clicks.enabled
    clickAt(sliceView(app, "Yellow"), boxCentre)
    assert state.ds_sel_message == "No region under that point."
    assert sameRasPointSets(result(), voxelCentersRas(volume, sphere))
    editor.deactivate_effect()
    selection.setClickMode(True)
    selection.setClickMode(False)   # the button again: the views' own interaction (none without a tool)
    clickAt(sliceView(app, "Yellow"), boxCentre)
    assert not state.ds_sel_click and state.ds_sel_message == "No region under that point."
    assert sameRasPointSets(result(), voxelCentersRas(volume, sphere))

    edited = sphere.copy()
    edited[5] = False   # the user erased a slice: a click refuses, as the slider does
    setSegmentMask(seg, resultId, volume, edited)
    selection.setClickMode(True)
    clickAt(sliceView(app, "Red"), boxCentre)
    assert "edited" in state.ds_sel_message
    assert sameRasPointSets(result(), voxelCentersRas(volume, edited))
    selection.clear()   # a new volume: the mode ends with the result
    assert not state.ds_sel_click and not selection.clicks.enabled


def test_click_mode_needs_proposals(app, manager):
    job, *_ = finishedJob(app, manager, "repaints")
    app.selection.setResult(job)
    app.selection.setClickMode(True)
    assert not app.state.ds_sel_click and not app.selection.clicks.enabled


@pytest.mark.parametrize("first, second", [("grey-proposals", "sdseg"), ("sdseg", "grey-proposals")])
def test_the_slider_steers_the_last_result_of_two_in_one_segmentation(app, manager, first, second):
    """ADZUS-then-SDSeg and SDSeg-then-ADZUS into one segmentation, over the real service: the page's
    slider re-selects the second job's segment with the second job's data; the first is untouched."""
    from DiffusionSegSlicerLib.ServiceJob import ServiceSegmentationJob
    from DiffusionSegSlicerLib.ServiceManager import ServiceSettings

    scene = app.slicerApp.scene
    volume, _array, sphere, box = threeLevelVolume(scene)
    params = {("grey-proposals", 0): {"vote_threshold": 3.5}, ("grey-proposals", 1): {"vote_threshold": 1.5},
              ("sdseg", 0): {"threshold": 0.8}, ("sdseg", 1): {"threshold": 0.8}}
    jobs = []
    for index, method in enumerate((first, second)):
        settings = evidenceSettings(method)
        settings.params = {"size": 20, **params[method, index]}
        job = ServiceSegmentationJob(scene, settings, volume, None, jobs[0].segmentationNode if jobs else None,
                                     launcher=EvidenceWorkerLauncher(), temporaryRoot=manager.temporaryRoot,
                                     serviceManager=manager, serviceSettings=ServiceSettings("local"))
        job.start()
        assert job.waitForFinished(timeout=300) == job.SUCCEEDED, job.error
        app.selection.setResult(job)
        jobs.append(job)
    assert jobs[1].segmentationNode is jobs[0].segmentationNode
    firstId, secondId = jobs[0].segmentIds[0], jobs[1].segmentIds[0]
    firstBefore = segmentVoxelsRas(jobs[0].segmentationNode, firstId)
    assert len(firstBefore) == sphere.sum() and app.state.ds_sel_kind == (
        "probability" if second == "sdseg" else "votes")
    # SDSeg second (sphere): a lower probability threshold adds the box; ADZUS second (sphere and
    # box, every candidate a seed at 1.5): a vote threshold of 3.5 drops the box (contrast 2)
    app.selection.setValue(0.45 if second == "sdseg" else 3.5)
    expected = sphere | box if second == "sdseg" else sphere
    assert app.state.ds_sel_message == f"{box.sum()} voxel(s) changed."
    assert sameRasPointSets(segmentVoxelsRas(jobs[1].segmentationNode, secondId), voxelCentersRas(volume, expected))
    assert sameRasPointSets(segmentVoxelsRas(jobs[0].segmentationNode, firstId), firstBefore)
