"""Cohort planning without any model: manifests, sharding, resume decisions, atomic summaries."""

from __future__ import annotations

import io
import json
import os
import random
import shutil
from pathlib import Path

import pytest

from DiffusionSegLib.batch.manifest import (
    Case,
    Defaults,
    cases_from_folder,
    read_manifest,
)
from DiffusionSegLib.batch.digests import file_sha256
from DiffusionSegLib.batch.records import Summary, finished_record, load_records
from DiffusionSegLib.batch.sharding import select_part
from DiffusionSegLib.contract.errors import InvalidRequest


def defaults(tmp_path: Path, **extra) -> Defaults:
    return Defaults(method="adzus", model="some/repo", prompts=("liver",), output_dir=tmp_path / "out",
                    request={"device": "cpu", "seed": 0}, **extra)


def test_csv_manifest_rows_become_requests(tmp_path):
    (tmp_path / "data").mkdir()
    manifest = tmp_path / "data" / "jobs.csv"
    manifest.write_text("image,method,prompt,params,output\n"
                        "a.nrrd,,kidney,,\n"
                        'b.nii.gz,adzus,,"{""latent_mode"": ""clean""}",sub/b-liver.nii.gz\n'
                        "\n"
                        "/abs/c.png,,spleen,,\n", encoding="utf-8-sig")
    cases = read_manifest(manifest, defaults(tmp_path))
    assert [c.case for c in cases] == ["a", "b-liver", "c"]
    a, b, c = (c.request for c in cases)
    assert a["input"] == str(tmp_path / "data" / "a.nrrd")            # relative to the manifest
    assert a["output"] == str(tmp_path / "out" / "a.nrrd")            # default naming: <stem>.nrrd
    assert a["prompt"] == "kidney" and b["prompt"] == "liver"          # an empty cell falls back to --prompt
    assert b["params"] == {"latent_mode": "clean"} and b["output"] == str(tmp_path / "out" / "sub" / "b-liver.nii.gz")
    assert c["input"] == "/abs/c.png" and c["model"] == "some/repo" and c["device"] == "cpu"


def test_jsonl_manifest_and_model_folder_next_to_it(tmp_path):
    (tmp_path / "models" / "sd").mkdir(parents=True)
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text(json.dumps({"case": "p1", "image": "x.nrrd", "model": "models/sd",
                                    "params": {"foreground": "all"}, "prompt": "liver"}) + "\n\n")
    (case,) = read_manifest(manifest, defaults(tmp_path))
    assert case.case == "p1" and case.request["model"] == str(tmp_path / "models" / "sd")
    assert case.request["params"] == {"foreground": "all"}


def test_every_bad_row_is_reported_before_anything_runs(tmp_path):
    manifest = tmp_path / "jobs.csv"
    manifest.write_text("image,prompt,params,colour\n"
                        "a.nrrd,liver,,red\n")
    with pytest.raises(InvalidRequest, match="unknown column.*colour"):
        read_manifest(manifest, defaults(tmp_path))
    manifest.write_text("image,method,params,output\n"
                        "a.nrrd,,{not json,\n"
                        "b.nrrd,no-such-method,,\n"
                        'c.nrrd,,"{""kl_threshold"": -4}",\n'
                        "d.nrrd,,,same.nrrd\n"
                        "e.nrrd,,,same.nrrd\n")
    with pytest.raises(InvalidRequest) as error:
        read_manifest(manifest, defaults(tmp_path))
    message = str(error.value)
    assert "5 problem(s)" in message
    for expected in ("jobs.csv:2", "JSON object", "jobs.csv:3", "no-such-method", "jobs.csv:4", "kl_threshold",
                     "jobs.csv:6", "same.nrrd"):
        assert expected in message


def test_several_prompts_are_one_job(tmp_path):
    manifest = tmp_path / "jobs.csv"
    manifest.write_text("image,method,model,prompt\na.nrrd,,,liver; spleen\n")
    (first,) = read_manifest(manifest, defaults(tmp_path))
    assert first.request["prompts"] == ["liver", "spleen"] and first.request["prompt"] is None
    (tmp_path / "jobs.jsonl").write_text(json.dumps({"image": "b.nrrd", "prompt": ["liver tumour", "liver"]}))
    (second,) = read_manifest(tmp_path / "jobs.jsonl", defaults(tmp_path))
    assert second.request["prompts"] == ["liver tumour", "liver"]
    manifest.write_text("image,method,model,prompt\na.nrrd,,,liver; liver\nb.nrrd,sdseg,/ckpt,liver; spleen\n")
    with pytest.raises(InvalidRequest) as error:                 # the job's own checks, before any load
        read_manifest(manifest, defaults(tmp_path))
    assert "jobs.csv:2" in str(error.value) and "same prompt twice" in str(error.value)
    assert "jobs.csv:3" in str(error.value) and "several" in str(error.value)


def test_folder_mode_takes_images_and_case_folders(tmp_path):
    images = tmp_path / "imgs"
    (images / "series1").mkdir(parents=True)
    for name in ("b.nii.gz", "a.png", "notes.txt", ".hidden.png"):
        (images / name).write_bytes(b"")
    cases = cases_from_folder(images, defaults(tmp_path))
    assert [c.case for c in cases] == ["a", "b", "series1"]
    assert cases[1].request["output"] == str(tmp_path / "out" / "b.nrrd")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidRequest, match="No images"):
        cases_from_folder(tmp_path / "empty", defaults(tmp_path))


