"""Slicer-side logic with the warm server: a REAL `serve` process started by ServiceManager (the
real CLI with the model-free test methods registered), on slicer-core's MRML scene. Reuse
across jobs, cancel, restart after a crash, stop, remote mode with upload and consent."""

import os
import signal
import time

import pytest
from slicer_test_utils import (
    listFiles,
    newScene,
    sameRasPointSets,
    segmentVoxelsRas,
    voxelCentersRas,
)

pytest.importorskip("torch")

from DiffusionSegSlicerLib.JobSettings import buildJobRequest, splitPrompts  # noqa: E402
from DiffusionSegSlicerLib.ServiceJob import ServiceSegmentationJob  # noqa: E402
from DiffusionSegSlicerLib.ServiceManager import (  # noqa: E402
    ServiceManager,
    ServiceSettings,
    describeHealth,
)
from serve_helpers import running_server  # noqa: E402
from slicer_worker_methods import RealWorkerLauncher, workerCommand  # noqa: E402
from test_slicer_worker_roundtrip import obliqueSphere, settingsFor  # noqa: E402


@pytest.fixture()
def manager(tmp_path):
    root = tmp_path / "temp"
    root.mkdir()
    manager = ServiceManager(str(root))
    logs = []
    manager.log.connect(lambda level, message: logs.append((level, message)))
    manager.logs = logs
    yield manager
    manager.stop()
    assert listFiles(root) == []  # token folder and every job folder removed


def runJob(scene, volume, manager, settings, serviceSettings=None, launcher=None):
    job = ServiceSegmentationJob(scene, settings, volume, launcher=launcher or RealWorkerLauncher(),
                                 temporaryRoot=manager.temporaryRoot, serviceManager=manager,
                                 serviceSettings=serviceSettings or ServiceSettings("local"))
    logs = []
    job.log.connect(lambda *a: logs.append(a))
    job.start()
    return job, logs


def serverJobFolders(manager):
    return [p for p in os.listdir(manager.temporaryRoot) if not p.startswith("DiffusionSeg-server-")]


def test_local_server_is_started_once_and_reused(manager):
    scene = newScene()
    volume, inside = obliqueSphere(scene)
    job, logs = runJob(scene, volume, manager, settingsFor())
    assert job.waitForFinished(timeout=300) == job.SUCCEEDED, (job.error, logs)
    pid = manager.pid
    (segmentId,) = job.segmentIds
    assert job.segmentationNode.GetSegmentation().GetSegment(segmentId).GetName() == "liver"
    assert sameRasPointSets(segmentVoxelsRas(job.segmentationNode, segmentId), voxelCentersRas(volume, inside))
    second, logs = runJob(scene, volume, manager, settingsFor(prompt="kidney"))
    assert second.waitForFinished(timeout=300) == second.SUCCEEDED, (second.error, logs)
    assert manager.pid == pid  # the same warm server
    health = manager.health()
    assert health["jobs_run"] == 2 and health["jobs"] == 0  # finished jobs were forgotten (files deleted)
    assert "Server: cpu" in describeHealth(health)
    assert serverJobFolders(manager) == []


def test_two_prompts_become_two_named_segments(manager):
    scene = newScene()
    volume, inside = obliqueSphere(scene)
    assert splitPrompts("liver; kidney\n liver \n") == ["liver", "kidney"]
    job, logs = runJob(scene, volume, manager, settingsFor(method="prompt-threshold", prompt="above 0.9; above 0.1",
                                                           intensity="minmax", params={"size": 20}),
                       launcher=RealWorkerLauncher())
    assert job.waitForFinished(timeout=300) == job.SUCCEEDED, (job.error, logs)
    segmentation = job.segmentationNode.GetSegmentation()
    names = [segmentation.GetSegment(s).GetName() for s in job.segmentIds]
    assert names == ["above 0.9", "above 0.1"]
    sphere = segmentVoxelsRas(job.segmentationNode, job.segmentIds[0])
    assert sameRasPointSets(sphere, voxelCentersRas(volume, inside))  # the bright sphere, first prompt wins


def test_cancel_on_the_server_leaves_the_scene_and_the_server(manager):
    scene = newScene()
    volume, _ = obliqueSphere(scene)
    nodesBefore = scene.GetNumberOfNodes()
    job, _ = runJob(scene, volume, manager, settingsFor("slow-bright-threshold", batchSize=1))
    deadline = time.monotonic() + 300
    while job.processEvents() and time.monotonic() < deadline:
        if job.process._jobId and manager.health() and manager.health().get("running"):
            break
        time.sleep(0.05)
    job.cancel()
    assert job.waitForFinished(timeout=300) == job.CANCELLED
    assert scene.GetNumberOfNodes() == nodesBefore
    assert manager.isRunning and manager.health()["running"] is None
    assert serverJobFolders(manager) == []


def finishedJob(manager):
    """A scene, its volume and one finished job: the local server is up."""
    scene = newScene()
    volume, _ = obliqueSphere(scene)
    job, _ = runJob(scene, volume, manager, settingsFor())
    assert job.waitForFinished(timeout=300) == job.SUCCEEDED
    return scene, volume


def test_crashed_server_is_restarted_with_a_message(manager):
    scene, volume = finishedJob(manager)
    first = manager.pid
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while manager.isRunning and time.monotonic() < deadline:
        time.sleep(0.05)
    job, logs = runJob(scene, volume, manager, settingsFor())
    assert job.waitForFinished(timeout=300) == job.SUCCEEDED, (job.error, logs)
    assert manager.pid != first and manager.restarts == 1
    assert any(level == "warning" and "stopped unexpectedly" in message for level, message in manager.logs)


def test_stop_ends_the_server(manager):
    finishedJob(manager)
    pid = manager.pid
    manager.stop()
    assert not manager.isRunning and manager.health() is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_remote_server_gets_the_volume_uploaded_only_with_consent(manager, tmp_path):
    scene = newScene()
    volume, inside = obliqueSphere(scene)
    nodesBefore = scene.GetNumberOfNodes()
    remote = tmp_path / "remote"
    remote.mkdir()
    # A server that may read no path at all: the job only works because the volume is uploaded.
    with running_server(remote, command=workerCommand()) as (ready, token, _):
        settings = ServiceSettings("remote", remoteUrl=ready["url"], remoteToken=token, remoteConsent=False)
        with pytest.raises(ValueError, match="Agree"):
            runJob(scene, volume, manager, settingsFor(), settings)
        assert scene.GetNumberOfNodes() == nodesBefore and serverJobFolders(manager) == []
        settings.remoteConsent = True
        job, logs = runJob(scene, volume, manager, settingsFor(), settings)
        assert job.waitForFinished(timeout=300) == job.SUCCEEDED, (job.error, logs)
        assert any("Uploading" in message for _, message in logs)
        (segmentId,) = job.segmentIds
        assert sameRasPointSets(segmentVoxelsRas(job.segmentationNode, segmentId), voxelCentersRas(volume, inside))
        settings.remoteToken = "wrong-token-wrong-token"
        job, _ = runJob(scene, volume, manager, settingsFor(), settings)
        assert job.waitForFinished(timeout=120) == job.FAILED and job.error.code == "forbidden"
    assert not manager.isRunning  # remote mode never started a local server


def test_several_prompts_in_the_request():
    request = buildJobRequest(settingsFor(prompt="liver;  liver tumour"), "in.nrrd", "out.nrrd")
    assert request.prompts == ["liver", "liver tumour"] and request.prompt is None
    single = buildJobRequest(settingsFor(prompt="liver"), "in.nrrd", "out.nrrd")
    assert single.prompt == "liver" and single.prompts is None
