"""The one request validator (issue 9, point 9): every malformed request is `invalid_request`
(exit 2) naming the field, with long values cut, before any file is opened or model loaded."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import pytest
import SimpleITK as sitk
from fake_methods import BrightThreshold, fake_cli_command
from helpers import ct_like_volume

from DiffusionSegLib.cli.protocol import run_with_events
from DiffusionSegLib.contract.errors import InvalidRequest, ModelLoadFailed
from DiffusionSegLib.contract.request import MAX_SEED, SUPPORTED_VERSIONS, JobRequest

ROOT = Path(__file__).resolve().parents[1]
BASE = {"version": 1, "input": "in.nrrd", "output": "out.nrrd", "method": "bright-threshold"}


def deep(levels: int):
    value: object = 1
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize("change, field", [
    ({"prompt": 42}, "prompt"),
    ({"prompt": ["liver"]}, "prompt"),
    ({"model": 7}, "model"),
    ({"method": ["adzus"]}, "method"),
    ({"seed": 2**64}, "seed"),
    ({"seed": -1}, "seed"),
    ({"seed": True}, "seed"),
    ({"prompt": "liver \ud800"}, "surrogate"),
    ({"params": {"threshold": deep(20)}}, "nested"),
    ({"params": {"threshold": float("nan")}}, "threshold"),
    ({"params": {"threshold": [0.5]}}, "threshold"),
    ({"version": True}, "version"),
    ({"version": "1"}, "version"),
    ({"version": 99}, "version"),
    ({"slice_range": "12"}, "slice_range"),
    ({"slice_range": [1.5, 3]}, "slice_range"),
    ({"roi": {"ijk_min": [0, 0, 0], "ijk_max": "123"}}, "roi"),
    ({"overwrite": "yes"}, "overwrite"),
    ({"pipeline": {"batch_size": 10**12}}, "batch_size"),
])
def test_malformed_fields_are_invalid_requests_naming_the_field(change, field):
    with pytest.raises(InvalidRequest) as caught:
        JobRequest.from_dict({**BASE, **change})
    assert field in str(caught.value)
    assert caught.value.exit_code == 2


def test_version_message_is_consistent_and_versions_are_a_set():
    assert SUPPORTED_VERSIONS == {1, 2}  # 2: the result bundle (docs/evidence.md)
    for bad in ("1", True, 3, 1.0):
        with pytest.raises(InvalidRequest) as caught:
            JobRequest.from_dict({**BASE, "version": bad})
        message = str(caught.value)
        assert "reads version 1, 2" in message and f"{bad!r}" in message
    assert JobRequest.from_dict({k: v for k, v in BASE.items() if k != "version"}).version == 2
    assert JobRequest.from_dict({**BASE, "version": 1}).version == 1


def test_long_values_are_cut_in_messages():
    prompt = "x" * 5_000_000
    with pytest.raises(InvalidRequest) as caught:
        JobRequest.from_dict({**BASE, "prompt": prompt})
    assert len(str(caught.value)) < 400 and "5000000 characters" in str(caught.value)
    with pytest.raises(InvalidRequest) as caught:
        JobRequest.from_dict({**BASE, "slice_range": "9" * 100_000})
    assert len(str(caught.value)) < 400


def test_seed_bounds_and_plain_values_pass():
    request = JobRequest.from_dict({**BASE, "seed": MAX_SEED, "slice_range": [2, 3], "prompt": "liver ünd tümör",
                                    "params": {"threshold": 0.25}, "roi": {"ijk_min": [0, 0, 0], "ijk_max": [4, 4, 1]}})
    assert request.seed == MAX_SEED and request.slice_range == [2, 3]


def test_request_files_that_are_not_requests(tmp_path):
    (tmp_path / "deep.json").write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(InvalidRequest, match="nested too deeply|larger than"):
        JobRequest.load(tmp_path / "deep.json")
    (tmp_path / "nested.json").write_text(json.dumps({**BASE, "params": {"a": deep(50)}}))
    with pytest.raises(InvalidRequest, match="nested"):
        JobRequest.load(tmp_path / "nested.json")
    (tmp_path / "nan.json").write_text(json.dumps(BASE)[:-1] + ', "params": {"threshold": NaN}}')
    with pytest.raises(InvalidRequest, match="finite"):
        JobRequest.load(tmp_path / "nan.json")


class RecordsLoad(BrightThreshold):
    loaded: list = []

    def load(self) -> None:
        self.loaded.append(True)
        super().load()


@pytest.fixture
def records_load(monkeypatch):
    from DiffusionSegLib import methods

    registry = dict(methods.available_methods())
    registry["bright-threshold"] = RecordsLoad
    monkeypatch.setattr(methods, "_REGISTRY", registry)
    RecordsLoad.loaded.clear()
    return RecordsLoad.loaded


def run_in_process(request: dict) -> tuple[int, list[dict]]:
    """The `run` command's work through the real protocol, in this process."""
    from DiffusionSegLib.jobs.runner import Runner

    stream = io.StringIO()
    rc = run_with_events(lambda emit, token: Runner().run(JobRequest.from_dict(request), emit, token), stream)
    return rc, [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.mark.parametrize("change, words", [
    ({"roi": {"ijk_min": [100, 100, 0], "ijk_max": [120, 120, 1]}}, "outside the image"),
    ({"slice_range": [50, 60]}, "Slice range starts at 50"),
    ({"roi": {"ijk_min": [0, 0, 0], "ijk_max": [3, 30, 2]}}, "at least 8"),
])
def test_image_size_roi_and_slice_errors_come_before_the_model_loads(tmp_path, records_load, change, words):
    sitk.WriteImage(ct_like_volume(size=(24, 20, 3)), str(tmp_path / "ct.nrrd"))
    request = {**BASE, "input": str(tmp_path / "ct.nrrd"), "output": str(tmp_path / "seg.nrrd"), "device": "cpu",
               "pipeline": {"axis": "k"}, **change}
    rc, events = run_in_process(request)
    assert events[-1]["event"] == "error" and words in events[-1]["message"], events[-1]
    assert rc in (2, 3) and records_load == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct.nrrd"]


def test_checkpoint_image_size_is_bounded(tmp_path):
    from DiffusionSegLib.methods.base import check_image_size
    from DiffusionSegLib.methods.sdseg.checkpoint import FORMAT, read_config

    assert check_image_size(256, "x", multiple=8) == 256
    for size in (10**6, 0, -8, 100.5, "256", True, 260):
        with pytest.raises(ModelLoadFailed, match="image size"):
            check_image_size(size, "x", multiple=8)
    (tmp_path / "config.json").write_text(json.dumps({"format": FORMAT, "image_size": 10**7}))
    with pytest.raises(ModelLoadFailed, match="image size"):
        read_config(tmp_path)


@pytest.mark.parametrize("arguments", [
    ["segment", "--input", "x.nrrd", "--output", "y.nrrd", "--method", "bright-threshold", "--seed", "abc"],
    ["segment", "--output", "y.nrrd", "--method", "bright-threshold"],
    ["no-such-command"],
])
def test_argument_errors_are_json_error_events(arguments):
    done = subprocess.run(fake_cli_command(*arguments), cwd=ROOT, capture_output=True, text=True, encoding="utf-8", timeout=120)
    assert done.returncode == 2
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(events) == 1 and events[0]["event"] == "error" and events[0]["code"] == "invalid_request"
    assert "usage:" in done.stderr   # people still get argparse's usage text


def test_cli_prompt_with_undecodable_bytes_is_invalid_request(tmp_path):
    """A prompt from argv with bytes that are not UTF-8 (surrogate-escaped by Python)."""
    sitk.WriteImage(ct_like_volume(size=(24, 20, 3)), str(tmp_path / "ct.nrrd"))
    command = [part.encode() for part in fake_cli_command(
        "segment", "--method", "bright-threshold", "--input", str(tmp_path / "ct.nrrd"),
        "--output", str(tmp_path / "seg.nrrd"), "--device", "cpu", "--prompt")] + [b"liver \xff"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, timeout=120)
    events = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert done.returncode == 2 and events[-1]["code"] == "invalid_request" and "surrogate" in events[-1]["message"]
    assert not (tmp_path / "seg.nrrd").exists()


def test_rgba_input_is_read_as_rgb_with_a_note(tmp_path):
    import numpy as np

    from DiffusionSegLib.io.images import read_volume

    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 0] = np.arange(30)
    rgba[..., 3] = 255
    sitk.WriteImage(sitk.GetImageFromArray(rgba, isVector=True), str(tmp_path / "x.png"))
    volume = read_volume(tmp_path / "x.png")
    assert volume.is_rgb and volume.array.shape == (1, 20, 30, 3)
    assert any("alpha" in note for note in volume.notes)
