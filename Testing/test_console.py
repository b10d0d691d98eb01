"""What a command prints, by where its output goes: on a terminal the human view only (bars in
place, warnings and errors once, closing words made for the command), piped stdout exactly one
JSON event per line as the Slicer worker, `serve` and scripts read it, `--json` the JSON lines on
a terminal, `--quiet` only warnings and errors. Terminals are real pseudo-terminals, so the
process decides by itself (isatty) as it would for a user."""

from __future__ import annotations

import io
import logging
import re

import numpy as np
import pytest
import SimpleITK as sitk
from helpers import ct_like_volume
from terminal_helpers import json_lines, no_json_line, run_cli

from DiffusionSegLib.cli.console import ConsoleProgress, View, attach, choose_view
from DiffusionSegLib.cli.notices import silence_notices
from DiffusionSegLib.cli.summary import closing_words
from DiffusionSegLib.testing.models import save_tiny_sdseg

BAR = re.compile(r"segment: 100%\|.*6/6 .*(slice/s|s/slice)\]")


def shape_of(events: list[dict]) -> list[tuple]:
    """The event stream without its timings: what must not depend on the view."""
    return [(e["event"], e.get("stage"), e.get("done"), e.get("total")) for e in events]


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """A 6-slice CT-like volume and a tiny SDSeg checkpoint (random weights)."""
    folder = tmp_path_factory.mktemp("console")
    sitk.WriteImage(ct_like_volume(size=(30, 26, 6)), str(folder / "ct.nrrd"))
    model = save_tiny_sdseg(folder / "sdseg")
    args = ["segment", "--method", "sdseg", "--model", str(model), "--input", str(folder / "ct.nrrd"),
            "--device", "cpu"]
    return folder, args


def test_a_person_sees_bars_and_closing_words_a_program_sees_json_lines(job):
    folder, args = job
    person = run_cli(*args, "--output", str(folder / "a.nrrd"), "--evidence", stdout="tty", stderr="same")
    assert person.code == 0, person.stdout[-3000:]
    screen = person.stdout
    assert no_json_line(screen), screen  # not one event on the terminal
    assert BAR.search(screen)  # the tqdm bar in slices
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "a.nrrd")))
    count = int((labels == 1).sum())
    assert count > 0
    millilitres = count * 0.7 * 0.9 * 3.0 / 1000  # helpers.ct_like_volume's spacing
    assert "Done in" in screen and f"'SDSeg' (label 1) {count:,} voxels, {millilitres:.2f} mL" in screen
    assert f"Evidence: {folder / 'a.evidence.nrrd'}" in screen
    assert "accelerate" not in screen  # diffusers' notice that asks nothing of the user

    program = run_cli(*args, "--output", str(folder / "b.nrrd"))  # stdout and stderr piped
    assert program.code == 0, program.stderr[-3000:]
    events = json_lines(program.stdout)  # every stdout line is one JSON event
    assert events[-1]["event"] == "result" and events[-1]["segments"] == [{"label": 1, "name": "SDSeg"}]
    warnings = [e["message"] for e in events if e["event"] == "warning"]
    assert screen.count("warning: ") == len(warnings)  # each said once, not once more as JSON
    assert "100%|" not in program.stderr and "Done in" not in program.stderr  # no terminal, no view

    forced = run_cli(*args, "--output", str(folder / "c.nrrd"), "--json", stdout="tty", stderr="tty")
    assert forced.code == 0, forced.stderr[-3000:]
    assert shape_of(json_lines(forced.stdout)) == shape_of(events)  # --json: the piped stream, on a terminal
    assert "100%|" not in forced.stderr and "Done in" not in forced.stderr

    both = run_cli(*args, "--output", str(folder / "d.nrrd"), stdout="pipe", stderr="tty")  # `segment … | jq`
    assert both.code == 0, both.stderr[-3000:]
    assert shape_of(json_lines(both.stdout)) == shape_of(events)  # the view never changes the events
    assert BAR.search(both.stderr) and "Done in" in both.stderr


def test_quiet_keeps_warnings_and_errors_and_nothing_else(job, tmp_path):
    folder, args = job
    empty = [*args, "--param", "threshold=1"]  # no probability exceeds 1: an empty result, and its warning
    quiet = run_cli(*empty, "--output", str(tmp_path / "q.nrrd"), "--quiet", stdout="tty", stderr="same")
    assert quiet.code == 0, quiet.stdout[-3000:]
    assert "100%" not in quiet.stdout and "Done in" not in quiet.stdout  # no bar, not even the libraries'
    assert quiet.stdout.count("warning: The result is empty") == 1 and no_json_line(quiet.stdout)
    warning = " ".join(quiet.stdout.split())
    assert "checkpoint" in warning and "vote_threshold" not in warning  # SDSeg's advice, not ADZUS's

    failed = run_cli(*empty, "--output", str(tmp_path / "q.nrrd"), "--quiet", stdout="tty", stderr="same")
    assert failed.code == 2  # the output exists now
    assert failed.stdout.count("error (output_exists):") == 1 and "--overwrite" in failed.stdout
    assert no_json_line(failed.stdout)


