"""Absent targets through the whole job: the volume-level selection and the `warning` event.

A volume of 30 slices of uniform 'tissue' (a disc); on slices 10-19 only, one quadrant holds a
bright target. The planted method's evidence is brightness², so every quadrant of a target-free
slice scores about the volume's median, and the target quadrant about 4×."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from fake_methods import PlantedEvidence

import DiffusionSegLib.methods as registry
from DiffusionSegLib.contract.request import JobRequest
from DiffusionSegLib.jobs.job import run_job

DEPTH, SIDE = 30, 32


@pytest.fixture()
def planted(monkeypatch):
    methods = dict(registry.available_methods())
    methods["planted-evidence"] = PlantedEvidence
    monkeypatch.setattr(registry, "_REGISTRY", methods)


def volume(target_slices) -> sitk.Image:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:SIDE, :SIDE]
    body = (yy - 15.5) ** 2 + (xx - 15.5) ** 2 < 15 ** 2
    array = np.where(body, 500.0, 0.0)[None].repeat(DEPTH, 0) + rng.normal(0, 5, (DEPTH, SIDE, SIDE)) * body
    for k in target_slices:
        array[k, 4:14, 18:28] = 1000.0
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.SetSpacing((1.0, 1.0, 2.0))
    return image


def run(tmp_path, image, **params):
    source = tmp_path / "in.nrrd"
    sitk.WriteImage(image, str(source))
    events: list[dict] = []
    request = JobRequest.from_dict({"input": str(source), "output": str(tmp_path / "out.nrrd"),
                                    "method": "planted-evidence", "device": "cpu", "prompt": "target",
                                    "params": {"size": 32, **params},
                                    "pipeline": {"fill_holes": False, "batch_size": 4,
                                                 "intensity": "mr"}})
    result = run_job(request, events.append)
    return sitk.GetArrayFromImage(sitk.ReadImage(result.output)), events


def test_target_on_slices_10_to_19_gives_those_slices_only(tmp_path, planted):
    labels, events = run(tmp_path, volume(range(10, 20)))
    assert [k for k in range(DEPTH) if labels[k].any()] == list(range(10, 20))
    assert labels[10:20, 6:12, 20:26].all()  # the target quadrant, not the rest of the slice
    assert not any(e["event"] == "warning" for e in events)


def test_no_target_gives_an_empty_labelmap_and_a_warning(tmp_path, planted):
    labels, events = run(tmp_path, volume(range(0)))
    assert not labels.any()
    warnings = [e for e in events if e["event"] == "warning"]
    assert len(warnings) == 1 and "empty" in warnings[0]["message"]
    assert events[-1]["event"] == "result"


def test_whole_tissue_result_is_announced(tmp_path, planted):
    # every quadrant kept (thresholds 0): the result covers all tissue on every slice
    labels, events = run(tmp_path, volume(range(0)), vote_threshold=0.0, seed_threshold=0.0)
    assert labels.any()
    assert any(e["event"] == "warning" and "95%" in e["message"] for e in events)


def test_all_mode_keeps_every_proposal(tmp_path, planted):
    labels, _ = run(tmp_path, volume(range(10, 20)), foreground="all")
    assert labels.max() >= 4  # proposals matched across slices, none dropped


def test_every_slice_skipped_ends_empty_with_a_warning_that_says_why(tmp_path, planted):
    """A volume without tissue under its preset (here: a CT window above every value) skips every
    slice; the empty result says so, and how to change it, instead of passing silently."""
    image = sitk.GetImageFromArray(np.full((4, SIDE, SIDE), -1000.0, np.float32)
                                   + np.random.default_rng(0).normal(0, 3, (4, SIDE, SIDE)).astype(np.float32))
    source = tmp_path / "air.nrrd"
    sitk.WriteImage(image, str(source))
    events: list[dict] = []
    request = JobRequest.from_dict({"input": str(source), "output": str(tmp_path / "out.nrrd"),
                                    "method": "planted-evidence", "device": "cpu", "prompt": "target",
                                    "params": {"size": 32}, "pipeline": {"intensity": "ct-soft-tissue"}})
    result = run_job(request, events.append)
    assert not sitk.GetArrayFromImage(sitk.ReadImage(result.output)).any()
    (warning,) = [e["message"] for e in events if e["event"] == "warning"]
    assert "every slice was skipped" in warning and "ct-soft-tissue" in warning and "--keep-empty-slices" in warning
    assert events[-1]["slices_segmented"] == 0 and events[-1]["slices_skipped"] == 4
