"""Reliability round 3 (issue 23), `batch`: nothing of the user's lost in a cohort. An input is
never an output (whatever --overwrite says), rows stay inside --output-dir, output formats are
checked by the plan, one run per output folder (a killed run's successor takes over), the
summary keeps every finished case, and resume trusts the recorded checksum, not the size."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
import SimpleITK as sitk
from fake_methods import fake_cli_command
from helpers import ct_like_volume

from DiffusionSegLib.contract.errors import EXIT_BAD_REQUEST, EXIT_CANCELLED

ROOT = Path(__file__).resolve().parents[1]
THRESHOLD = ["--method", "bright-threshold", "--device", "cpu", "--param", "threshold=0.3"]


def images(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for n, name in enumerate(names):
        sitk.WriteImage(ct_like_volume(size=(20 + n, 18, 3)), str(folder / name))
    return folder


def batch(*arguments, timeout: float = 300) -> tuple[int, list[dict], str]:
    done = subprocess.run(fake_cli_command("batch", *arguments), cwd=ROOT, capture_output=True, text=True,
                          encoding="utf-8", timeout=timeout)
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()], done.stderr


def summary_cases(folder: Path) -> dict[str, dict]:
    rows = json.loads((folder / "summary.json").read_text())["cases"]
    csv_cases = [line.split(",")[0] for line in (folder / "summary.csv").read_text().splitlines()[1:]]
    assert csv_cases == [row["case"] for row in rows]   # the CSV lists what the JSON lists
    return {row["case"]: row for row in rows}


@pytest.mark.parametrize("alias", ["path", "symlink", "hardlink"])
def test_an_output_that_is_another_rows_input_is_refused_whatever_overwrite_says(tmp_path, alias):
    data = images(tmp_path / "data", "a.nrrd", "b.nrrd")
    target = "b.nrrd"
    if alias == "symlink":
        (data / "alias.nrrd").symlink_to(data / "b.nrrd")
        target = "alias.nrrd"
    elif alias == "hardlink":
        os.link(data / "b.nrrd", data / "alias.nrrd")
        target = "alias.nrrd"
    (data / "jobs.csv").write_text(f"image,output\na.nrrd,{target}\nb.nrrd,b-seg.nrrd\n")
    before = (data / "b.nrrd").read_bytes()
    rc, events, stderr = batch("--manifest", data / "jobs.csv", "--output-dir", data, "--overwrite", *THRESHOLD)
    assert rc == EXIT_BAD_REQUEST, stderr[-2000:]
    assert [e["event"] for e in events] == ["error"] and "is the input image of jobs.csv:3" in events[0]["message"]
    assert (data / "b.nrrd").read_bytes() == before
    assert not (data / "summary.json").exists() and not (data / "b-seg.nrrd").exists()


def test_an_output_inside_a_case_folder_is_refused(tmp_path):
    data = images(tmp_path / "data", "a.nrrd")
    images(data / "series", "image.nrrd")   # a one-image case folder
    (data / "jobs.csv").write_text("image,output\na.nrrd,series/a-seg.nrrd\nseries,series-seg.nrrd\n")
    rc, events, _ = batch("--manifest", data / "jobs.csv", "--output-dir", data, *THRESHOLD)
    assert rc == EXIT_BAD_REQUEST and "inside the input folder of jobs.csv:3" in events[-1]["message"]
    assert sorted(p.name for p in (data / "series").iterdir()) == ["image.nrrd"]


@pytest.mark.parametrize("output", ["../escaped/x.nrrd", "ABSOLUTE", "sub/../../escaped.nrrd"])
def test_rows_cannot_write_outside_the_output_folder(tmp_path, output):
    data = images(tmp_path / "data", "a.nrrd")
    output = str(tmp_path / "elsewhere" / "x.nrrd") if output == "ABSOLUTE" else output
    (data / "jobs.csv").write_text(f"image,output\na.nrrd,{output}\n")
    out = tmp_path / "out"
    rc, events, _ = batch("--manifest", data / "jobs.csv", "--output-dir", out, *THRESHOLD)
    assert rc == EXIT_BAD_REQUEST and "lies outside --output-dir" in events[-1]["message"], events
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]   # no folder made, here or anywhere


def test_an_output_format_is_checked_before_any_model_loads(tmp_path):
    data = images(tmp_path / "data", "a.nrrd", "b.nrrd")
    (data / "jobs.csv").write_text("image,output\na.nrrd,\nb.nrrd,x.txt\n")
    rc, events, _ = batch("--manifest", data / "jobs.csv", "--output-dir", tmp_path / "out", "--method", "slow-load",
                          "--device", "cpu", "--param", "load_seconds=600")
    assert rc == EXIT_BAD_REQUEST and "x.txt is not an output format" in events[-1]["message"]
    # refused by the plan: no run started, so the first case's 600 s model load never began
    assert [e["event"] for e in events] == ["error"] and not (tmp_path / "out").exists()


def _start_slow_run(manifest: Path, out: Path) -> subprocess.Popen:
    process = subprocess.Popen(fake_cli_command("batch", "--manifest", manifest, "--output-dir", out, "--method",
                                                "slow-load", "--device", "cpu", "--param", "load_seconds=120"),
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               encoding="utf-8")
    for line in process.stdout:   # its first event comes once it holds the folder
        if json.loads(line).get("event") == "log":
            return process
    raise AssertionError("the first run ended before it started")


def test_one_run_per_output_folder_and_a_killed_runs_successor_takes_over(tmp_path):
    data = images(tmp_path / "data", "a.nrrd", "b.nrrd")
    (data / "jobs.csv").write_text("image\na.nrrd\nb.nrrd\n")
    out = tmp_path / "out"
    first = _start_slow_run(data / "jobs.csv", out)
    try:
        rc, events, _ = batch("--manifest", data / "jobs.csv", "--output-dir", out, *THRESHOLD)
        assert rc == EXIT_BAD_REQUEST and events[-1]["code"] == "output_busy", events
        assert f"process {first.pid}" in events[-1]["message"] and "Another batch run" in events[-1]["message"]
        assert not (out / "a.nrrd").exists()
        # a part of a sharded run may not join a whole run either
        rc, events, _ = batch("--manifest", data / "jobs.csv", "--output-dir", out, "--num-parts", "2",
                              "--part-id", "1", *THRESHOLD)
        assert rc == EXIT_BAD_REQUEST and events[-1]["code"] == "output_busy"
        first.send_signal(signal.SIGKILL)   # a run that cannot clean up
        first.wait()
        rc, events, stderr = batch("--manifest", data / "jobs.csv", "--output-dir", out, *THRESHOLD)
        assert rc == 0, (events, stderr[-2000:])
        assert {row["status"] for row in summary_cases(out).values()} == {"ok"}
        assert not list(out.glob(".*lock"))   # the folder claim is released at the end
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()


def test_parts_of_one_sharded_run_share_the_folder(tmp_path):
    data = images(tmp_path / "data", "a.nrrd", "b.nrrd")
    (data / "jobs.csv").write_text("image\na.nrrd\nb.nrrd\n")
    out = tmp_path / "out"
    process = subprocess.Popen(fake_cli_command("batch", "--manifest", data / "jobs.csv", "--output-dir", out,
                                                "--num-parts", "2", "--part-id", "0", "--method", "slow-load",
                                                "--device", "cpu", "--param", "load_seconds=120"),
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert json.loads(process.stdout.readline())["event"] == "log"
        rc, events, stderr = batch("--manifest", data / "jobs.csv", "--output-dir", out, "--num-parts", "2",
                                   "--part-id", "1", *THRESHOLD)
        assert rc == 0, (events, stderr[-2000:])
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == EXIT_CANCELLED
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_summary_keeps_every_finished_case_of_the_folder(tmp_path):
    """Two runs with different manifests into one folder, one after the other: the second's
    summary still lists the first's finished cases (it used to list only its own)."""
    data = images(tmp_path / "data", *(f"c{n}.nrrd" for n in range(8)))
    (data / "first.csv").write_text("image\n" + "".join(f"c{n}.nrrd\n" for n in range(4)))
    (data / "second.csv").write_text("image\n" + "".join(f"c{n}.nrrd\n" for n in range(4, 8)))
    out = tmp_path / "out"
    for manifest in ("first.csv", "second.csv"):
        rc, events, stderr = batch("--manifest", data / manifest, "--output-dir", out, *THRESHOLD)
        assert rc == 0, stderr[-2000:]
        assert events[-1]["counts"] == {"ok": 4, "failed": 0, "skipped": 0}   # this run's own cases
    rows = summary_cases(out)
    assert list(rows) == [f"c{n}" for n in (4, 5, 6, 7, 0, 1, 2, 3)]   # this run's first, then the earlier
    assert {row["status"] for row in rows.values()} == {"ok"} and all(row["voxels"] > 0 for row in rows.values())
    assert json.loads((out / "summary.json").read_text())["run"]["earlier_cases"] == 4


def test_resume_redoes_nothing_over_a_replaced_output_of_the_same_size(tmp_path):
    data = images(tmp_path / "data", "a.nrrd", "b.nrrd")
    (data / "jobs.csv").write_text("image\na.nrrd\nb.nrrd\n")
    out = tmp_path / "out"
    rc, _, stderr = batch("--manifest", data / "jobs.csv", "--output-dir", out, *THRESHOLD)
    assert rc == 0, stderr[-2000:]
    original = (out / "a.nrrd").read_bytes()
    replaced = original[:-4] + bytes(b ^ 0xFF for b in original[-4:])   # another file, the same size
    (out / "a.nrrd").write_bytes(replaced)
    rc, events, _ = batch("--manifest", data / "jobs.csv", "--output-dir", out, *THRESHOLD)
    rows = summary_cases(out)
    assert rows["b"]["status"] == "skipped"   # untouched: still skipped
    assert rows["a"]["status"] == "failed" and rows["a"]["error_code"] == "output_exists", rows["a"]
    assert (out / "a.nrrd").read_bytes() == replaced   # not the recorded result, and not replaced either
