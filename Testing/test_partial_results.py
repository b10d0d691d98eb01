"""Results as they come: the `partial` event (contract/partial.py) — its encoding on every slice
axis, the refusal of malformed events, a job's partial events adding up to its labelmap, several
prompts, a cancelled job, and the events over `serve`'s HTTP stream."""

from __future__ import annotations

import base64
import zlib

import numpy as np
import pytest
import SimpleITK as sitk
from fake_methods import BrightThreshold, CancelsItself
from helpers import ct_like_volume
from serve_helpers import running_server

import DiffusionSegLib.methods as registry
from DiffusionSegLib.contract.errors import JobCancelled
from DiffusionSegLib.contract.partial import MAX_MASK_BYTES, apply_partial, decode_partial, partial_event
from DiffusionSegLib.contract.request import JobRequest
from DiffusionSegLib.jobs.job import run_job
from DiffusionSegLib.serve.client import ServiceClient


@pytest.fixture()
def fake_methods(monkeypatch):
    methods = dict(registry.available_methods())
    methods.update({"bright-threshold": BrightThreshold, "cancels-itself": CancelsItself})
    monkeypatch.setattr(registry, "_REGISTRY", methods)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_events_rebuild_the_slices_on_every_axis(axis):
    rng = np.random.default_rng(axis)
    labels = np.zeros((7, 9, 11), np.uint16)
    labels[2:6, 3:8, 1:9] = rng.integers(0, 3, size=(4, 5, 8))
    target = np.full(labels.shape, 0, np.uint8)
    target[labels.shape[0] - 1] = 5      # another segment's voxels: never touched
    for index in range(labels.shape[axis]):
        event = partial_event(labels, axis, [index])
        apply_partial(event, target)
    expected = (labels > 0).astype(np.uint8)
    expected[labels.shape[0] - 1][expected[labels.shape[0] - 1] == 0] = 5
    assert (labels > 0).sum() > 20 and np.array_equal(target, expected)
    empty = partial_event(np.zeros_like(labels), axis, [0, 1])
    assert empty["mask"] is None and empty["box"] is None and decode_partial(empty, labels.shape)[2] is None


def test_a_slice_reported_again_replaces_its_earlier_preview():
    target = np.zeros((3, 4, 4), np.uint8)
    first = np.zeros((3, 4, 4), np.uint8)
    first[1, :2, :2] = 1
    apply_partial(partial_event(first, 0, [1], label=2), target)
    second = np.zeros_like(first)
    second[1, 3, 3] = 1
    assert apply_partial(partial_event(second, 0, [1], label=2), target) == 1
    assert np.argwhere(target == 2).tolist() == [[1, 3, 3]]


def test_malformed_events_are_refused_before_anything_is_written():
    labels = np.zeros((4, 6, 6), np.uint16)
    labels[1, 2:4, 2:4] = 1
    good = partial_event(labels, 0, [1])
    target = np.zeros(labels.shape, np.uint8)
    bad = [{**good, "axis": 3}, {**good, "slices": [4]}, {**good, "plane": [6, 7]},
           {**good, "box": [0, 7, 0, 2]},
           {**good, "mask": base64.b64encode(zlib.compress(b"\xff" * 10_000)).decode()}]   # inflates past its box
    for event in bad:
        with pytest.raises(ValueError):
            apply_partial(event, target)
    assert not target.any()
    apply_partial(good, target)
    assert target.sum() == 4


def test_a_preview_too_large_to_send_is_omitted(monkeypatch):
    import DiffusionSegLib.contract.partial as partial

    noise = (np.random.default_rng(0).random((2, 64, 64)) > 0.5).astype(np.uint16)
    monkeypatch.setattr(partial, "MAX_MASK_BYTES", 100)
    event = partial.partial_event(noise, 0, [0, 1])
    assert event["omitted"] and event["mask"] is None and event["box"] is not None
    target = np.ones(noise.shape, np.uint8)
    assert partial.apply_partial(event, target) == 0 and target.all()   # the old preview stays
    assert MAX_MASK_BYTES >= 1 << 20


