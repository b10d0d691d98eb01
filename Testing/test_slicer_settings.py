"""Panel settings -> job request, and the settings' JSON round trip (QSettings, parameter node)."""

import pytest
import slicer_test_utils  # noqa: F401  (puts the module folder on sys.path)
from DiffusionSegSlicerLib.JobSettings import JobSettings, buildJobRequest
from DiffusionSegSlicerLib.Process import parseEventLine, workerEnvironment

from DiffusionSegLib.contract.errors import InvalidParameter
from DiffusionSegLib.methods.base import MethodInfo, Param

INFO = MethodInfo(
    name="toy", label="Toy", description="A toy method.", prompt="required", needs_checkpoint=False,
    default_model="some/model", prompt_examples=("liver",),
    params=(Param("steps", "int", 10, "Steps", minimum=1, maximum=50),
            Param("mode", "choice", "fast", "Mode", choices=("fast", "slow"))))


def test_request_from_settings_has_the_contract_shape():
    settings = JobSettings(method="toy", prompt="  liver tumour ", device="cpu", params={"steps": "12", "stale": 1},
                           axis="coronal", skipEmptySlices=False, sliceRange=[3, 9], seed=7, batchSize=2)
    request = buildJobRequest(settings, "/t/in.nrrd", "/t/out.nrrd", ([1, 2, 3], [4, 5, 6]), INFO).to_dict()
    assert request["version"] == 2 and request["evidence"] is True and request["method"] == "toy"
    assert request["prompt"] == "liver tumour" and request["model"] is None and request["device"] == "cpu"
    assert request["params"] == {"steps": 12, "mode": "fast"}
    assert request["roi"] == {"ijk_min": [1, 2, 3], "ijk_max": [4, 5, 6]}
    assert request["slice_range"] == [3, 9] and request["seed"] == 7
    assert request["pipeline"] == {"axis": "coronal", "intensity": "auto", "skip_empty_slices": False,
                                   "fill_holes": True, "largest_component": False, "batch_size": 2}


def test_request_rejects_bad_parameter_and_missing_prompt():
    with pytest.raises(InvalidParameter):
        buildJobRequest(JobSettings(method="toy", prompt="x", params={"steps": 99}), "i", "o", None, INFO)
    with pytest.raises(ValueError, match="needs a text prompt"):
        buildJobRequest(JobSettings(method="toy", prompt="  "), "i", "o", None, INFO)


def test_settings_json_round_trip_and_tolerance():
    settings = JobSettings(method="toy", prompt="kidney", model="/models/x", device="cuda",
                           params={"steps": 3}, sliceRange=[1, 2], pythonInterpreter="/opt/conda/bin/python")
    assert JobSettings.fromJson(settings.toJson()) == settings
    stale = JobSettings.fromDict({"device": "tpu", "seed": "x", "unknown": 1, "fillHoles": False})
    assert stale.device == "auto" and stale.seed == 0 and stale.fillHoles is False
    assert JobSettings.fromJson("{not json") == JobSettings()


def test_event_lines_and_worker_environment():
    assert parseEventLine('{"event": "progress", "stage": "s", "done": 1, "total": 2}')["stage"] == "s"
    assert parseEventLine("Some library warning") == {"event": "log", "level": "info", "message": "Some library warning"}
    assert parseEventLine("[1, 2]")["event"] == "log"
    assert parseEventLine("   ") is None
    env = workerEnvironment({"PYTHONHOME": "/slicer", "PYTHONPATH": "/slicer/lib", "PATH": "/bin"}, "/ext", True, "cpu")
    assert "PYTHONHOME" not in env and env["PYTHONPATH"] == "/ext" and env["CUDA_VISIBLE_DEVICES"] == "-1"
    env = workerEnvironment({"PYTHONPATH": "/slicer/lib"}, "/ext", False)
    assert env["PYTHONPATH"].split(":") == ["/ext", "/slicer/lib"] and "CUDA_VISIBLE_DEVICES" not in env


def test_stored_method_parameter_values_fall_back_to_defaults():
    from DiffusionSegSlicerLib.JobSettings import storedParameterValue

    steps, mode = (p.to_dict() for p in INFO.params)
    assert storedParameterValue(steps, {"steps": 20}) == 20
    assert storedParameterValue(steps, {"steps": 99}) == 10        # out of range now
    assert storedParameterValue(steps, {"steps": "abc"}) == 10
    assert storedParameterValue(mode, {"mode": "slow"}) == "slow"
    assert storedParameterValue(mode, {"mode": "gone"}) == "fast"  # choice removed in a new version
    assert storedParameterValue(mode, {}) == "fast"


def test_intensity_presets_come_from_the_backend_data():
    from DiffusionSegSlicerLib.Logic import intensityPresets

    presets = intensityPresets()
    assert presets["auto"] and "ct-soft-tissue" in presets and "mr" in presets


def test_empty_slice_range_is_refused_before_any_process():
    with pytest.raises(ValueError, match="slice range"):
        buildJobRequest(JobSettings(method="toy", prompt="x", sliceRange=[9, 3]), "i", "o", None, INFO)


def test_request_for_every_registered_method_from_its_metadata():
    """Whatever methods the backend registers, defaults from their metadata make a valid request
    (the panel builds its parameter widgets from the same data)."""
    from DiffusionSegSlicerLib.Logic import methodCatalog

    from DiffusionSegLib.contract.request import JobRequest

    catalog = methodCatalog()
    for name, info in catalog.items():
        params = {p.name: p.default for p in info.params}
        settings = JobSettings(method=name, prompt=(info.prompt_examples or ("liver",))[0], params=params)
        request = buildJobRequest(settings, "/t/in.nrrd", "/t/out.nrrd", None, info)
        JobRequest.from_dict(request.to_dict())     # the worker's own validation accepts it
        for param in info.params:
            assert param.to_dict()["type"] in ("int", "float", "bool", "choice", "str")
