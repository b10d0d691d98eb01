"""The module's self-test scenario (DiffusionSegSlicerLib.SelfTest, what DiffusionSegTest runs
inside Slicer) executed headless on slicer-core: tiny model built in the worker's interpreter,
generated oblique volume, real worker process, import, geometry check."""

import os

import pytest
from slicer_test_utils import listFiles, newScene

pytest.importorskip("torch")

from DiffusionSegSlicerLib.Logic import DiffusionSegLogic  # noqa: E402
from DiffusionSegSlicerLib.SelfTest import runEndToEndScenario  # noqa: E402
from slicer_worker_methods import RealWorkerLauncher, SlowBrightThreshold  # noqa: E402

from DiffusionSegLib.methods import available_methods  # noqa: E402


class TestMethodsLogic(DiffusionSegLogic):
    """The logic with the model-free test method visible in-process and in the worker."""

    __test__ = False

    @property
    def methods(self):
        from fake_methods import BrightThreshold

        return {"bright-threshold": BrightThreshold.info, "slow-bright-threshold": SlowBrightThreshold.info}

    def launcher(self, settings):
        return RealWorkerLauncher(settings.pythonInterpreter)


@pytest.mark.slow
def test_selftest_scenario_runs_end_to_end(tmp_path):
    scene = newScene()
    logic = TestMethodsLogic(scene, temporaryRoot=str(tmp_path))
    messages = []
    job = runEndToEndScenario(scene, temporaryRoot=str(tmp_path), method="bright-threshold",
                              log=messages.append, logic=logic)
    assert job.state == job.SUCCEEDED and job.segmentationNode is not None
    assert any("tiny model" in m for m in messages)
    assert listFiles(tmp_path) == [], "job folder or tiny model left behind"


REAL = [name for name, cls in available_methods().items() if not cls.info.needs_checkpoint]


@pytest.mark.slow
@pytest.mark.skipif(not REAL, reason="no checkpoint-free diffusion method registered yet")
def test_selftest_scenario_with_a_real_diffusion_method(tmp_path):
    scene = newScene()
    job = runEndToEndScenario(scene, temporaryRoot=str(tmp_path), method=REAL[0], log=lambda m: None)
    assert job.state == job.SUCCEEDED
    assert listFiles(tmp_path) == []


@pytest.mark.skipif(not [n for n, c in available_methods().items() if c.info.default_model],
                    reason="no method with a model registered yet")
def test_bad_model_folder_is_reported_and_scene_unchanged(tmp_path):
    from DiffusionSegSlicerLib import JobFailed, JobSettings
    from DiffusionSegSlicerLib.SelfTest import addTestVolume

    scene = newScene()
    name = next(n for n, c in available_methods().items() if c.info.default_model)
    logic = DiffusionSegLogic(scene, temporaryRoot=str(tmp_path))
    volume = addTestVolume(scene)
    nodesBefore = scene.GetNumberOfNodes()
    settings = JobSettings(method=name, prompt="liver", model=str(tmp_path / "no-such-model"), device="cpu")
    with pytest.raises(JobFailed) as failure:
        logic.segment(settings, volume, timeout=600)
    assert failure.value.code == "model_not_found" and failure.value.exitCode == 4
    assert "no-such-model" in failure.value.message
    assert scene.GetNumberOfNodes() == nodesBefore and listFiles(tmp_path) == []
    assert not os.path.exists(tmp_path / "no-such-model")
