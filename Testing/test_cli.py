"""The command line as a separate process: the job contract end to end (events, exit codes,
cancellation, nothing written on failure) with the tiny Stable Diffusion model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from helpers import ct_like_volume
from planted_cases import dice, labels_of, truth_of

from DiffusionSegLib.contract.errors import (
    EXIT_BAD_INPUT,
    EXIT_BAD_REQUEST,
    EXIT_CANCELLED,
    EXIT_MODEL,
)
from DiffusionSegLib.testing.images import fluorescence_image

ROOT = Path(__file__).resolve().parents[1]
EVENT_KEYS = {"progress": {"stage", "done", "total"}, "log": {"level", "message"},
              "result": {"output"}, "error": {"code", "message"}, "warning": {"message"},
              "partial": {"label", "axis", "slices", "plane", "box", "mask"}}
FAST = ["--param", "latent_mode=clean", "--device", "cpu"]


def cli(*args: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "DiffusionSegLib", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}, **kwargs)


def events_of(stdout: str) -> list[dict]:
    events = [json.loads(line) for line in stdout.splitlines()]  # every stdout line is JSON
    for event in events:
        assert set(EVENT_KEYS[event["event"]]) <= set(event), event
        if event["event"] == "progress":
            assert 0 <= event["done"] <= event["total"]
    return events


def assert_only(folder: Path, names: set[str]) -> None:
    assert {p.name for p in folder.iterdir()} == names  # no partial or temporary files


def test_segment_rgb_image_end_to_end(tmp_path):
    sitk.WriteImage(fluorescence_image(height=50, width=70), str(tmp_path / "cell.bmp"))
    done = cli("segment", "--method", "adzus", "--prompt", "white blood cell", "--input", str(tmp_path / "cell.bmp"),
               "--output", str(tmp_path / "cell-seg.nrrd"), "--model", "planted", "--device", "cpu")
    assert done.returncode == 0, done.stderr[-2000:]
    events = events_of(done.stdout)
    assert events[-1]["event"] == "result" and [e["event"] for e in events].count("result") == 1
    assert {"load", "segment"} <= {e["stage"] for e in events if e["event"] == "progress"}
    labels = sitk.ReadImage(str(tmp_path / "cell-seg.nrrd"))
    assert labels.GetSize() == (70, 50)
    assert [s["name"] for s in events[-1]["segments"]] == ["white blood cell"]
    assert dice(labels_of(tmp_path / "cell-seg.nrrd"), truth_of(tmp_path / "cell.bmp")) >= 0.85


def test_run_request_on_oblique_ct_volume(tmp_path):
    image = ct_like_volume(size=(30, 26, 4))
    sitk.WriteImage(image, str(tmp_path / "ct.nii.gz"))
    request = {"version": 1, "input": str(tmp_path / "ct.nii.gz"), "output": str(tmp_path / "seg.nrrd"),
               "method": "adzus", "prompt": "liver lesion", "model": "planted", "device": "cpu",
               "pipeline": {"axis": "axial", "intensity": "ct-abdomen"}, "slice_range": [1, 2]}
    (tmp_path / "job.json").write_text(json.dumps(request))
    done = cli("run", "--request", str(tmp_path / "job.json"))
    assert done.returncode == 0, done.stderr[-2000:]
    events = events_of(done.stdout)
    labels = sitk.ReadImage(str(tmp_path / "seg.nrrd"))
    source = sitk.ReadImage(str(tmp_path / "ct.nii.gz"))
    assert labels.GetSize() == source.GetSize()
    np.testing.assert_allclose(labels.GetDirection(), source.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(labels.GetOrigin(), source.GetOrigin(), atol=1e-6)
    array = sitk.GetArrayFromImage(labels)
    assert array[0].sum() == 0 and array[3].sum() == 0  # outside the slice range
    truth = truth_of(tmp_path / "ct.nii.gz", "ct-abdomen")
    assert dice(array[1:3] > 0, truth[1:3]) >= 0.85    # the bright blob, on the slices asked for
    assert events[-1]["slices_segmented"] == 2
    # `run` (what the Slicer module reads) sends the finished slices as they come: those of the range
    assert sorted(i for e in events if e["event"] == "partial" for i in e["slices"]) == [1, 2]


def test_cancel_stops_the_job_and_writes_nothing(tmp_path, tiny_sd_path):
    sitk.WriteImage(ct_like_volume(size=(30, 26, 60)), str(tmp_path / "ct.nrrd"))
    process = subprocess.Popen(
        [sys.executable, "-m", "DiffusionSegLib", "segment", "--method", "adzus", "--input", str(tmp_path / "ct.nrrd"),
         "--output", str(tmp_path / "seg.nrrd"), "--model", str(tiny_sd_path), "--device", "cpu"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines = []
    for line in process.stdout:  # wait until slices are being segmented, then cancel
        lines.append(line)
        event = json.loads(line)
        if event.get("stage") == "segment" and event["done"] >= 1:
            process.send_signal(signal.SIGTERM)
            break
    lines += process.stdout.readlines()
    assert process.wait(timeout=60) == EXIT_CANCELLED
    events = events_of("".join(lines))
    assert events[-1]["event"] == "error" and events[-1]["code"] == "cancelled"
    assert_only(tmp_path, {"ct.nrrd"})


@pytest.mark.parametrize("case, code, exit_code", [
    ("missing", "input_not_found", EXIT_BAD_INPUT),
    ("4d", "invalid_image", EXIT_BAD_INPUT),
    ("empty", "invalid_image", EXIT_BAD_INPUT),
    ("nan", "invalid_image", EXIT_BAD_INPUT),
    ("method", "unknown_method", EXIT_BAD_REQUEST),
    ("parameter", "invalid_parameter", EXIT_BAD_REQUEST),
    ("model", "model_not_found", EXIT_MODEL),
])
def test_bad_input_gives_error_event_and_exit_code(tmp_path, tiny_sd_path, case, code, exit_code):
    source = tmp_path / "in.nrrd"
    if case == "4d":
        sitk.WriteImage(sitk.JoinSeries([ct_like_volume(), ct_like_volume()]), str(source))
    elif case == "empty":
        sitk.WriteImage(sitk.Image(16, 16, 2, sitk.sitkInt16), str(source))
    elif case == "nan":
        array = np.ones((2, 16, 16), np.float32)
        array[0, 3, 3] = np.nan
        sitk.WriteImage(sitk.GetImageFromArray(array), str(source))
    elif case != "missing":
        sitk.WriteImage(ct_like_volume(), str(source))
    method = "no-such-method" if case == "method" else "adzus"
    model = str(tmp_path / "no-model-here") if case == "model" else str(tiny_sd_path)
    extra = ["--param", "kl_threshold=-4"] if case == "parameter" else []
    done = cli("segment", "--method", method, "--input", str(source), "--output", str(tmp_path / "out.nrrd"),
               "--model", model, *FAST, *extra)
    assert done.returncode == exit_code, done.stdout + done.stderr[-1500:]
    events = events_of(done.stdout)
    assert events[-1]["event"] == "error" and events[-1]["code"] == code
    assert events[-1]["message"]
    assert not (tmp_path / "out.nrrd").exists()
    assert not list(tmp_path.glob(".out.nrrd*"))


def test_methods_lists_metadata_as_json():
    done = cli("methods", "--json")
    assert done.returncode == 0
    data = json.loads(done.stdout)
    adzus = next(m for m in data["methods"] if m["name"] == "adzus")
    assert adzus["default_model"] == "CompVis/stable-diffusion-v1-4"
    assert any(p["name"] == "kl_threshold" and p["default"] == 1.1 for p in adzus["params"])
    assert "ct-lung" in data["intensity_presets"]


def test_methods_for_people_lists_the_intensity_presets():
    done = cli("methods")
    assert done.returncode == 0
    listed = done.stdout.split("intensity presets")[1]
    from DiffusionSegLib.imaging.intensity import presets

    for name, preset in presets().items():
        assert f"{name} " in listed and preset["label"] in listed


def test_method_metadata_does_not_import_torch():
    code = ("import sys, DiffusionSegLib.methods as m; m.available_methods(); "
            "import DiffusionSegLib.contract.request; print(sorted(k for k in ('torch', 'diffusers', 'transformers', 'slicer', 'qt', 'vtk') if k in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def test_evaluate_reports_metrics_and_a_separate_oracle(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    for n in range(2):
        sitk.WriteImage(fluorescence_image(height=50 + 4 * n, width=70, seed=n), str(images / f"{n:03d}.bmp"))
        truth = truth_of(images / f"{n:03d}.bmp")[0]   # the planted model's right answer
        sitk.WriteImage(sitk.GetImageFromArray((truth * 255).astype(np.uint8)), str(masks / f"{n:03d}.png"))
    done = cli("evaluate", "--method", "adzus", "--prompt", "white blood cell", "--model", "planted",
               "--images", str(images), "--masks", str(masks), "--mask-map", "255", "--output", str(tmp_path / "ev"),
               "--oracle", "--device", "cpu")
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    summary = report["summary"]
    assert summary["cases"] == 2 and summary["metrics"]["dice"]["n"] == 2
    assert summary["metrics"]["dice"]["mean"] >= 0.85
    assert summary["metrics"]["dice"]["mean"] <= summary["oracle_metrics"]["dice"]["mean"] <= 1.0
    for case in report["cases"]:
        assert {"dice", "iou", "hd95", "oracle_dice"} <= set(case)
    assert events_of(done.stdout)[-1]["event"] == "result"
