"""Provenance: every result has `<stem>.provenance.json` beside it with the facts that made it,
and `run --request RESULT.provenance.json --output NEW` repeats the job bit for bit (tiny Stable
Diffusion model, ADZUS, a DICOM series in, on this machine)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import SimpleITK as sitk
from dicom_data import write_series
from test_cli import cli, events_of

FAST = ["--method", "adzus", "--prompt", "liver", "--param", "latent_mode=clean", "--device", "cpu",
        "--threads", "1", "--param", "vote_threshold=0.8", "--param", "seed_threshold=0.8", "--quiet"]


def test_record_names_what_made_the_result_and_repeats_it_bit_for_bit(tmp_path, tiny_sd_path):
    series = write_series(tmp_path / "ct", slices=4, rows=32, columns=36)
    first = cli("segment", "--input", str(series.folder), "--output", str(tmp_path / "first.nrrd"),
                "--model", str(tiny_sd_path), "--seed", "7", *FAST)
    assert first.returncode == 0, first.stderr[-2000:]
    result = events_of(first.stdout)[-1]
    record = json.loads((tmp_path / "first.provenance.json").read_text())
    assert result["outputs"]["provenance"] == str(tmp_path / "first.provenance.json")

    assert record["method"] == "adzus" and record["prompts"] == ["liver"] and record["seed"] == 7
    assert record["parameters"]["latent_mode"] == "clean" and "kl_threshold" in record["parameters"]  # resolved
    assert record["device"] == "cpu" and record["threads"] == 1 and record["dtype"] in ("float32", "bfloat16")
    assert record["diffusionseg"]["version"] and record["libraries"]["torch"] and record["libraries"]["diffusers"]
    weights = {f["path"]: f["sha256"] for f in record["model"]["files"]}
    assert "unet/diffusion_pytorch_model.safetensors" in weights
    for name, digest in weights.items():
        assert hashlib.sha256((tiny_sd_path / name).read_bytes()).hexdigest() == digest
    inputs = hashlib.sha256(b"".join(hashlib.sha256(p.read_bytes()).hexdigest().encode() for p in series.files))
    assert record["input"]["sha256"] == inputs.hexdigest() and record["input"]["files"] == 4
    assert record["input"]["dicom"]["series_instance_uid"] == series.series
    assert {"read", "load"} <= set(record["timings"]) and len(record["timings"]) > 3
    assert record["request"]["dtype"] == record["dtype"] and record["request"]["params"] == record["parameters"]

    again = cli("run", "--request", str(tmp_path / "first.provenance.json"), "--output", str(tmp_path / "again.nrrd"),
                "--quiet")
    assert again.returncode == 0, again.stderr[-2000:]
    labels = [sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / f"{n}.nrrd"))) for n in ("first", "again")]
    assert labels[0].any()                         # something to compare
    np.testing.assert_array_equal(labels[0], labels[1])
    assert json.loads((tmp_path / "again.provenance.json").read_text())["request"]["seed"] == 7