def test_mistakes_on_a_terminal_are_said_once_in_words_and_piped_as_one_event(tmp_path):
    missing = run_cli("segment", "--method", "adzus", "--input", str(tmp_path / "none.nrrd"),
                      "--output", str(tmp_path / "seg.nrrd"), stdout="tty", stderr="same")
    assert missing.code == 3
    assert missing.stdout.count("error (input_not_found):") == 1 and no_json_line(missing.stdout)

    blank = ["segment", "--method", "adzus", "--prompt", "", "--input", "x.nrrd", "--output", "y.nrrd"]
    typed = run_cli(*blank, stdout="tty", stderr="same")
    assert typed.code == 2 and "the prompt is empty" in typed.stdout and no_json_line(typed.stdout)
    piped = run_cli(*blank)
    assert piped.code == 2
    [event] = json_lines(piped.stdout)
    assert event["code"] == "invalid_request" and "the prompt is empty" in event["message"]


def test_methods_wraps_to_the_terminal():
    narrow = run_cli("methods", stdout="tty", stderr="same", columns=72)
    assert narrow.code == 0
    lines = narrow.stdout.splitlines()
    assert len(lines) > 40 and max(len(line) for line in lines) <= 72
    assert any("--param vote_threshold=" in line for line in lines)  # each parameter with its default


def test_the_view_is_chosen_by_where_stdout_goes():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal, other_terminal, pipe = Terminal(), Terminal(), io.StringIO()
    assert choose_view(terminal, stderr=other_terminal) == View(False, other_terminal)
    assert choose_view(terminal, stderr=pipe) == View(False, terminal)  # stderr redirected: draw on stdout
    assert choose_view(terminal, json_flag=True, stderr=other_terminal) == View(True, None)
    assert choose_view(pipe, stderr=other_terminal) == View(True, other_terminal)
    assert choose_view(pipe, stderr=pipe) == View(True, None)
    sent = []
    assert attach(sent.append, View(True, None)) == sent.append  # JSON only: the writer itself
    human = attach(sent.append, View(False, io.StringIO()))
    human({"event": "log", "level": "info", "message": "x"})
    assert sent == []  # the human view writes no event anywhere


def test_a_warning_repeated_for_every_case_is_said_once_and_counted():
    screen = io.StringIO()
    console = ConsoleProgress(screen, "evaluate")
    for case in ("001", "002", "003"):
        console({"event": "warning", "message": "The result is empty.", "case": case})
    console({"event": "warning", "message": "Another thing.", "case": "002"})
    console({"event": "result", "output": "ev/metrics.json", "summary": {"cases": 3, "metrics": {}}})
    text = screen.getvalue()
    assert text.count("The result is empty.") == 2  # once as it came, once counted at the end
    assert "warning (case 001): The result is empty." in text
    assert 'came 3 times (cases 001, 002, 003)' in text and text.count("Another thing.") == 1


def test_a_broken_display_never_breaks_a_job():
    screen = io.StringIO()
    console = ConsoleProgress(screen)
    console({"event": "progress", "stage": "segment", "done": "not a number", "total": 3})
    console({"event": "progress", "stage": "segment", "done": 1, "total": 3})  # ignored once broken
    assert console.broken and "progress display stopped" in screen.getvalue()


def test_a_budgeted_stage_shows_the_budget_left_not_a_step_eta():
    screen = io.StringIO()
    console = ConsoleProgress(screen, "train")
    console({"event": "log", "level": "info", "message": "Stage 1/2: train the VAE (budget 1.00 min).",
             "stage": "train_vae", "stage_index": 1, "stage_count": 2, "budget_minutes": 1.0})
    console({"event": "progress", "stage": "train_vae", "done": 25, "total": 100000})
    console({"event": "log", "level": "info", "message": "Stage 2/2: train.", "stage": "train",
             "stage_index": 2, "stage_count": 2, "budget_minutes": None})
    console({"event": "progress", "stage": "train", "done": 25, "total": 100})
    text = screen.getvalue()
    assert "Stage 1/2: train the VAE" in text and "VAE stage: 25/100000 steps" in text
    assert "budget 0:5" in text or "budget 1:00" in text  # about a minute left
    assert "training:  25%" in text  # no budget: percentage and ETA from the steps
    assert not console.broken


