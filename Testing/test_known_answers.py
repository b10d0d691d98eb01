"""Known answers: ADZUS and DiffuGTS on the planted model (`--model planted`) at the SHIPPED
defaults, through the real pipeline, against the planted model's right answer (pixels whose
normalised intensity is >= 0.75). Target sizes from 1 % to 90 % of the image (ADZUS) and from
0.5 % of the body up (DiffuGTS), absent targets, targets on some slices only, two targets,
anisotropic coronal/sagittal slicing, an oblique volume, an RGB photo, and the front doors
(`segment`, `serve`, `batch`). Every result is checked to hold the target before anything is
compared with it."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
from planted_cases import (
    CT,
    ct_slice,
    ct_volume,
    dice,
    labels_of,
    slices_with,
    sphere_volume,
    truth_of,
    write,
)

from DiffusionSegLib.contract.request import JobRequest, PipelineOptions
from DiffusionSegLib.jobs.runner import Runner
from DiffusionSegLib.testing.images import fluorescence_image, oblique_direction

SIDE = 96
PROMPTS = {"adzus": "lesion", "diffugts": "liver tumour"}


@pytest.fixture(scope="module")
def runner():
    return Runner()   # one warm planted model for the module, as `serve` keeps it


def segment(runner, path, method, tmp_path, name="out.nrrd", axis="auto", intensity=CT):
    events: list[dict] = []
    request = JobRequest(input=str(path), output=str(tmp_path / name), method=method, prompt=PROMPTS[method],
                         model="planted", device="cpu",
                         pipeline=PipelineOptions(axis=axis, intensity=intensity))
    runner.run(request, events.append)
    return labels_of(tmp_path / name), [e["message"] for e in events if e["event"] == "warning"]


def image2d(tmp_path, plane, name="in.nrrd"):
    return write(sitk.GetImageFromArray(plane[None].astype(np.float32)), tmp_path / name)


@pytest.mark.parametrize("coverage", [0.01, 0.05, 0.2, 0.5, 0.9])
def test_adzus_finds_a_target_covering_any_share_of_the_image(runner, tmp_path, coverage):
    path = image2d(tmp_path, ct_slice(SIDE, None, coverage))
    truth = truth_of(path, CT)
    labels, warnings = segment(runner, path, "adzus", tmp_path)
    assert truth.sum() > 0 and labels.sum() > 0
    assert dice(labels, truth) >= (0.5 if coverage == 0.01 else 0.85)


@pytest.mark.parametrize("share", [0.005, 0.02, 0.2, 0.5])
def test_diffugts_finds_a_lesion_from_half_a_percent_of_the_body(runner, tmp_path, share):
    path = image2d(tmp_path, ct_slice(SIDE, 0.6, share))
    truth = truth_of(path, CT)
    labels, warnings = segment(runner, path, "diffugts", tmp_path)
    assert truth.sum() > 0 and labels.sum() > 0
    assert dice(labels, truth) >= (0.5 if share == 0.005 else 0.85)
    assert warnings == []


@pytest.mark.parametrize("method", ["adzus", "diffugts"])
def test_no_target_gives_an_empty_result_and_a_warning(runner, tmp_path, method):
    path = image2d(tmp_path, ct_slice(SIDE, 0.6, 0.0))
    assert not truth_of(path, CT).any()
    labels, warnings = segment(runner, path, method, tmp_path)
    assert not labels.any()
    assert len(warnings) == 1 and "empty" in warnings[0]


@pytest.mark.parametrize("method", ["adzus", "diffugts"])
def test_exactly_the_slices_that_hold_the_target(runner, tmp_path, method):
    # a tumour that grows and shrinks: small first and last slices (0.6 % of the body) around a core
    lesions = {2: 0.006, 3: 0.04, 4: 0.08, 5: 0.04, 6: 0.006}
    path = write(ct_volume(9, 64, lesions), tmp_path / "ct.nrrd")
    truth = truth_of(path, CT)
    labels, _ = segment(runner, path, method, tmp_path)
    assert slices_with(truth) == [2, 3, 4, 5, 6]
    assert slices_with(labels) == [2, 3, 4, 5, 6]
    assert dice(labels, truth) >= 0.85


@pytest.mark.parametrize("method", ["adzus", "diffugts"])
def test_two_separate_targets_are_both_found(runner, tmp_path, method):
    plane = ct_slice(SIDE, 0.7, 0.03, centre=(0.35, 0.35))
    second = ct_slice(SIDE, 0.7, 0.03, centre=(0.65, 0.68), seed=1)
    plane = np.where(second > 120, second, plane)
    path = image2d(tmp_path, plane)
    truth = truth_of(path, CT)
    labels, _ = segment(runner, path, method, tmp_path)
    from scipy import ndimage

    assert ndimage.label(truth[0])[1] == 2
    for component in range(1, 3):   # each target on its own holds most of its pixels
        part = ndimage.label(truth[0])[0] == component
        assert (labels[0] & part).sum() >= 0.8 * part.sum()
    assert dice(labels, truth) >= 0.85


@pytest.mark.parametrize("axis", ["coronal", "sagittal"])
def test_anisotropic_ct_sliced_across_its_thick_slices(runner, tmp_path, axis):
    """0.7 × 0.7 × 5 mm CT seen coronally or sagittally: each slice is 28 × 12 pixels of
    0.7 × 5 mm. The letterbox gives the model square millimetres (the 12 rows fill the canvas
    as 60 mm, not 12 px squashed into a band 12/28 of it); the labelmap is on the input's grid
    and holds the sphere."""
    path = write(sphere_volume(), tmp_path / "thick.nrrd")
    truth = truth_of(path, CT)
    labels, _ = segment(runner, path, "adzus", tmp_path, axis=axis)
    written = sitk.ReadImage(str(tmp_path / "out.nrrd"))
    source = sitk.ReadImage(str(path))
    assert written.GetSize() == source.GetSize() and written.GetSpacing() == source.GetSpacing()
    assert truth.sum() > 0 and labels.sum() > 0
    assert dice(labels, truth) >= 0.85


def test_an_oblique_volume_keeps_its_geometry(runner, tmp_path):
    path = write(sphere_volume(size=(28, 28, 10), spacing=(0.9, 0.9, 2.5), direction=oblique_direction()),
                 tmp_path / "oblique.nrrd")
    labels, _ = segment(runner, path, "diffugts", tmp_path)
    written, source = sitk.ReadImage(str(tmp_path / "out.nrrd")), sitk.ReadImage(str(path))
    np.testing.assert_allclose(written.GetDirection(), source.GetDirection(), atol=1e-9)
    np.testing.assert_allclose(written.GetOrigin(), source.GetOrigin(), atol=1e-9)
    assert labels.sum() > 0 and dice(labels, truth_of(path, CT)) >= 0.85


def test_an_rgb_photo(runner, tmp_path):
    path = tmp_path / "cell.png"
    sitk.WriteImage(fluorescence_image(), str(path))
    truth = truth_of(path)
    labels, _ = segment(runner, path, "adzus", tmp_path, intensity="auto")
    assert 0.05 < truth.mean() < 0.5 and labels.sum() > 0
    assert dice(labels, truth) >= 0.85


# -- the front doors ------------------------------------------------------------------------------

def test_segment_on_the_command_line(tmp_path):
    path = write(ct_volume(5, 48, {1: 0.05, 2: 0.08, 3: 0.05}), tmp_path / "ct.nrrd")
    done = subprocess.run([sys.executable, "-m", "DiffusionSegLib", "segment", "--method", "diffugts",
                           "--model", "planted", "--prompt", "liver tumour", "--intensity", CT,
                           "--input", str(path), "--output", str(tmp_path / "seg.nrrd"), "--threads", "1"],
                          capture_output=True, text=True, encoding="utf-8", timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["event"] == "result" and [s["name"] for s in result["segments"]] == ["liver tumour"]
    labels, truth = labels_of(tmp_path / "seg.nrrd"), truth_of(path, CT)
    assert slices_with(labels) == slices_with(truth) == [1, 2, 3]
    assert dice(labels, truth) >= 0.85


def test_serve_finds_the_target(tmp_path):
    from serve_helpers import running_server

    from DiffusionSegLib.serve.client import ServiceClient

    path = write(ct_volume(4, 48, {1: 0.06, 2: 0.06}), tmp_path / "ct.nrrd")
    with running_server(tmp_path, "--allow-root", str(tmp_path), "--work-dir", str(tmp_path / "work")) as (
            ready, token, _):
        client = ServiceClient(ready["url"], token)
        final = client.run({"input": str(path), "method": "adzus", "prompt": "lesion", "model": "planted",
                            "device": "cpu", "pipeline": {"intensity": CT}}, destination=tmp_path / "seg.nrrd")
    assert final["event"] == "result", final
    labels, truth = labels_of(tmp_path / "seg.nrrd"), truth_of(path, CT)
    assert slices_with(labels) == [1, 2] and dice(labels, truth) >= 0.85


def test_batch_runs_both_methods_over_a_cohort(tmp_path):
    cases = tmp_path / "cases"
    cases.mkdir()
    write(ct_volume(3, 48, {1: 0.06}), cases / "a.nrrd")
    write(ct_volume(3, 48, {}), cases / "b.nrrd")   # a healthy case: nothing there
    for method in ("adzus", "diffugts"):
        out = tmp_path / method
        done = subprocess.run([sys.executable, "-m", "DiffusionSegLib", "batch", "--images", str(cases),
                               "--output-dir", str(out), "--method", method, "--prompt", PROMPTS[method],
                               "--model", "planted", "--intensity", CT, "--threads", "1"],
                              capture_output=True, text=True, encoding="utf-8", timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        a, b = labels_of(next(out.glob("a*.nrrd"))), labels_of(next(out.glob("b*.nrrd")))
        assert slices_with(a) == [1] and dice(a, truth_of(cases / "a.nrrd", CT)) >= 0.85
        assert not b.any()
