"""The result bundle (request/result version 2) and `reselect`, on model-free methods whose maps
and scores are known exactly: geometry, ids across slices, units, atomicity, re-selection."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from evidence_methods import REFERENCE, GreyProposals, Repaints
from helpers import ct_like_volume
from planted_cases import CT, ct_volume, dice, truth_of, write

import DiffusionSegLib.methods as registry
from DiffusionSegLib.cli.commands.reselect import reselect_files
from DiffusionSegLib.contract.errors import InvalidRequest
from DiffusionSegLib.contract.request import JobRequest
from DiffusionSegLib.decision.selection import scores_from_json, volume_reference
from DiffusionSegLib.io.bundle import bundle_path
from DiffusionSegLib.jobs.job import run_job

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def methods(monkeypatch):
    table = dict(registry.available_methods())
    table.update({"grey-proposals": GreyProposals, "repaints": Repaints})
    monkeypatch.setattr(registry, "_REGISTRY", table)


def run(tmp_path, method="grey-proposals", image=None, output="seg.nrrd", **overrides):
    """A job on a CT-like volume whose in-plane pixels are square (0.8 mm) and whose slices
    are the model's size: the letterbox is the identity, so maps compare exactly."""
    source = tmp_path / "ct.nrrd"
    sitk.WriteImage(image or ct_like_volume(spacing=(0.8, 0.8, 3.0)), str(source))
    events: list[dict] = []
    request = JobRequest.from_dict({"version": 2, "input": str(source), "output": str(tmp_path / output),
                                    "method": method, "device": "cpu", "evidence": True,
                                    "pipeline": {"skip_empty_slices": False, "fill_holes": True}, **overrides})
    run_job(request, events.append)
    return events[-1], sitk.ReadImage(str(source))


def same_grid(a: sitk.Image, b: sitk.Image) -> bool:
    return (a.GetSize() == b.GetSize() and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-9)
            and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-9)
            and np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-12))


