"""Training that checks what it made (training/quality.py): a starved run ends with a warning,
its checkpoint and exit 8 saying what to do; `--resume` extends a stage that fell short instead of
reusing it; the floors are the trivial answers' scores, computed the way each stage scores."""

from __future__ import annotations

import json

import pytest
import torch
from sdseg_synthetic import write_png_pairs
from terminal_helpers import json_lines, no_json_line, run_cli

from DiffusionSegLib.cli.main import build_parser
from DiffusionSegLib.contract.errors import EXIT_TRAINING_FELL_SHORT, TrainingFellShort
from DiffusionSegLib.contract.events import JobContext
from DiffusionSegLib.methods.diffugts.validation import pooled_dice
from DiffusionSegLib.training.quality import (
    FLOOR_SHARE,
    VAE_FLOOR,
    check,
    mean_slice_dice,
    raise_if_short,
)

TINY = ["--image-size", "32", "--vae-channels", "8,16,16", "--unet-channels", "16,32", "--batch-size", "4",
        "--val-every", "1000", "--val-fraction", "0.25", "--threads", "1", "--device", "cpu"]


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """The demo's labelled training set (testing/images.py write_demo_inputs)."""
    return write_png_pairs(tmp_path_factory.mktemp("labelled") / "train", 24, size=64, seed=0)


def test_a_starved_sdseg_run_ends_with_a_warning_its_checkpoint_and_exit_8(labelled, tmp_path):
    images, masks = labelled
    command = ["train", "sdseg", "--images", str(images), "--masks", str(masks), "--mask-map", ">0",
               "--max-minutes", "0.1"]
    piped = run_cli(*command, "--output", str(tmp_path / "piped"))
    assert piped.code == EXIT_TRAINING_FELL_SHORT, piped.stderr[-3000:]
    events = json_lines(piped.stdout)
    warned = [e["check"] for e in events if e["event"] == "warning" and "check" in e]
    assert [c["stage"] for c in warned] == ["train_vae", "train"]  # each said as its stage ended
    vae = warned[0]
    assert not vae["passed"] and vae["floor"] == max(VAE_FLOOR, vae["trivial"] + FLOOR_SHARE * (1 - vae["trivial"]))
    result, error = events[-2], events[-1]
    assert result["event"] == "result" and [c["passed"] for c in result["checks"]] == [False, False]
    assert error["event"] == "error" and error["code"] == "training_fell_short"
    assert "VAE stage" in error["message"] and "--max-minutes" in error["hint"] and "--resume" in error["hint"]
    assert (tmp_path / "piped" / "config.json").is_file()  # the checkpoint is written, and flagged
    assert "FELL SHORT" in (tmp_path / "piped" / "README.md").read_text()

    person = run_cli(*command, "--output", str(tmp_path / "person"), stdout="tty", stderr="same")
    assert person.code == EXIT_TRAINING_FELL_SHORT
    screen = " ".join(person.stdout.split())  # unwrapped
    assert no_json_line(person.stdout)
    assert screen.count("warning: VAE stage fell short") == 1 and screen.count("warning: SDSeg stage fell short") == 1
    assert "Training finished" in screen and "(FELL SHORT; floor 0.50" in screen
    assert screen.count("error (training_fell_short): Training fell short") == 1 and "--resume" in screen


def _args(images, masks, out, *extra):
    return build_parser().parse_args(["train", "sdseg", "--images", str(images), "--masks", str(masks),
                                      "--output", str(out), *TINY, *extra])


def test_resume_extends_a_vae_that_fell_short_then_reuses_it_once_it_passes(tmp_path):
    from DiffusionSegLib.methods.sdseg.train import run

    images, masks = write_png_pairs(tmp_path / "data", 8, size=40)
    out = tmp_path / "ckpt"
    first = run(_args(images, masks, out, "--vae-steps", "2", "--steps", "2"), JobContext())
    assert [c["passed"] for c in first["checks"]][0] is False  # 2 VAE steps reconstruct no mask
    with pytest.raises(TrainingFellShort, match="VAE stage"):
        raise_if_short(first)

    events = []
    second = run(_args(images, masks, out, "--vae-steps", "60", "--steps", "3", "--resume"), JobContext(emit=events.append))
    messages = [e.get("message", "") for e in events]
    assert any("Resumed the VAE stage at step 2" in m for m in messages)  # extended, not reused
    vae_steps = [e for e in events if e["event"] == "progress" and e["stage"] == "train_vae"]
    assert vae_steps[0]["done"] == 2 and vae_steps[-1]["done"] == 60
    vae_check = second["checks"][0]
    assert vae_check["stage"] == "train_vae" and vae_check["passed"], vae_check
    assert any("Latent scale factor" in m for m in messages)  # a new VAE: the SDSeg stage starts over
    assert not any("Resumed at step" in m for m in messages) and second["steps"] == 3

    events = []
    third = run(_args(images, masks, out, "--vae-steps", "60", "--steps", "4", "--resume"), JobContext(emit=events.append))
    assert not [e for e in events if e.get("stage") == "train_vae"]  # a VAE that passed is reused
    assert any("Resumed at step 3" in e.get("message", "") for e in events)
    assert [c["stage"] for c in third["checks"]] == ["train"]


def test_floors_are_the_trivial_answers_scored_like_the_stage():
    truth = torch.zeros(4, 8, 8, dtype=torch.bool)
    truth[0, :4, :4] = True   # 16 of 64 pixels
    truth[1, :2, :2] = True   # 4 of 64
    # slices 2 and 3 are empty: all background scores 1 there (both empty = 1), 0 on slices 0-1
    result = check("train", "SDSeg stage", "validation Dice", 0.6, truth)
    assert result.trivial_answer == "all background" and result.trivial == pytest.approx(0.5)
    assert result.floor == pytest.approx(0.5 + FLOOR_SHARE * 0.5) and result.passed
    assert not check("train", "SDSeg stage", "validation Dice", 0.54, truth).passed
    foreground = truth[:2]  # no empty slice: all foreground is the better trivial answer
    fg = check("train_vae", "VAE stage", "mask round-trip Dice", 0.45, foreground, minimum=VAE_FLOOR)
    expected = (2 * 16 / (16 + 64) + 2 * 4 / (4 + 64)) / 2
    assert fg.trivial_answer == "all foreground" and fg.trivial == pytest.approx(expected)
    assert fg.floor == VAE_FLOOR and not fg.passed  # the VAE's own minimum is higher here
    assert mean_slice_dice(foreground, foreground) == 1.0
    pooled = check("heads", "DiffuGTS heads", "refined validation Dice", 0.3, truth, pooled_dice)
    assert pooled.trivial == pytest.approx(2 * 20 / (20 + 256)) and pooled.trivial_answer == "all foreground"
    raise_if_short({"checks": [result.to_dict()]})  # all passed: nothing raised


def test_diffugts_resume_trains_on_an_adapter_that_fell_short(tmp_path):
    from DiffusionSegLib.methods.diffugts.train import adapter_fell_short, heads_checks

    truth = torch.zeros(3, 8, 8, dtype=torch.bool)
    truth[0, 2:5, 2:5] = True
    checks = heads_checks({"coarse_dice": 0.01, "refined_dice": 0.8, "slices": 3.0}, truth, 1.5)
    assert [(c.stage, c.passed) for c in checks] == [("adapter", False), ("heads", True)]
    (tmp_path / "config.json").write_text(json.dumps({"checks": [c.to_dict() for c in checks]}))
    assert adapter_fell_short(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"stage": "adapter"}))  # stopped before validation
    assert not adapter_fell_short(tmp_path)
