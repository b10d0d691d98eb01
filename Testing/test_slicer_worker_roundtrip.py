"""Slicer-side logic with the REAL worker process (`python -m DiffusionSegLib run --request`):
export through the storage node -> backend pipeline -> import, on slicer-core's MRML scene."""

import sys
import time

import numpy as np
import pytest
from slicer_test_utils import (
    addVolume,
    listFiles,
    newScene,
    rotation,
    sameRasPointSets,
    segmentVoxelsRas,
    voxelCentersRas,
)

pytest.importorskip("torch")

from DiffusionSegSlicerLib import JobSettings, SegmentationJob  # noqa: E402
from DiffusionSegSlicerLib.Worker import WorkerLauncher  # noqa: E402
from slicer_worker_methods import RealWorkerLauncher  # noqa: E402


def obliqueSphere(scene):
    k, j, i = np.mgrid[0:12, 0:16, 0:20]
    inside = ((i - 9.0) / 6) ** 2 + ((j - 7.0) / 5) ** 2 + ((k - 5.0) / 3) ** 2 < 1
    background = np.random.default_rng(0).integers(0, 200, inside.shape)
    array = np.where(inside, 1000, background).astype(np.int16)
    volume = addVolume(scene, array, spacing=(0.9, 0.9, 2.9), origin=(12.5, -30.0, 5.25),  # square in-plane: no resampling
                       directions=rotation((1, 2, 3), 35), name="Oblique")
    return volume, inside


def settingsFor(method="bright-threshold", **overrides):
    # Slices along k are 20 x 16 voxels: a model side of 20 means no resampling, so the
    # expected voxels are exact.
    values = dict(method=method, prompt="liver", device="cpu", axis="k", intensity="minmax",
                  params={"threshold": 0.5, "size": 20}, fillHoles=False, skipEmptySlices=False)
    values.update(overrides)
    return JobSettings(**values)


def startJob(scene, volume, tmp_path, settings, launcher=None):
    job = SegmentationJob(scene, settings, volume, launcher=launcher or RealWorkerLauncher(),
                          temporaryRoot=str(tmp_path))
    progress, logs = [], []
    job.progress.connect(lambda *a: progress.append(a))
    job.log.connect(lambda *a: logs.append(a))
    job.start()
    return job, progress, logs


def test_real_worker_round_trip_on_oblique_anisotropic_volume(tmp_path):
    scene = newScene()
    volume, inside = obliqueSphere(scene)
    job, progress, logs = startJob(scene, volume, tmp_path, settingsFor())
    assert job.waitForFinished(timeout=300) == job.SUCCEEDED, (job.error, logs)
    assert progress, "the worker reported no progress"
    (segmentId,) = job.segmentIds
    segment = job.segmentationNode.GetSegmentation().GetSegment(segmentId)
    assert segment.GetName() == "liver"
    assert sameRasPointSets(segmentVoxelsRas(job.segmentationNode, segmentId), voxelCentersRas(volume, inside))
    assert listFiles(tmp_path) == []


def test_real_worker_rgb_input(tmp_path):
    scene = newScene()
    rgb = np.zeros((1, 24, 32, 3), np.uint8)
    rgb[0, 6:18, 8:20] = (250, 240, 230)    # a bright square on black
    volume = addVolume(scene, rgb, spacing=(0.3, 0.3, 1.0), name="Photo")
    settings = settingsFor(axis="auto", intensity="auto", params={"threshold": 0.5, "size": 32}, prompt="skin lesion")
    job, _, logs = startJob(scene, volume, tmp_path, settings)
    assert job.waitForFinished(timeout=300) == job.SUCCEEDED, (job.error, logs)
    (segmentId,) = job.segmentIds
    expected = rgb[..., 0] > 128
    assert sameRasPointSets(segmentVoxelsRas(job.segmentationNode, segmentId), voxelCentersRas(volume, expected))


