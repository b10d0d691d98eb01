"""Slicer-side job logic on slicer-core's real MRML scene, with a fake worker process that
speaks the job contract (the real-worker round trip is in test_slicer_worker_roundtrip.py)."""

import numpy as np
import psutil
import pytest
import slicer  # noqa: E402
from DiffusionSegSlicerLib import JobSettings, SegmentationJob  # noqa: E402
from slicer_test_utils import (
    FakeWorkerLauncher,
    addVolume,
    listFiles,
    newScene,
    rotation,
    sameRasPointSets,
    segmentVoxelsRas,
    voxelCentersRas,
)


def obliqueVolume(scene):
    """20x16x12 voxels, anisotropic spacing, rotated about a non-axis direction; values are
    100 inside a sphere, 250 inside a smaller sphere, 0 outside (defined in voxel space)."""
    k, j, i = np.mgrid[0:12, 0:16, 0:20]
    r2 = ((i - 9.0) / 6) ** 2 + ((j - 7.0) / 5) ** 2 + ((k - 5.0) / 3) ** 2
    array = np.where(r2 < 1, 100, 0).astype(np.int16)
    array[r2 < 0.3] = 250
    array[0, 0, 0] = 100   # one corner voxel: catches any flip of an axis
    return addVolume(scene, array, spacing=(0.7, 1.3, 2.9), origin=(12.5, -30.0, 5.25),
                     directions=rotation((1, 2, 3), 35), name="Oblique"), array


def runJob(scene, volume, tmp_path, settings, **kwargs):
    job = SegmentationJob(scene, settings, volume, launcher=FakeWorkerLauncher(),
                          temporaryRoot=str(tmp_path), **kwargs)
    events = {"progress": [], "log": [], "finished": []}
    job.progress.connect(lambda *a: events["progress"].append(a))
    job.log.connect(lambda *a: events["log"].append(a))
    job.finished.connect(lambda j: events["finished"].append(j))
    job.start()
    job.waitForFinished(timeout=120)
    return job, events


def test_oblique_anisotropic_round_trip_lands_at_input_ras_positions(tmp_path):
    scene = newScene()
    volume, array = obliqueVolume(scene)
    settings = JobSettings(method="fake", prompt="liver", params={"threshold": 50, "names": ["liver", "liver tumour"]})
    job, events = runJob(scene, volume, tmp_path, settings)
    assert job.state == job.SUCCEEDED, job.error
    assert events["finished"] == [job]
    assert events["progress"][-1][:3] == ("segment", 12, 12)
    assert any("stray line" in message for _, message in events["log"])
    seg = job.segmentationNode
    assert seg.GetScene() is scene and seg.GetName() == "Oblique liver"
    segmentation = seg.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 2
    byName = {segmentation.GetSegment(i).GetName(): i for i in job.segmentIds}
    assert set(byName) == {"liver", "liver tumour"}
    # Label 1 = 50 < value <= 100, label 2 = value > 100; compare voxel centres in RAS.
    assert sameRasPointSets(segmentVoxelsRas(seg, byName["liver"]), voxelCentersRas(volume, array == 100))
    assert sameRasPointSets(segmentVoxelsRas(seg, byName["liver tumour"]), voxelCentersRas(volume, array == 250))
    # Reference geometry and subject hierarchy placement.
    assert seg.GetNodeReferenceID(seg.GetReferenceImageGeometryReferenceRole()) == volume.GetID()
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    assert sh.GetItemParent(sh.GetItemByDataNode(seg)) == sh.GetItemParent(sh.GetItemByDataNode(volume))
    assert listFiles(tmp_path) == []


def test_rgb_vector_volume_input(tmp_path):
    scene = newScene()
    rgb = np.zeros((1, 24, 32, 3), np.uint8)
    rgb[0, 5:15, 10:20, 0] = 200          # a red square
    rgb[0, :, :, 2] = 90
    volume = addVolume(scene, rgb, spacing=(0.25, 0.25, 1), name="Dermoscopy")
    assert volume.IsA("vtkMRMLVectorVolumeNode")
    job, _ = runJob(scene, volume, tmp_path, JobSettings(method="fake", prompt="skin lesion"))
    assert job.state == job.SUCCEEDED, job.error
    (segmentId,) = job.segmentIds
    points = segmentVoxelsRas(job.segmentationNode, segmentId)
    assert sameRasPointSets(points, voxelCentersRas(volume, rgb[..., 0] > 128))


def test_roi_becomes_ijk_box_in_request(tmp_path):
    """A markups ROI aligned with an oblique volume maps to exactly the voxel box it covers; an
    ROI away from the volume is refused before anything starts."""
    import vtk
    from DiffusionSegSlicerLib.VolumeIO import roiToIjkBox
    from slicer_test_utils import ijkToRasMatrix

    scene = newScene()
    volume, _ = obliqueVolume(scene)
    M = ijkToRasMatrix(volume)
    spacing = np.array(volume.GetSpacing())
    roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode")
    objectToNode = vtk.vtkMatrix4x4()
    for r in range(3):
        for c in range(3):
            objectToNode.SetElement(r, c, M[r, c] / spacing[c])    # ROI axes = volume axes
    roi.GetObjectToNodeMatrix().DeepCopy(objectToNode)
    lo, hi = np.array([2, 3, 1]), np.array([5, 9, 2])               # voxels i 2..5, j 3..9, k 1..2
    roi.SetCenter(*(M @ np.r_[(lo + hi) / 2, 1])[:3])
    roi.SetSize(*((hi - lo + 0.6) * spacing))
    assert roiToIjkBox(roi, volume) == ([2, 3, 1], [5, 9, 2])
    roi.SetCenter(1000, 1000, 1000)
    with pytest.raises(ValueError, match="does not overlap"):
        roiToIjkBox(roi, volume)


