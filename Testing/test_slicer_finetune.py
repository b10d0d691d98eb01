"""Learning from corrections from the Slicer side, on slicer-core's MRML scene with the REAL worker
(`python -m DiffusionSegLib train sdseg --init-from ...`): volume + corrected segmentation ->
storage-node export -> fine-tune -> new checkpoint; cancel; refusals before any process starts."""

import json
import os
import sys
import time

import numpy as np
import pytest
from slicer_test_utils import addVolume, listFiles, newScene, rotation

pytest.importorskip("torch")

import slicer  # noqa: E402
import vtk  # noqa: E402
from DiffusionSegSlicerLib import DiffusionSegLogic, FineTuneJob, FineTuneSettings  # noqa: E402
from DiffusionSegSlicerLib.FineTuneLogic import checkOutputFolder, checkSdsegCheckpoint  # noqa: E402
from DiffusionSegSlicerLib.Worker import WorkerLauncher  # noqa: E402
from vtk.util import numpy_support  # noqa: E402

FAST = ["--batch-size", "2", "--threads", "1"]


@pytest.fixture(scope="module")
def tinyCheckpoint(tmp_path_factory):
    """A random tiny SDSeg checkpoint (32 px), saved with the backend's own writer in a second."""
    from test_sdseg_model import save_tiny_checkpoint

    return str(save_tiny_checkpoint(tmp_path_factory.mktemp("sdseg") / "ckpt"))


def correctedCase(scene):
    """An oblique, anisotropic volume with a bright box, and a segmentation of that box (two
    segments, one hidden) made in the scene through Slicer's labelmap import."""
    k, j, i = np.mgrid[0:5, 0:24, 0:28]
    inside = (k >= 1) & (k <= 3) & (j >= 6) & (j < 16) & (i >= 8) & (i < 20)
    rng = np.random.default_rng(0)
    array = np.where(inside, 900, rng.integers(0, 200, inside.shape)).astype(np.int16)
    volume = addVolume(scene, array, spacing=(0.8, 1.1, 3.0), origin=(10.0, -20.0, 4.0),
                       directions=rotation((1, 2, 3), 30), name="Corrected CT")
    labels = np.where(inside, 1, 0).astype(np.uint8)
    labels[0, 0:3, 0:3] = 2      # a second, hidden segment
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    image = vtk.vtkImageData()
    image.SetDimensions(28, 24, 5)
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(labels.ravel(), deep=True))
    labelmap.SetAndObserveImageData(image)
    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    labelmap.SetIJKToRASMatrix(matrix)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    segmentation.SetName("Liver corrected")
    segmentation.CreateDefaultDisplayNodes()
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, segmentation, "")
    scene.RemoveNode(labelmap)
    seg = segmentation.GetSegmentation()
    ids = [seg.GetNthSegmentID(n) for n in range(seg.GetNumberOfSegments())]
    assert len(ids) == 2
    seg.GetSegment(ids[0]).SetName("liver")
    segmentation.GetDisplayNode().SetSegmentVisibility(ids[1], False)
    return volume, segmentation, ids


def sceneNodeIds(scene):
    return sorted(scene.GetNthNode(n).GetID() for n in range(scene.GetNumberOfNodes()))


def realLauncher():
    return WorkerLauncher(sys.executable)