@pytest.mark.parametrize("count", [0, 1, 7, 20, 101])
@pytest.mark.parametrize("parts", [1, 2, 3, 8])
def test_shards_are_disjoint_covering_balanced_and_order_free(count, parts):
    keys = [f"case{n:03d}" for n in random.Random(count).sample(range(1000), count)]
    chosen = [select_part(keys, keys, parts, k) for k in range(parts)]
    flat = [key for part in chosen for key in part]
    assert sorted(flat) == sorted(keys) and len(set(flat)) == len(flat)       # covering, disjoint
    assert max(map(len, chosen)) - min(map(len, chosen)) <= 1                  # balanced
    shuffled = random.Random(1).sample(keys, len(keys))                          # manifest order does not matter
    assert [set(select_part(shuffled, shuffled, parts, k)) for k in range(parts)] == [set(p) for p in chosen]
    with pytest.raises(InvalidRequest, match="part-id"):
        select_part(keys, keys, parts, parts)


def _case(folder: Path, prompt: str = "liver") -> Case:
    return Case("a", {"input": "/data/a.nrrd", "output": str(folder / "a.nrrd"), "method": "adzus", "prompt": prompt,
                      "device": "cpu"}, "test", "a.nrrd")


def test_resume_needs_same_request_and_intact_output(tmp_path):
    case = _case(tmp_path)
    (tmp_path / "a.nrrd").write_bytes(b"0123456789")
    summary = Summary(tmp_path, "", ["a"], {})
    summary.record({"case": "a", "status": "ok", "seconds": 1.0, "fingerprint": case.fingerprint,
                    "output": str(case.output), "output_name": "a.nrrd", "output_bytes": 10,
                    "output_sha256": file_sha256(tmp_path / "a.nrrd"), "segments": []})
    assert finished_record(case, load_records(tmp_path))["status"] == "ok"
    device_changed = Case("a", {**case.request, "device": "cuda"}, "test", "a.nrrd")
    assert finished_record(device_changed, load_records(tmp_path)) is not None   # resume on another machine
    assert finished_record(_case(tmp_path, "kidney"), load_records(tmp_path)) is None
    moved = tmp_path.parent / (tmp_path.name + "-moved")                           # the folder moved elsewhere
    shutil.copytree(tmp_path, moved)
    assert finished_record(_case(moved), load_records(moved)) is not None
    (tmp_path / "a.nrrd").write_bytes(b"0123456780")                               # same size, not the same file
    assert finished_record(case, load_records(tmp_path)) is None
    (tmp_path / "a.nrrd").write_bytes(b"01234")                                    # truncated since
    assert finished_record(case, load_records(tmp_path)) is None
    os.remove(tmp_path / "a.nrrd")
    assert finished_record(case, load_records(tmp_path)) is None


def test_a_crash_while_writing_leaves_the_previous_summary(tmp_path, monkeypatch):
    summary = Summary(tmp_path, ".part0of2", ["a", "b"], {"engine": "local"})
    summary.record({"case": "a", "status": "ok", "seconds": 1.0, "segments": [{"label": 1, "name": "x", "voxels": 3}]})
    before = {p.name: p.read_bytes() for p in tmp_path.glob("summary*")}
    assert set(before) == {"summary.part0of2.json", "summary.part0of2.csv"}
    summary.rows["b"] = {"case": "b", "status": "failed", "seconds": 0.1, "error_code": "x", "error_message": "y"}

    def crash(fd):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError):
        summary.write()
    assert {p.name: p.read_bytes() for p in tmp_path.glob("summary*")} == before   # no partial file
    assert not list(tmp_path.glob(".*"))                                             # no temporary file
    assert "x" in (tmp_path / "summary.part0of2.csv").read_text()


def test_rows_between_summary_rewrites_survive_a_crash_in_the_journal(tmp_path):
    summary = Summary(tmp_path, "", ["a", "b", "c"], {})
    for case in "abc":  # within the rewrite interval: only the first reaches summary.json now
        summary.record({"case": case, "status": "ok", "seconds": 1.0, "fingerprint": "f"})
    assert [r["case"] for r in json.loads((tmp_path / "summary.json").read_text())["cases"]] == ["a"]
    with open(tmp_path / "logs" / "journal.jsonl", "a") as journal:
        journal.write('{"case": "d", "sta')                                          # torn by the crash
    assert sorted(load_records(tmp_path)) == ["a", "b", "c"]
    summary.close()
    assert [r["case"] for r in json.loads((tmp_path / "summary.json").read_text())["cases"]] == ["a", "b", "c"]


def test_an_interrupted_case_is_redone_but_a_foreign_file_is_refused(tmp_path):
    from DiffusionSegLib.batch.plan import triage
    from DiffusionSegLib.batch.records import started_row

    case = _case(tmp_path)
    (tmp_path / "a.nrrd").write_bytes(b"written by a job that was stopped before it was recorded")
    summary = Summary(tmp_path, "", ["a"], {})
    assert triage([case], summary, overwrite=False) == []
    assert summary.rows["a"]["error_code"] == "output_exists"
    summary.record(started_row(case))                                            # what a run records first
    fresh = Summary(tmp_path, "", ["a"], {})
    assert triage([case], fresh, overwrite=False) == [case]
    assert triage([_case(tmp_path, "kidney")], Summary(tmp_path, "", ["a"], {}), overwrite=False) == []


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_on_a_terminal():
    from DiffusionSegLib.batch.progress import CaseProgress

    terminal, pipe = _Terminal(), io.StringIO()
    for stream in (terminal, pipe):
        progress = CaseProgress(3, skipped=2, stream=stream)
        for case, status in (("a", "ok"), ("b", "failed")):
            progress.update({"case": case, "status": status})
        progress.close()
        assert (progress.done, progress.failed) == (2, 1)
    assert "2/3" in terminal.getvalue() and "failed=1" in terminal.getvalue() and "2 already done" in terminal.getvalue()
    assert pipe.getvalue() == ""