def test_cancel_mid_run_kills_tree_leaves_scene_and_disk_clean(tmp_path):
    scene = newScene()
    volume, _ = obliqueVolume(scene)
    nodesBefore = scene.GetNumberOfNodes()
    job = SegmentationJob(scene, JobSettings(method="fake", params={"mode": "slow"}), volume,
                          launcher=FakeWorkerLauncher(), temporaryRoot=str(tmp_path))
    logs, progress = [], []
    job.log.connect(lambda level, message: logs.append(message))
    job.progress.connect(lambda *a: progress.append(a))
    job.start()
    assert job.isRunning() and listFiles(tmp_path)
    import time
    deadline = time.monotonic() + 60
    while not progress and time.monotonic() < deadline:
        job.processEvents()
        time.sleep(0.05)
    assert progress, "the worker never reported progress"
    childPid = int(next(m for m in logs if m.startswith("child ")).split()[1])
    workerPid = job.process.pid
    job.cancel()
    assert job.waitForFinished(timeout=60) == job.CANCELLED
    assert job.error is None and job.segmentationNode is None
    assert scene.GetNumberOfNodes() == nodesBefore
    assert listFiles(tmp_path) == []
    for pid in (workerPid, childPid):
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


@pytest.mark.parametrize("mode, code, text", [
    ("crash", "worker_crashed", "CUDA driver exploded"),
    ("error", "model_not_found", "Check the model path"),
    ("noresult", "no_result", ""),
])
def test_worker_failure_is_surfaced_and_scene_unchanged(tmp_path, mode, code, text):
    scene = newScene()
    volume, _ = obliqueVolume(scene)
    nodesBefore = scene.GetNumberOfNodes()
    job, events = runJob(scene, volume, tmp_path, JobSettings(method="fake", params={"mode": mode}))
    assert job.state == job.FAILED
    assert job.error.code == code
    assert text in str(job.error)
    assert events["finished"] == [job]
    assert scene.GetNumberOfNodes() == nodesBefore
    assert listFiles(tmp_path) == []


def test_empty_result_adds_no_node(tmp_path):
    scene = newScene()
    volume, _ = obliqueVolume(scene)
    nodesBefore = scene.GetNumberOfNodes()
    job, events = runJob(scene, volume, tmp_path, JobSettings(method="fake", params={"mode": "empty"}))
    assert job.state == job.SUCCEEDED and job.segmentationNode is None
    assert scene.GetNumberOfNodes() == nodesBefore
    assert any(level == "warning" for level, _ in events["log"])
    # the worker's own warning event reaches the log and the job (the panel's message area)
    assert job.warnings == ["The result is empty: no slice had evidence above the thresholds."]
    assert ("warning", job.warnings[0]) in events["log"]


def test_bad_input_raises_before_any_process_or_file(tmp_path):
    scene = newScene()
    empty = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    job = SegmentationJob(scene, JobSettings(method="fake"), empty, launcher=FakeWorkerLauncher(),
                          temporaryRoot=str(tmp_path))
    with pytest.raises(ValueError, match="no image data"):
        job.start()
    assert job.process is None and listFiles(tmp_path) == []


def test_cancel_kills_a_worker_that_ignores_sigterm(tmp_path):
    """A hung worker (SIGTERM ignored) is killed after the grace period, children included."""
    import sys
    import time

    from DiffusionSegSlicerLib.Process import WorkerProcess

    code = ("import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "c = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
            "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)']); "
            "print('{\"event\": \"log\", \"level\": \"info\", \"message\": \"child %d\"}' % c.pid, flush=True); "
            "time.sleep(120)")
    process = WorkerProcess([sys.executable, "-c", code])
    process.start()
    deadline = time.monotonic() + 60
    events = []
    while not events and time.monotonic() < deadline:
        events = process.readEvents()
        time.sleep(0.05)
    childPid = int(events[0]["message"].split()[1])
    process.cancel(gracePeriod=0.5)
    assert process.isRunning(), "cancel() returns before the kill (it must not block the GUI)"
    assert process.wait(timeout=30) == -9
    deadline = time.monotonic() + 10
    while psutil.pid_exists(childPid) and psutil.Process(childPid).status() != psutil.STATUS_ZOMBIE \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not psutil.pid_exists(childPid) or psutil.Process(childPid).status() == psutil.STATUS_ZOMBIE


def test_a_failing_slot_does_not_break_the_job(tmp_path):
    scene = newScene()
    volume, _ = obliqueVolume(scene)
    job = SegmentationJob(scene, JobSettings(method="fake", prompt="liver"), volume,
                          launcher=FakeWorkerLauncher(), temporaryRoot=str(tmp_path))

    def broken(*args):
        raise RuntimeError("display widget gone")

    job.progress.connect(broken)
    job.log.connect(broken)
    job.start()
    assert job.waitForFinished(timeout=120) == job.SUCCEEDED
    assert job.segmentationNode is not None and listFiles(tmp_path) == []