def array(path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def test_bundle_files_on_the_input_grid_with_consistent_ids_and_vote_units(tmp_path, methods):
    event, source = run(tmp_path)
    outputs = event["outputs"]
    assert event["version"] == 2
    assert set(outputs) == {"labelmap", "provenance", "proposals", "scores", "evidence", "uncertainty"}
    assert outputs["evidence"] == str(tmp_path / "seg.evidence.nrrd")
    assert outputs["scores"] == str(tmp_path / "seg.scores.json")
    for name in ("labelmap", "proposals", "evidence", "uncertainty"):
        assert same_grid(sitk.ReadImage(outputs[name]), source), name
    hu = sitk.GetArrayFromImage(source).astype(float)
    grey = np.clip((hu + 160) / 400, 0, 1)  # the CT soft-tissue window the pipeline chose
    proposals = array(outputs["proposals"])
    blob = hu > 150
    # the bright blob is one proposal with ONE id through every slice (ids were per slice)
    assert len(np.unique(proposals[blob])) == 1 and blob.any(axis=(1, 2)).sum() > 1
    evidence = array(outputs["evidence"])
    np.testing.assert_allclose(evidence, grey / REFERENCE, rtol=1e-5, atol=1e-5)  # contrast units
    scores = json.loads(Path(outputs["scores"]).read_text())
    margin = array(outputs["uncertainty"])
    k = int(np.argmax(blob.any(axis=(1, 2))))
    blob_id = int(proposals[blob][0])
    expected = scores["slices"][str(k)]["proposals"][str(blob_id)]["score"] / REFERENCE - 1.5
    np.testing.assert_allclose(margin[k][proposals[k] == blob_id], expected, rtol=1e-6)
    labels = array(outputs["labelmap"])
    assert (labels[margin > 0] == 1).all() and labels[margin < 0].sum() == 0


def test_reselect_defaults_reproduce_the_labelmap_and_a_stricter_threshold_changes_it(tmp_path, methods):
    event, _ = run(tmp_path)
    seg = event["outputs"]["labelmap"]
    original = array(seg)
    assert original.any() and not original.all()   # a result to reproduce, not an empty one
    same = reselect_files(seg, tmp_path / "same.nrrd")
    assert np.array_equal(array(same["output"]), original) and same["voxels_changed"] == 0
    assert same_grid(sitk.ReadImage(same["output"]), sitk.ReadImage(seg))
    strict = reselect_files(seg, tmp_path / "strict.nrrd", vote_threshold=3.0)
    stricter = array(strict["output"])
    assert 0 < stricter.sum() < original.sum() and not (stricter & ~original.astype(bool)).any()
    # the blob alone survives: its contrast (~3.5) beats 3, the body's (~2) does not
    proposals = array(event["outputs"]["proposals"])
    blob_id = int(np.bincount(proposals[stricter > 0]).argmax())
    assert set(np.unique(proposals[stricter > 0])) == {blob_id}
    excluded = array(reselect_files(seg, tmp_path / "x.nrrd", exclude=str(blob_id))["output"])
    assert not excluded[proposals == blob_id].any()
    air_id = int(proposals[0, 0, 0])
    included = array(reselect_files(seg, tmp_path / "i.nrrd", vote_threshold=3.0, include=str(air_id))["output"])
    assert included[proposals == air_id].all() and included[proposals == blob_id].all()


def test_reselect_refuses_bad_requests_before_writing(tmp_path, methods):
    event, _ = run(tmp_path)
    seg = event["outputs"]["labelmap"]
    for kwargs, needle in [({"include": "999"}, "999"), ({"exclude": "a,b"}, "whole numbers"),
                           ({"output": seg}, "is the input"),
                           ({"output": bundle_path(seg, "proposals")}, "is the input")]:
        args = {"output": tmp_path / "new.nrrd", **kwargs}
        with pytest.raises(InvalidRequest, match=needle):
            reselect_files(seg, **args)
    assert not (tmp_path / "new.nrrd").exists()
    (tmp_path / "taken.nrrd").write_bytes(b"mine")
    with pytest.raises(InvalidRequest, match="already exists"):
        reselect_files(seg, tmp_path / "taken.nrrd")
    assert (tmp_path / "taken.nrrd").read_bytes() == b"mine"
    bundle_path(seg, "scores").unlink()
    with pytest.raises(InvalidRequest, match="--evidence"):
        reselect_files(seg, tmp_path / "new.nrrd")


def test_pseudo_healthy_returns_in_hounsfield_units_inside_the_window(tmp_path, methods):
    event, source = run(tmp_path, method="repaints", output="seg.nii.gz")
    outputs = event["outputs"]
    assert set(outputs) == {"labelmap", "provenance", "evidence", "anomaly", "pseudo_healthy"}
    assert outputs["pseudo_healthy"] == str(tmp_path / "seg.pseudo_healthy.nrrd")
    healthy = sitk.ReadImage(outputs["pseudo_healthy"])
    assert same_grid(healthy, source) and healthy.GetPixelID() == sitk.sitkFloat32
    hu = sitk.GetArrayFromImage(source).astype(np.float32)
    # the model saw the input unchanged (size = slice side: no resampling), so the inverse of
    # the clipped -160…240 HU window gives the input back inside the window, the edges outside
    np.testing.assert_allclose(sitk.GetArrayFromImage(healthy), np.clip(hu, -160, 240), atol=1e-3)
    np.testing.assert_allclose(array(outputs["anomaly"]) + array(outputs["evidence"]), 1.0, atol=1e-5)


def test_a_failed_bundle_write_leaves_no_files(tmp_path, methods, monkeypatch):
    import DiffusionSegLib.io.bundle as bundle
    from DiffusionSegLib.contract.errors import WriteFailed

    calls = []

    def failing(image, path, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise WriteFailed("disk full")
        return original(image, path, **kwargs)

    original = bundle.stage_image
    monkeypatch.setattr(bundle, "stage_image", failing)
    with pytest.raises(WriteFailed, match="disk full"):
        run(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct.nrrd"]


def test_existing_bundle_files_are_refused_before_any_work_unless_overwrite(tmp_path, methods):
    from DiffusionSegLib.contract.errors import OutputExists

    (tmp_path / "seg.evidence.nrrd").write_bytes(b"mine")
    with pytest.raises(OutputExists, match="evidence"):
        run(tmp_path)
    assert (tmp_path / "seg.evidence.nrrd").read_bytes() == b"mine" and not (tmp_path / "seg.nrrd").exists()
    event, source = run(tmp_path, overwrite=True)
    assert same_grid(sitk.ReadImage(event["outputs"]["evidence"]), source)


def test_float_maps_are_compressed_only_when_it_pays():
    from DiffusionSegLib.io.bundle import compresses_well

    piecewise = np.repeat(np.arange(8, dtype=np.float32), 16).reshape(1, 8, 16)
    assert compresses_well(piecewise)
    assert not compresses_well(np.random.default_rng(0).random((4, 8, 16)).astype(np.float32))


def test_request_versions(tmp_path):
    base = {"input": "a.nrrd", "output": "b.nrrd", "method": "adzus"}
    assert JobRequest.from_dict({**base, "version": 1}).evidence is False
    assert JobRequest.from_dict({**base, "version": 2, "evidence": True}).evidence is True
    with pytest.raises(InvalidRequest, match="version 2"):
        JobRequest.from_dict({**base, "version": 1, "evidence": True})
    with pytest.raises(InvalidRequest, match="not supported"):
        JobRequest.from_dict({**base, "version": 3})
    with pytest.raises(InvalidRequest, match="true or false"):
        JobRequest.from_dict({**base, "evidence": "yes"})


def test_reselect_command_runs_without_torch(tmp_path, methods):
    event, _ = run(tmp_path)
    seg = event["outputs"]["labelmap"]
    code = ("import sys, json\n"
            "sys.modules['torch'] = None  # any import of torch fails\n"
            "from DiffusionSegLib.cli.main import main\n"
            f"rc = main(['reselect', '--result', {seg!r}, '--output', {str(tmp_path / 'cli.nrrd')!r}, "
            "'--vote-threshold', '3'])\n"
            "print(json.dumps({'rc': rc}), file=sys.stderr)\n"
            "assert 'diffusers' not in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, encoding="utf-8",
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert events[-1]["event"] == "result" and events[-1]["voxels_changed"] > 0
    assert array(tmp_path / "cli.nrrd").sum() == events[-1]["voxels"]


def test_adzus_bundle_reselects_bit_for_bit(tmp_path):
    """The planted model at the shipped defaults: a real result, given back bit for bit by
    `reselect` from the bundle, and emptied by a vote above every contrast."""
    write(ct_volume(4, 48, {1: 0.05, 2: 0.08}), tmp_path / "ct.nrrd")
    request = JobRequest.from_dict({
        "input": str(tmp_path / "ct.nrrd"), "output": str(tmp_path / "seg.nrrd"), "method": "adzus",
        "prompt": "lesion", "model": "planted", "device": "cpu", "evidence": True, "pipeline": {"intensity": CT}})
    events: list[dict] = []
    run_job(request, events.append)
    outputs = events[-1]["outputs"]
    assert set(outputs) == {"labelmap", "provenance", "proposals", "scores", "evidence", "uncertainty"}
    labels = array(outputs["labelmap"])
    assert dice(labels > 0, truth_of(tmp_path / "ct.nrrd", CT)) >= 0.85
    same = reselect_files(outputs["labelmap"], tmp_path / "same.nrrd")
    assert np.array_equal(array(same["output"]), labels)
    tables, params, _ = scores_from_json(json.loads(Path(outputs["scores"]).read_text()))
    reference = volume_reference(tables, params)
    top = max(t.score(p) / reference for t in tables.values() for p in t.proposals if math.isfinite(t.score(p)))
    stricter = array(reselect_files(outputs["labelmap"], tmp_path / "strict.nrrd", vote_threshold=top + 1)["output"])
    assert stricter.sum() == 0 < labels.sum()
    proposals = array(outputs["proposals"])
    assert proposals[labels > 0].min() > 0  # every chosen voxel lies on a proposal


def test_diffugts_bundle_holds_residual_anomaly_and_pseudo_healthy(tmp_path):
    source = write(ct_volume(3, 48, {1: 0.08}), tmp_path / "ct.nrrd")
    events: list[dict] = []
    run_job(JobRequest.from_dict({
        "input": str(source), "output": str(tmp_path / "tumour.nii.gz"), "method": "diffugts",
        "prompt": "liver tumour", "model": "planted", "device": "cpu", "evidence": True,
        "pipeline": {"intensity": CT}}), events.append)
    outputs = events[-1]["outputs"]
    assert set(outputs) == {"labelmap", "provenance", "proposals", "scores", "evidence", "uncertainty", "anomaly",
                            "pseudo_healthy"}
    assert outputs["pseudo_healthy"] == str(tmp_path / "tumour.pseudo_healthy.nrrd")
    labels = array(outputs["labelmap"])
    lesion = truth_of(source, CT)
    assert dice(labels > 0, lesion) >= 0.85
    same = reselect_files(outputs["labelmap"], tmp_path / "same.nii.gz")  # anomaly mode re-selects too
    assert np.array_equal(array(same["output"]), labels)
    reference = sitk.ReadImage(str(source))
    for name in ("evidence", "anomaly", "pseudo_healthy"):
        assert same_grid(sitk.ReadImage(outputs[name]), reference), name
    healthy = array(outputs["pseudo_healthy"])
    assert -160 - 1e-3 <= healthy.min() and healthy.max() <= 240 + 1e-3  # the CT window, inverted
    # the lesion (200 HU) repainted as the tissue around it (40 HU)
    assert abs(float(healthy[lesion].mean()) - 40.0) < 25.0
    assert array(outputs["evidence"]).min() >= 0  # R is a weighted sum of non-negative residuals


def test_a_2d_image_bundle_and_reselect(tmp_path, methods):
    slice_2d = sitk.GetArrayFromImage(ct_like_volume())[4]
    image = sitk.GetImageFromArray(slice_2d)
    image.SetSpacing((0.5, 0.7))
    event, source = run(tmp_path, image=image)
    outputs = event["outputs"]
    for name in ("labelmap", "proposals", "evidence", "uncertainty"):
        written = sitk.ReadImage(outputs[name])
        assert written.GetDimension() == 2 and same_grid(written, source), name
    same = reselect_files(outputs["labelmap"], tmp_path / "same.nrrd")
    assert np.array_equal(array(same["output"]), array(outputs["labelmap"]))
    assert 0 < array(reselect_files(outputs["labelmap"], tmp_path / "strict.nrrd", vote_threshold=3.0)["output"]).sum() \
        < array(outputs["labelmap"]).sum()