def test_closing_words_are_made_for_each_command(tmp_path):
    labels = np.zeros((4, 10, 10), np.uint8)
    labels[1:3, 2:7, 2:6] = 1  # 2 * 5 * 4 = 40 voxels
    labels[0, 0, :3] = 2  # 3 voxels
    image = sitk.GetImageFromArray(labels)
    image.SetSpacing((0.5, 2.0, 5.0))  # 5 mm³ per voxel
    sitk.WriteImage(image, str(tmp_path / "seg.nrrd"))
    segment = closing_words("segment", {"output": str(tmp_path / "seg.nrrd"),
                                        "segments": [{"label": 1, "name": "liver"}, {"label": 2, "name": "tumour"}],
                                        "outputs": {"labelmap": "seg.nrrd", "scores": "seg.scores.json"},
                                        "slices_segmented": 4, "slices_skipped": 0}, 12.0)
    assert segment.startswith("Done in 12.0 s")
    assert "'liver' (label 1) 40 voxels, 0.20 mL" in segment and "'tumour' (label 2) 3 voxels, 0.01 mL" in segment
    assert "Evidence: seg.scores.json" in segment

    evaluate = closing_words("evaluate", {"output": "ev/metrics.json", "summary": {
        "cases": 3, "metrics": {"dice": {"mean": 0.8, "std": 0.1, "n": 3}, "iou": {"mean": 0.7, "std": 0.1, "n": 3},
                                "hd95": {"mean": 4.5, "std": 1.0, "n": 3}},
        "worst_cases": [{"case": "c2", "dice": 0.61}, {"case": "c1", "dice": 0.85}]}}, 30.0)
    assert "Evaluated 3 case(s)" in evaluate and "ev/cases.csv" in evaluate and "Training" not in evaluate
    assert "Dice 0.800 ± 0.100" in evaluate and "HD95 4.500" in evaluate and "Lowest Dice: c2 0.610, c1 0.850" in evaluate

    batch = closing_words("batch", {"output": "out/summary.json", "csv": "out/summary.csv",
                                    "counts": {"ok": 10, "failed": 1, "skipped": 2}}, 200.0)
    assert "10 ok, 1 failed, 2 skipped" in batch and "out/summary.csv and out/summary.json" in batch

    trained = closing_words("train", {"output": "ckpt", "steps": 30, "best": {"step": 25, "val_dice": 0.91234},
                                      "checks": [{"label": "VAE stage", "measure": "mask round-trip Dice",
                                                  "score": 0.2, "floor": 0.5, "trivial": 0.21,
                                                  "trivial_answer": "all foreground", "passed": False,
                                                  "detail": "9 steps, 0.5 min"}]}, 200)
    assert "checkpoint in ckpt" in trained and "3.3 min" in trained
    assert "VAE stage: mask round-trip Dice 0.2000 (FELL SHORT; floor 0.50" in trained
    assert "0.9123 at step 25 of 30" in trained


def test_notices_that_ask_nothing_are_dropped_and_other_warnings_kept():
    silence_notices()
    silence_notices()  # twice: one filter
    logger = logging.getLogger("diffusers.models.modeling_utils")
    assert sum(type(f).__name__ == "_DropNotices" for f in logger.filters) == 1
    seen = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    handler, level = Keep(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)  # whatever verbosity an earlier test left to the diffusers loggers
    try:
        logger.warning("Cannot initialize model with low cpu memory usage because `accelerate` was not found in "
                       "the environment.")
        logger.warning("Some weights were not used.")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert seen == ["Some weights were not used."]


def test_a_training_run_says_its_split_and_resumed_stage_not_its_metrics():
    screen = io.StringIO()
    console = ConsoleProgress(screen, "train")
    console({"event": "log", "level": "info", "message": "24 slices from 24 cases: 22 training cases."})
    console({"event": "log", "level": "info", "message": "Resumed the VAE stage at step 6: it fell short."})
    console({"event": "progress", "stage": "train_vae", "done": 3, "total": 10})
    console({"event": "log", "level": "info", "message": "VAE trained for 3 steps.", "metrics": {"vae_steps": 3}})
    console({"event": "warning", "message": "VAE stage fell short: mask round-trip Dice 0.0000.",
             "check": {"stage": "train_vae", "passed": False}})
    text = screen.getvalue()
    assert "24 slices from 24 cases" in text and "Resumed the VAE stage at step 6" in text
    assert "VAE trained for 3 steps" not in text  # a metrics line: for the log and the panel, not the terminal
    assert text.rindex("3/10") < text.index("warning: VAE stage fell short")  # the stage's bar ends above its check
    other = io.StringIO()
    ConsoleProgress(other, "segment")({"event": "log", "level": "info", "message": "DiffusionSeg job: method …"})
    assert other.getvalue() == ""  # a job's info lines stay in the event stream