def makeJob(scene, volume, segmentation, tmp_path, checkpoint, output, segmentIds=None, **settings):
    values = dict(checkpoint=checkpoint, output=str(output), steps=2, minutes=0, device="cpu",
                  extraArguments=FAST)
    values.update(settings)
    job = FineTuneJob(scene, FineTuneSettings(**values), volume, segmentation, segmentIds,
                      launcher=realLauncher(), temporaryRoot=str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir(exist_ok=True)
    logs, progress = [], []
    job.log.connect(lambda *a: logs.append(a))
    job.progress.connect(lambda *a: progress.append(a))
    return job, logs, progress


def test_fine_tune_from_the_scene_writes_a_loadable_checkpoint(tmp_path, tinyCheckpoint):
    scene = newScene()
    volume, segmentation, ids = correctedCase(scene)
    nodesBefore = sceneNodeIds(scene)
    output = tmp_path / "tuned"
    output.mkdir()   # an existing empty folder is accepted
    job, logs, _ = makeJob(scene, volume, segmentation, tmp_path, tinyCheckpoint, output)
    finished = []
    job.finished.connect(finished.append)
    job.start()
    assert sceneNodeIds(scene) == nodesBefore     # the export left nothing behind in the scene
    assert job.waitForFinished(timeout=300) == job.SUCCEEDED, (job.error, logs)
    assert finished == [job] and job.outputPath == str(output)
    assert sceneNodeIds(scene) == nodesBefore
    assert listFiles(tmp_path / "tmp") == []
    assert any("slices from 1 cases" in message for _, message in logs), logs
    config = json.loads((output / "config.json").read_text())
    assert config["format"] == "diffusionseg.sdseg" and config["image_size"] == 32
    assert config["split"]["training_cases"] == ["Corrected_CT"]
    card = (output / "README.md").read_text()
    for needle in ("fine-tuned from", "Corrected_CT", "Learning from corrections (3D Slicer)",
                   "volume: Corrected CT", "corrected segmentation: Liver corrected", "segments (foreground): liver"):
        assert needle in card, needle
    # 2 steps from random weights make nothing usable: the worker ends with training_fell_short (exit 8);
    # the checkpoint is kept, flagged in its card, and the panel says so as a warning, not a failure
    assert "FELL SHORT" in card
    assert [m for level, m in logs if level == "warning" and m.startswith("Fine-tuning fell short: SDSeg stage")]
    assert not [m for level, m in logs if level == "error"] and job.warnings
    from DiffusionSegLib.methods.sdseg.checkpoint import load_checkpoint

    model, loaded = load_checkpoint(output)
    assert loaded["scale_factor"] == pytest.approx(json.loads(
        open(os.path.join(tinyCheckpoint, "config.json")).read())["scale_factor"])
    assert model is not None
    assert checkSdsegCheckpoint(str(output))["format"] == "diffusionseg.sdseg"  # offered as the SDSeg model


def test_cancel_mid_run_leaves_no_output_and_no_temporary_files(tmp_path, tinyCheckpoint):
    scene = newScene()
    volume, segmentation, ids = correctedCase(scene)
    nodesBefore = sceneNodeIds(scene)
    output = tmp_path / "never"
    job, logs, _ = makeJob(scene, volume, segmentation, tmp_path, tinyCheckpoint, output,
                           segmentIds=[ids[0]], steps=100000)
    job.start()
    deadline = time.monotonic() + 240
    while job.processEvents() and not any("slices from" in m for _, m in logs):
        assert time.monotonic() < deadline, logs
        time.sleep(0.05)
    assert job.isRunning(), (job.error, logs)
    time.sleep(0.5)   # into the training loop
    job.cancel()
    assert job.waitForFinished(timeout=60) == job.CANCELLED
    assert not job.process.isRunning()
    assert not output.exists() and job.outputPath is None
    assert listFiles(tmp_path / "tmp") == []
    assert sceneNodeIds(scene) == nodesBefore


class NoProcessLauncher(WorkerLauncher):
    def trainCommand(self, *args, **kwargs):   # pragma: no cover - must never be reached
        raise AssertionError("a worker was started for invalid inputs")


def refusal(scene, volume, segmentation, tmp_path, checkpoint, output, segmentIds=None):
    (tmp_path / "tmp").mkdir(exist_ok=True)
    job = FineTuneJob(scene, FineTuneSettings(checkpoint=checkpoint, output=str(output), steps=2, device="cpu"),
                      volume, segmentation, segmentIds, launcher=NoProcessLauncher(),
                      temporaryRoot=str(tmp_path / "tmp"))
    with pytest.raises(ValueError) as info:
        job.start()
    assert job.process is None and job.state == job.IDLE
    assert listFiles(tmp_path / "tmp") == []
    return str(info.value)


def test_bad_inputs_are_refused_before_any_process_starts(tmp_path, tinyCheckpoint):
    scene = newScene()
    volume, segmentation, ids = correctedCase(scene)
    nodesBefore = sceneNodeIds(scene)
    # not an SDSeg checkpoint: a diffusers folder, or no config.json at all
    other = tmp_path / "sd"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
    assert "not an SDSeg checkpoint" in refusal(scene, volume, segmentation, tmp_path, str(other), tmp_path / "o")
    assert "no config.json" in refusal(scene, volume, segmentation, tmp_path, str(tmp_path), tmp_path / "o")
    # output folder exists and is not empty
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    assert "not empty" in refusal(scene, volume, segmentation, tmp_path, tinyCheckpoint, full)
    assert (full / "keep.txt").read_text() == "mine"
    with pytest.raises(ValueError, match="differ"):
        checkOutputFolder(str(tmp_path / "new"), str(tmp_path / "new"))
    # an empty segment, and a segmentation with nothing visible
    segmentation.GetSegmentation().AddEmptySegment("empty", "empty")
    assert "empty" in refusal(scene, volume, segmentation, tmp_path, tinyCheckpoint, tmp_path / "o",
                              segmentIds=["empty"])
    for segmentId in ids:
        segmentation.GetDisplayNode().SetSegmentVisibility(segmentId, False)
    segmentation.GetDisplayNode().SetSegmentVisibility("empty", False)
    assert "no (visible) segment" in refusal(scene, volume, segmentation, tmp_path, tinyCheckpoint, tmp_path / "o")
    assert "no segment nope" in refusal(scene, volume, segmentation, tmp_path, tinyCheckpoint, tmp_path / "o",
                                        segmentIds=["nope"])
    assert not (tmp_path / "o").exists()
    assert sceneNodeIds(scene) == nodesBefore


def test_logic_creates_the_job_with_its_launcher_and_train_arguments(tmp_path):
    from DiffusionSegSlicerLib.WorkerSettings import WorkerPythonSettings

    asked = []
    logic = DiffusionSegLogic(newScene(), temporaryRoot=str(tmp_path),
                              workerSettings=WorkerPythonSettings(confirm=lambda path: asked.append(path) or True))
    settings = FineTuneSettings(checkpoint="/c", output="/o", steps=50, minutes=2.5, pythonInterpreter=sys.executable)
    job = logic.createFineTuneJob(settings, None, None)
    assert job.launcher.python == sys.executable and job.temporaryRoot == str(tmp_path)
    arguments = settings.trainArguments("I", "M", "O")
    assert arguments[:6] == ["--init-from", "/c", "--images", "I", "--masks", "M"]
    joined = " ".join(arguments)
    assert "--mask-map >0" in joined and "--steps 50" in joined and "--max-minutes 2.5" in joined
    assert "--val-fraction 0" in joined and "--val-every 50" in joined
    assert asked == [sys.executable]   # a worker Python not chosen in the settings is confirmed first
    process = WorkerLauncher(sys.executable).trainCommand("sdseg", arguments, "cpu", str(tmp_path))
    assert process.command[-len(arguments) - 2:-len(arguments)] == ["train", "sdseg"]
    assert process.cwd == str(tmp_path)


def test_segments_are_exported_on_the_volume_grid(tmp_path):
    """The mask file has exactly the volume file's grid (oblique, anisotropic) and the box voxels."""
    import SimpleITK as sitk
    from DiffusionSegSlicerLib.FineTuneLogic import exportSegmentsAsLabelmap
    from DiffusionSegSlicerLib.VolumeIO import exportVolume

    scene = newScene()
    volume, segmentation, ids = correctedCase(scene)
    nodesBefore = sceneNodeIds(scene)
    exportVolume(volume, str(tmp_path / "image.nrrd"))
    voxels = exportSegmentsAsLabelmap(scene, segmentation, [ids[0]], volume, str(tmp_path / "mask.nrrd"))
    assert voxels == 3 * 10 * 12 and sceneNodeIds(scene) == nodesBefore
    image, mask = sitk.ReadImage(str(tmp_path / "image.nrrd")), sitk.ReadImage(str(tmp_path / "mask.nrrd"))
    assert mask.GetSize() == image.GetSize() == (28, 24, 5)
    np.testing.assert_allclose(mask.GetOrigin(), image.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(mask.GetSpacing(), image.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(mask.GetDirection(), image.GetDirection(), atol=1e-6)
    values = sitk.GetArrayFromImage(mask)
    pixels = sitk.GetArrayFromImage(image)
    assert np.array_equal(values > 0, pixels == 900)