def test_real_worker_cancel_mid_run(tmp_path):
    scene = newScene()
    volume, _ = obliqueSphere(scene)
    nodesBefore = scene.GetNumberOfNodes()
    job, progress, _ = startJob(scene, volume, tmp_path,
                                settingsFor("slow-bright-threshold", batchSize=1, skipEmptySlices=False))
    deadline = time.monotonic() + 120
    while not progress and job.processEvents() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert progress and job.isRunning()
    job.cancel()
    assert job.waitForFinished(timeout=60) == job.CANCELLED
    assert job.process.returnCode in (130, -15), job.process.returnCode
    assert scene.GetNumberOfNodes() == nodesBefore and listFiles(tmp_path) == []


def test_real_worker_errors_are_surfaced_scene_unchanged(tmp_path):
    scene = newScene()
    volume, _ = obliqueSphere(scene)
    nodesBefore = scene.GetNumberOfNodes()
    job, _, _ = startJob(scene, volume, tmp_path, settingsFor(method="no-such-method"))
    assert job.waitForFinished(timeout=300) == job.FAILED
    assert job.error.code == "unknown_method" and job.error.exitCode == 2
    assert "no-such-method" in job.error.message
    job, _, _ = startJob(scene, volume, tmp_path, settingsFor(params={"threshold": 7.0, "size": 20}))
    assert job.waitForFinished(timeout=300) == job.FAILED
    assert job.error.code == "invalid_parameter"
    assert scene.GetNumberOfNodes() == nodesBefore and listFiles(tmp_path) == []


def test_missing_interpreter_fails_before_touching_the_scene(tmp_path):
    scene = newScene()
    volume, _ = obliqueSphere(scene)
    nodesBefore = scene.GetNumberOfNodes()
    launcher = WorkerLauncher(python=str(tmp_path / "no-python"))
    with pytest.raises(OSError):
        startJob(scene, volume, tmp_path, settingsFor(), launcher=launcher)
    with pytest.raises(RuntimeError, match="not found"):
        launcher.checkInterpreter()
    assert scene.GetNumberOfNodes() == nodesBefore and listFiles(tmp_path) == []


def test_worker_launcher_runs_the_backend_module(tmp_path):
    """The default command runs the backend's worker entry, isolated (-I: no cwd, no user site),
    and finds the package through the bootstrap alone."""
    import subprocess

    launcher = WorkerLauncher(python=sys.executable)
    out = subprocess.run(launcher.command("methods", "--json"), env=launcher.environment(), cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    command = launcher.command("run")
    assert command[1] == "-I" and command[-1] == "run" and "DiffusionSegLib.worker_entry" in command[-2]


def test_real_worker_roi_restricts_the_result_to_the_box(tmp_path):
    """ROI markups -> IJK box in the request -> the worker's crop: only the sphere voxels inside
    the box come back, at their RAS positions (checks the IJK convention end to end)."""
    import vtk
    from slicer_test_utils import ijkToRasMatrix

    scene = newScene()
    volume, inside = obliqueSphere(scene)
    lo, hi = np.array([2, 2, 4]), np.array([10, 12, 7])       # i, j, k inclusive: 9 x 11 x 4 voxels
    M = ijkToRasMatrix(volume)
    roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode")
    spacing = np.array(volume.GetSpacing())
    objectToNode = vtk.vtkMatrix4x4()
    for r in range(3):
        for c in range(3):
            objectToNode.SetElement(r, c, M[r, c] / spacing[c])     # ROI axes = volume axes
    roi.GetObjectToNodeMatrix().DeepCopy(objectToNode)
    roi.SetCenter(*(M @ np.r_[(lo + hi) / 2, 1])[:3])
    roi.SetSize(*((hi - lo + 0.5) * spacing))
    settings = settingsFor(params={"threshold": 0.5, "size": 11})   # crop side: no resampling
    job = SegmentationJob(scene, settings, volume, roiNode=roi, launcher=RealWorkerLauncher(),
                          temporaryRoot=str(tmp_path))
    job.start()
    assert job.waitForFinished(timeout=300) == job.SUCCEEDED, job.error
    expected = np.zeros_like(inside)
    expected[lo[2]:hi[2] + 1, lo[1]:hi[1] + 1, lo[0]:hi[0] + 1] = True
    expected &= inside
    assert 0 < expected.sum() < inside.sum()
    (segmentId,) = job.segmentIds
    assert sameRasPointSets(segmentVoxelsRas(job.segmentationNode, segmentId), voxelCentersRas(volume, expected))
