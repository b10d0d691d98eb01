import numpy as np
import pytest
import SimpleITK as sitk
from fake_methods import BrightThreshold, CancelsItself
from helpers import ct_like_volume, rgb_image

import DiffusionSegLib.methods as registry
from DiffusionSegLib.contract.errors import (
    InvalidParameter,
    InvalidRequest,
    JobCancelled,
    UnknownMethod,
)
from DiffusionSegLib.contract.request import JobRequest, PipelineOptions
from DiffusionSegLib.jobs.job import run_job


@pytest.fixture()
def fake_methods(monkeypatch):
    methods = dict(registry.available_methods())
    methods.update({"bright-threshold": BrightThreshold, "cancels-itself": CancelsItself})
    monkeypatch.setattr(registry, "_REGISTRY", methods)


def _run(tmp_path, image, **overrides):
    source = tmp_path / "in.nrrd"
    sitk.WriteImage(image, str(source))
    events = []
    values = {"input": str(source), "output": str(tmp_path / "out.nrrd"), "method": "bright-threshold",
              "device": "cpu", **overrides}
    request = JobRequest.from_dict(values)
    result = run_job(request, events.append)
    return result, events, sitk.ReadImage(result.output), sitk.ReadImage(str(source))


def test_bright_structure_lands_at_the_same_physical_points(tmp_path, fake_methods):
    image = ct_like_volume()
    result, events, labels, source = _run(tmp_path, image, params={"threshold": 0.75},
                                          pipeline={"fill_holes": False, "skip_empty_slices": False})
    values = sitk.GetArrayFromImage(source)
    expected = values > 140  # HU above 0.75 of the soft-tissue window (-160…240)
    predicted = sitk.GetArrayFromImage(labels) > 0
    agreement = (predicted == expected).mean()
    assert agreement > 0.97  # only resampling at the blob's edge may differ
    assert predicted.sum() > 0
    np.testing.assert_allclose(labels.GetDirection(), source.GetDirection(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(labels.GetOrigin(), source.GetOrigin(), rtol=0, atol=1e-12)
    kinds = [e["event"] for e in events]
    assert kinds.count("result") == 1 and "progress" in kinds
    segment_events = [e for e in events if e.get("stage") == "segment"]
    assert segment_events[-1]["done"] == segment_events[-1]["total"] == 9
    assert events[-1]["segments"] == [{"label": 1, "name": "Threshold (test)"}]


def test_roi_and_slice_range_leave_everything_else_background(tmp_path, fake_methods):
    result, _, labels, source = _run(tmp_path, ct_like_volume(), params={"threshold": 0.3},
                                     roi={"ijk_min": [0, 0, 0], "ijk_max": [19, 35, 8]}, slice_range=[2, 4],
                                     prompt="soft tissue")
    array = sitk.GetArrayFromImage(labels)
    assert array[:2].sum() == 0 and array[5:].sum() == 0 and array[:, :, 20:].sum() == 0
    assert array[2:5, :, :20].sum() > 0
    assert result.segments == [{"label": 1, "name": "soft tissue"}]


def test_rgb_image_and_letterbox_padding(tmp_path, fake_methods):
    BrightThreshold.seen_valid.clear()
    source = tmp_path / "cell.png"
    sitk.WriteImage(rgb_image(), str(source))
    events = []
    request = JobRequest(input=str(source), output=str(tmp_path / "cell-seg.nrrd"), method="bright-threshold",
                         device="cpu", params={"threshold": 0.6}, pipeline=PipelineOptions(fill_holes=False))
    run_job(request, events.append)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "cell-seg.nrrd")))
    assert labels.shape == (50, 70)
    assert labels[25, 35] == 0 and labels[2, 2] == 1  # dark disc vs bright background
    valid = BrightThreshold.seen_valid[-1][0]
    assert not valid[0].any() and valid[16].all()  # 50×70 → 23×32 centred in 32×32


def test_skipped_empty_slices_are_background(tmp_path, fake_methods):
    array = sitk.GetArrayFromImage(ct_like_volume())
    array[:3] = -1000
    image = sitk.GetImageFromArray(array)
    result, events, labels, _ = _run(tmp_path, image, params={"threshold": 0.3})
    assert sitk.GetArrayFromImage(labels)[:3].sum() == 0
    assert events[-1]["slices_skipped"] == 3 and events[-1]["slices_segmented"] == 6


def test_cancel_during_a_batch_writes_nothing(tmp_path, fake_methods):
    with pytest.raises(JobCancelled):
        _run(tmp_path, ct_like_volume(), method="cancels-itself")
    assert not (tmp_path / "out.nrrd").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["in.nrrd"]


def test_request_validation(tmp_path, fake_methods):
    with pytest.raises(UnknownMethod, match="Available methods"):
        _run(tmp_path, ct_like_volume(), method="nope")
    with pytest.raises(InvalidParameter, match="threshold"):
        _run(tmp_path, ct_like_volume(), params={"threshold": 3})
    with pytest.raises(InvalidParameter, match="no parameter"):
        _run(tmp_path, ct_like_volume(), params={"tau": 1})
    with pytest.raises(InvalidRequest, match="version"):
        JobRequest.from_dict({"version": 99, "input": "a", "output": "b", "method": "c"})
    with pytest.raises(InvalidRequest, match="Unknown request field"):
        JobRequest.from_dict({"input": "a", "output": "b", "method": "c", "colour": 1})
    with pytest.raises(InvalidRequest, match="preset"):
        JobRequest.from_dict({"input": "a", "output": "b", "method": "c", "pipeline": {"intensity": "x"}})
    with pytest.raises(InvalidRequest, match="Output folder"):
        _run(tmp_path, ct_like_volume(), output=str(tmp_path / "no" / "out.nrrd"))


def test_request_round_trips_through_json(tmp_path):
    request = JobRequest(input="in.nrrd", output="out.nrrd", method="adzus", prompt="liver",
                         params={"kl_threshold": 1.0}, roi={"ijk_min": [1, 2, 3], "ijk_max": [4, 5, 6]},
                         slice_range=[1, 2], pipeline=PipelineOptions(axis="coronal", intensity="ct-liver"))
    path = tmp_path / "job.json"
    request.save(path)
    assert JobRequest.load(path) == request


def test_malformed_values_are_request_errors_not_crashes(tmp_path, fake_methods):
    from DiffusionSegLib.cli.arguments import parse_roi as _parse_roi
    from DiffusionSegLib.cli.arguments import parse_slices as _parse_slices

    with pytest.raises(InvalidRequest, match="--roi"):
        _parse_roi("1,2,a,4,5,6")
    with pytest.raises(InvalidRequest, match="--slices"):
        _parse_slices("three:four")
    with pytest.raises(InvalidRequest, match="true or false"):
        JobRequest.from_dict({"input": "a", "output": "b", "method": "c", "pipeline": {"fill_holes": "false"}})
    with pytest.raises(InvalidRequest, match="seed"):
        JobRequest.from_dict({"input": "a", "output": "b", "method": "c", "seed": "1"})
    # a 2D-only output format for a 3D input is refused before the method runs
    BrightThreshold.seen_valid.clear()
    with pytest.raises(InvalidRequest, match="2D labelmap"):
        _run(tmp_path, ct_like_volume(), output=str(tmp_path / "out.png"))
    assert BrightThreshold.seen_valid == [] and [p.name for p in tmp_path.iterdir()] == ["in.nrrd"]
