"""`batch` end to end as a separate process with the tiny Stable Diffusion model: failures
recorded and the run going on, resume, parts over several "machines", the Ray engine."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from test_cli import ROOT, cli, events_of

from DiffusionSegLib.contract.errors import (
    EXIT_BAD_REQUEST,
    EXIT_CASES_FAILED,
    EXIT_DEVICE,
)
from DiffusionSegLib.testing.images import fluorescence_image

# The planted model at the shipped thresholds: every case holds a bright cell it finds.
FAST = ["--method", "adzus", "--prompt", "white blood cell", "--model", "planted", "--device", "cpu",
        "--threads", "1"]


def images(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        sitk.WriteImage(fluorescence_image(height=40 + 2 * n, width=56, seed=n), str(folder / f"cell{n}.png"))
    return folder


def summary(folder: Path, label: str = "") -> dict[str, dict]:
    rows = json.loads((folder / f"summary{label}.json").read_text())["cases"]
    with open(folder / f"summary{label}.csv", newline="") as handle:
        table = {row["case"]: row for row in csv.DictReader(handle)}
    assert list(table) == [r["case"] for r in rows]
    for row in rows:  # the CSV says what the JSON says
        assert table[row["case"]]["status"] == row["status"] and int(table[row["case"]]["voxels"]) == row["voxels"]
    return {row["case"]: row for row in rows}


def labels(path: str | Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def result_of(stdout: str) -> dict:
    return next(e for e in events_of(stdout) if e["event"] == "result")


def test_failures_are_recorded_and_a_rerun_redoes_only_them(tmp_path):
    data = images(tmp_path / "data", 3)
    (data / "broken.png").write_bytes(b"not an image")
    (data / "jobs.csv").write_text('image,prompt,params,output\ncell0.png,,,\nbroken.png,,,\n'
                                   "cell1.png,white blood cell; nucleus,,sub/cell1-two.nrrd\n"
                                   'cell2.png,,"{""foreground"": ""all""}",\n')
    out = tmp_path / "out"
    command = ["batch", "--manifest", str(data / "jobs.csv"), "--output-dir", str(out), *FAST]

    first = cli(*command)
    assert first.returncode == EXIT_CASES_FAILED, first.stderr[-2000:]
    events = events_of(first.stdout)
    assert events[-1]["event"] == "error" and events[-1]["code"] == "cases_failed"
    rows = summary(out)
    assert list(rows) == ["cell0", "broken", "cell1-two", "cell2"]           # manifest order, run went on
    assert [r["status"] for r in rows.values()] == ["ok", "failed", "ok", "ok"]
    assert rows["broken"]["error_code"] == "invalid_image" and "broken.png" in rows["broken"]["error_message"]
    assert not list(out.glob("broken*"))
    assert rows["cell1-two"]["output"] == str(out / "sub" / "cell1-two.nrrd")
    assert rows["cell1-two"]["prompt"] == "white blood cell; nucleus"
    assert {s["name"] for s in rows["cell1-two"]["segments"]} <= {"white blood cell", "nucleus"}
    for row in rows.values():
        if row["status"] == "ok":
            found = labels(row["output"])
            assert row["voxels"] == int((found > 0).sum())
            assert row["voxels"] > 0 and row["segments"]   # the planted model finds every cell
            for segment in row["segments"]:
                assert segment["voxels"] == int((found == segment["label"]).sum())
    assert any(json.loads(line)["event"] == "error" for line in (out / "logs" / "broken.jsonl").open())

    sitk.WriteImage(fluorescence_image(seed=9), str(data / "broken.png"))      # the user fixes the case
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.nrrd")}
    second = cli(*command)
    assert second.returncode == 0, second.stderr[-2000:]
    assert result_of(second.stdout)["ran"] == 1
    rows = summary(out)
    assert [r["status"] for r in rows.values()] == ["skipped", "ok", "skipped", "skipped"]
    assert rows["cell2"]["voxels"] > 0 and rows["cell2"]["segments"]           # a skipped row keeps its findings
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps                 # finished outputs untouched

    third = cli(*command)                                                      # everything done: no model loads
    assert third.returncode == 0, third.stdout + third.stderr[-2000:]
    result = result_of(third.stdout)
    assert result["ran"] == 0 and result["workers"] == 0 and result["counts"]["skipped"] == 4
    assert not [e for e in events_of(third.stdout) if e.get("stage") == "load"]


def test_a_cancelled_run_keeps_its_summary_and_resumes(tmp_path):
    data = images(tmp_path / "data", 6)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "DiffusionSegLib", "batch", "--images", str(data), "--output-dir", str(out),
               *FAST]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines = []
    for line in process.stdout:  # cancel once the first case is recorded
        lines.append(line)
        if json.loads(line).get("stage") == "batch":
            process.send_signal(signal.SIGTERM)
            break
    lines += process.stdout.readlines()
    assert process.wait(timeout=120) == 130
    assert events_of("".join(lines))[-1]["code"] == "cancelled"
    rows = summary(out)                                                        # complete, valid files
    finished = {case for case, row in rows.items() if row["status"] == "ok"}
    assert finished and len(finished) < 6
    assert {r["status"] for r in rows.values()} <= {"ok", "running"}       # the case in flight, if any
    assert {f"{case}.nrrd" for case in finished} <= {p.name for p in out.glob("*.nrrd")}
    assert not [p for p in out.iterdir() if p.name.startswith(".")]           # nothing partial
    done = cli(*command[3:])                                                   # no --overwrite needed
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert result_of(done.stdout)["ran"] == 6 - len(finished)
    assert [r["status"] for r in summary(out).values()].count("skipped") == len(finished)


def test_an_existing_file_is_refused_and_kept(tmp_path):
    data = images(tmp_path / "data", 1)
    out = tmp_path / "out"
    out.mkdir()
    (out / "cell0.nrrd").write_bytes(b"the user's own file")
    done = cli("batch", "--images", str(data), "--output-dir", str(out), "--model", str(tmp_path / "no-model"), *FAST)
    assert done.returncode == EXIT_CASES_FAILED, done.stderr[-2000:]
    row = summary(out)["cell0"]
    assert row["status"] == "failed" and row["error_code"] == "output_exists" and "--overwrite" in row["error_message"]
    assert (out / "cell0.nrrd").read_bytes() == b"the user's own file"


def test_a_bad_manifest_stops_before_anything_is_made(tmp_path):
    (tmp_path / "jobs.jsonl").write_text('{"image": "a.png", "params": {"kl_threshold": -4}}\n{"image": "b.png"\n')
    done = cli("batch", "--manifest", str(tmp_path / "jobs.jsonl"), "--output-dir", str(tmp_path / "out"), *FAST)
    assert done.returncode == EXIT_BAD_REQUEST
    error = events_of(done.stdout)[-1]
    assert error["event"] == "error" and "jobs.jsonl:2" in error["message"]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("options, code, exit_code, words", [
    (["--workers", "2"], "invalid_request", EXIT_BAD_REQUEST, "--engine ray"),
    (["--num-parts", "3", "--part-id", "3"], "invalid_request", EXIT_BAD_REQUEST, "between 0 and 2"),
    (["--engine", "ray", "--ray-address", "127.0.0.1:1"], "device_unavailable", EXIT_DEVICE, "127.0.0.1:1"),
])
def test_bad_run_options_are_clear_errors(tmp_path, options, code, exit_code, words):
    if "ray" in options:
        pytest.importorskip("ray")
    data = images(tmp_path / "data", 1)
    done = cli("batch", "--images", str(data), "--output-dir", str(tmp_path / "out"), *FAST, *options)
    assert done.returncode == exit_code, done.stdout + done.stderr[-2000:]
    error = events_of(done.stdout)[-1]
    assert error["event"] == "error" and error["code"] == code and words in error["message"]
    assert not list((tmp_path / "out").glob("*.nrrd"))


def test_parts_run_on_several_machines_then_one_summary(tmp_path):
    data = images(tmp_path / "data", 5)
    out = tmp_path / "shared-out"
    common = ["batch", "--images", str(data), "--output-dir", str(out), *FAST]
    parts = []
    for part in range(2):
        done = cli(*common, "--num-parts", "2", "--part-id", str(part))
        assert done.returncode == 0, done.stderr[-2000:]
        parts.append(summary(out, f".part{part}of2"))
    assert not set(parts[0]) & set(parts[1]) and set(parts[0]) | set(parts[1]) == {f"cell{n}" for n in range(5)}
    assert sorted(map(len, parts)) == [2, 3]
    whole = cli(*common)                                                       # collects, loads nothing
    assert whole.returncode == 0 and result_of(whole.stdout)["ran"] == 0
    rows = summary(out)
    assert list(rows) == [f"cell{n}" for n in range(5)] and {r["status"] for r in rows.values()} == {"skipped"}


def test_ray_engine_writes_the_same_volumes_and_summary(tmp_path):
    pytest.importorskip("ray")
    data = images(tmp_path / "data", 4)
    common = ["batch", "--images", str(data), *FAST]
    local = cli(*common, "--output-dir", str(tmp_path / "local"))
    assert local.returncode == 0, local.stderr[-2000:]
    ray = cli(*common, "--output-dir", str(tmp_path / "ray"), "--engine", "ray", "--workers", "2")
    assert ray.returncode == 0, ray.stderr[-3000:]
    assert result_of(ray.stdout)["engine"] == "ray" and result_of(ray.stdout)["workers"] == 2
    local_rows, ray_rows = summary(tmp_path / "local"), summary(tmp_path / "ray")
    assert list(local_rows) == list(ray_rows) == [f"cell{n}" for n in range(4)]
    assert len({r["worker"] for r in ray_rows.values()}) == 2                    # both actors took cases
    for case, row in local_rows.items():
        other = ray_rows[case]
        assert row["status"] == other["status"] == "ok" and row["voxels"] > 0
        assert (row["segments"], row["voxels"], row["labels_sha256"]) == \
            (other["segments"], other["voxels"], other["labels_sha256"])
        np.testing.assert_array_equal(labels(row["output"]), labels(other["output"]))
