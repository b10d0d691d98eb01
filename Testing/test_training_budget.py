"""`--max-minutes` bounds a whole training run: every stage draws from one clock, each stage is
announced, and a cancelled run keeps its finished stages for `--resume`.

The wall-time bound below is the budget's contract (the run must end when its budget says so),
checked against a generous limit derived from the budget, not a speed measurement."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sdseg_synthetic import write_png_pairs

from DiffusionSegLib.cli.main import build_parser
from DiffusionSegLib.contract.errors import EXIT_TRAINING_FELL_SHORT, JobCancelled
from DiffusionSegLib.contract.events import CancelToken, JobContext
from DiffusionSegLib.training.budget import RunBudget, TimeBudget

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--image-size", "32", "--vae-channels", "8,16,16", "--unet-channels", "16,32", "--batch-size", "4",
        "--val-fraction", "0.25", "--threads", "1", "--device", "cpu"]


def stage_announcements(events: list[dict]) -> list[dict]:
    return [e for e in events if e["event"] == "log" and "stage_index" in e]


def test_stages_share_what_is_left_and_are_announced():
    events = []
    budget = RunBudget(10.0, JobContext(emit=events.append), stage_count=3)
    first = budget.stage("a", "first", share=0.25)
    assert first.max_minutes == pytest.approx(2.5, abs=0.01)
    second = budget.stage("b", "second", minutes=30.0)  # an explicit stage budget is capped by what is left
    assert second.max_minutes == pytest.approx(10.0, abs=0.01)
    budget.start -= 11 * 60  # the whole budget is spent: the last stage gets (almost) nothing
    third = budget.stage("c", "third")
    assert third.exhausted()
    announced = stage_announcements(events)
    assert [(e["stage"], e["stage_index"], e["stage_count"]) for e in announced] == [("a", 1, 3), ("b", 2, 3), ("c", 3, 3)]
    assert "Stage 1/3: first (budget 2.50 min" in announced[0]["message"]


def test_without_a_budget_stages_are_unlimited_unless_given_minutes():
    budget = RunBudget(None, JobContext(), stage_count=2)
    assert not budget.stage("a", "first", share=0.25).limited
    assert budget.stage("b", "second", minutes=1.5).max_minutes == 1.5
    assert not TimeBudget(0).exhausted() and TimeBudget(1.0).exhausted(reserve_seconds=61)


def test_max_minutes_bounds_every_stage_of_train_sdseg(tmp_path):
    images, masks = write_png_pairs(tmp_path / "data", 8, size=40)
    out = tmp_path / "ckpt"
    command = [sys.executable, "-m", "DiffusionSegLib", "train", "sdseg", "--images", str(images), "--masks",
               str(masks), "--output", str(out), "--max-minutes", "1", "--steps", "1000000",
               "--vae-steps", "1000000", "--val-every", "50", *TINY]
    began = time.monotonic()
    proc = subprocess.run(command, capture_output=True, encoding="utf-8", cwd=ROOT, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.monotonic() - began
    # whether one minute makes a usable model depends on the machine's speed: a run that fell short
    # says so (exit 8, after its result; test_training_checks.py); either way the budget holds
    assert proc.returncode in (0, EXIT_TRAINING_FELL_SHORT), proc.stderr
    # 1 minute of budget + start-up (imports) and the final validation: the bound is 2 minutes
    assert wall < 120, f"--max-minutes 1 took {wall:.0f} s"
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    if proc.returncode == EXIT_TRAINING_FELL_SHORT:
        assert events.pop()["code"] == "training_fell_short"
    announced = stage_announcements(events)
    assert [e["stage"] for e in announced] == ["train_vae", "train"]
    vae, denoiser = announced
    assert vae["budget_minutes"] == pytest.approx(0.25 * vae["left_minutes"], abs=0.002)  # the stated VAE share
    assert 0.5 < vae["left_minutes"] <= 1.0  # of the run's budget, after loading the data
    assert denoiser["budget_minutes"] == pytest.approx(denoiser["left_minutes"], abs=0.002)  # the rest
    assert denoiser["left_minutes"] <= vae["left_minutes"] - vae["budget_minutes"] + 0.01
    stages = [e["stage"] for e in events if e["event"] == "progress"]
    assert "train_vae" in stages and "train" in stages
    assert stages.index("train_vae") < stages.index("train")
    assert events[-1]["event"] == "result" and events[-1]["steps"] > 0
    card = (out / "README.md").read_text()
    assert "time budget" in card  # stopped by the budget, not the (huge) step counts


def _args(images, masks, out, *extra):
    return build_parser().parse_args(["train", "sdseg", "--images", str(images), "--masks", str(masks),
                                      "--output", str(out), "--vae-steps", "3", "--val-every", "1000", *TINY,
                                      *extra])


def test_cancelled_run_keeps_finished_stages_and_resumes_from_them(tmp_path):
    from DiffusionSegLib.methods.sdseg.train import run

    images, masks = write_png_pairs(tmp_path / "data", 8, size=40)
    out = tmp_path / "ckpt"
    token, events = CancelToken(), []

    def emit(event):
        events.append(event)
        if event["event"] == "progress" and event["stage"] == "train" and event["done"] > 0:
            token.cancel()  # like Cancel in the panel, during the denoiser stage (step 25)

    # 60 VAE steps: a VAE that passes its check (test_training_checks.py), so --resume reuses it
    with pytest.raises(JobCancelled, match="--resume"):
        run(_args(images, masks, out, "--steps", "60", "--vae-steps", "60"), JobContext(emit=emit, cancel_token=token))
    assert (out / "vae" / "config.json").is_file()  # the finished VAE stage is kept
    state = json.loads((out / "training_state" / "state.json").read_text())
    assert state["step"] == 25  # the denoiser's progress up to the cancel is kept too

    events = []
    summary = run(_args(images, masks, out, "--steps", "30", "--vae-steps", "60", "--resume"),
                  JobContext(emit=events.append))
    messages = [e.get("message", "") for e in events]
    assert any("Resumed at step 25" in m for m in messages)
    assert not any("VAE trained" in m for m in messages)
    assert [e["stage"] for e in stage_announcements(events)] == ["train"]
    assert summary["steps"] == 30 and (out / "config.json").is_file()


def test_max_minutes_bounds_train_diffugts(tiny_sd_path, tmp_path):
    from test_diffugts_train_cli import _write_case

    from DiffusionSegLib.methods import get_method

    for n in range(2):
        _write_case(tmp_path, f"case{n}", seed=n)
    args = build_parser().parse_args([
        "train", "diffugts", "--images", str(tmp_path / "images"), "--masks", str(tmp_path / "masks"),
        "--mask-map", ">0", "--output", str(tmp_path / "heads"), "--model", str(tiny_sd_path),
        "--prompt", "brain tumour", "--organ", "brain", "--val-fraction", "0.5", "--adapter-epochs", "1000000",
        "--head-epochs", "1000000", "--inpaint-steps", "2", "--device", "cpu", "--batch-size", "4",
        "--max-minutes", "0.25"])
    events = []
    began = time.monotonic()
    summary = get_method("diffugts").train(args, JobContext(emit=events.append))
    assert time.monotonic() - began < 0.25 * 60 + 60  # the budget, plus one epoch/batch of overrun at most
    assert [e["stage"] for e in stage_announcements(events)] == ["adapter", "residual_head", "validate"]
    assert json.loads((tmp_path / "heads" / "config.json").read_text())["stage"] == "complete"
    assert summary["metrics"]["slices"] >= 1