def _job(tmp_path, image, partial=True, **overrides):
    source = tmp_path / "in.nrrd"
    sitk.WriteImage(image, str(source))
    events = []
    values = {"input": str(source), "output": str(tmp_path / "out.nrrd"), "method": "bright-threshold",
              "device": "cpu", "params": {"threshold": 0.75},
              "pipeline": {"fill_holes": False, "skip_empty_slices": False}, **overrides}
    result = run_job(JobRequest.from_dict(values), events.append, partial_results=partial)
    return result, events, sitk.GetArrayFromImage(sitk.ReadImage(result.output))


@pytest.mark.parametrize("axis", ["axial", "coronal"])
def test_a_jobs_partial_events_add_up_to_its_labelmap(tmp_path, fake_methods, axis):
    result, events, labels = _job(tmp_path, ct_like_volume(size=(30, 26, 9)),
                                  pipeline={"fill_holes": False, "skip_empty_slices": False, "axis": axis,
                                            "batch_size": 2})
    kinds = [e["event"] for e in events]
    partials = [e for e in events if e["event"] == "partial"]
    assert partials and kinds.index("result") > max(i for i, k in enumerate(kinds) if k == "partial")
    numpy_axis = {"axial": 0, "coronal": 1}[axis]
    reported = [index for e in partials for index in e["slices"]]
    assert sorted(reported) == list(range(labels.shape[numpy_axis]))   # every slice once, as batches end
    assert all(len(e["slices"]) <= 2 for e in partials)
    preview = np.zeros(labels.shape, np.uint8)
    for event in partials:
        apply_partial(event, preview)
    assert labels.sum() > 0 and np.array_equal(preview > 0, labels > 0)
    assert "partial" in result.timings


def test_no_partial_events_unless_asked(tmp_path, fake_methods):
    _, events, _ = _job(tmp_path, ct_like_volume(size=(20, 20, 3)), partial=False)
    assert "partial" not in {e["event"] for e in events} and "result" in {e["event"] for e in events}


def test_several_prompts_report_each_prompts_label(tmp_path, fake_methods):
    _, events, labels = _job(tmp_path, ct_like_volume(size=(20, 18, 3)), prompts=["liver", "kidney"])
    partials = [e for e in events if e["event"] == "partial"]
    assert {e["label"] for e in partials} == {1, 2}
    preview = np.zeros(labels.shape, np.uint8)
    for event in (e for e in partials if e["label"] == 2):
        apply_partial(event, preview)
    assert preview.any() and set(np.unique(preview)) == {0, 2}   # both prompts see the same bright blob


def test_a_cancelled_job_leaves_no_file_whatever_was_previewed(tmp_path, fake_methods):
    with pytest.raises(JobCancelled):
        _job(tmp_path, ct_like_volume(size=(20, 20, 4)), method="cancels-itself")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.nrrd"]


def test_partial_events_reach_a_client_of_serve(tmp_path):
    """ADZUS on the planted model at the shipped defaults over `serve`'s HTTP stream: every
    segmented slice is previewed once, and the previews hold the bright blob the result holds."""
    (tmp_path / "data").mkdir()
    image = ct_like_volume(size=(24, 20, 3))
    sitk.WriteImage(image, str(tmp_path / "data" / "ct.nrrd"))
    with running_server(tmp_path, "--allow-root", str(tmp_path / "data")) as (ready, token, _):
        client = ServiceClient(ready["url"], token)
        events = []
        request = {"input": str(tmp_path / "data" / "ct.nrrd"), "method": "adzus", "prompt": "liver",
                   "model": "planted", "device": "cpu"}
        final = client.run(request, on_event=events.append, destination=tmp_path / "out.nrrd")
    assert final["event"] == "result", final
    partials = [e for e in events if e.get("event") == "partial"]
    reported = [i for e in partials for i in e["slices"]]
    assert len(reported) == len(set(reported)) == final["slices_segmented"] > 0
    preview = np.zeros(sitk.GetArrayFromImage(image).shape, np.uint16)
    for event in partials:
        apply_partial(event, preview)
    result = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out.nrrd")))
    assert result.any() and preview.any()
    assert (preview.astype(bool) & result.astype(bool)).sum() >= 0.8 * result.astype(bool).sum()
