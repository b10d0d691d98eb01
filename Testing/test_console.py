"""The CLI for people: progress bars and a summary on a terminal's stderr, nothing changed on
stdout (still JSON-lines events), `--quiet` turns the console off. The terminal is a real
pseudo-terminal, so the process decides by itself (isatty) as it would for a user."""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from helpers import ct_like_volume

from DiffusionSegLib.cli.console import ConsoleProgress, attach
from DiffusionSegLib.cli.summary import summary_paragraph

ROOT = Path(__file__).resolve().parents[1]


def run_on_a_terminal(*args: str) -> tuple[int, str, str]:
    """Run the CLI with stderr on a pseudo-terminal and stdout on a pipe: (exit, stdout, terminal)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # rows, columns
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "COLUMNS": "120", "TERM": "xterm"}
    proc = subprocess.Popen([sys.executable, "-m", "DiffusionSegLib", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # the terminal closed: the process has exited
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    stdout, _ = proc.communicate(timeout=300)
    reader.join(timeout=10)
    os.close(master)
    return proc.returncode, stdout.decode(), b"".join(chunks).decode(errors="replace")


def shape_of(stdout: str) -> list[tuple]:
    """The event stream without its timings: what must not depend on the console."""
    events = [json.loads(line) for line in stdout.splitlines()]  # every line is one JSON event
    return [(e["event"], e.get("stage"), e.get("done"), e.get("total")) for e in events]


def test_terminal_gets_bars_and_a_summary_and_stdout_stays_events(tmp_path, tiny_sd_path):
    sitk.WriteImage(ct_like_volume(size=(30, 26, 4)), str(tmp_path / "ct.nrrd"))
    common = ["segment", "--method", "adzus", "--prompt", "liver", "--input", str(tmp_path / "ct.nrrd"),
              "--model", str(tiny_sd_path), "--param", "latent_mode=clean", "--param", "foreground=all",
              "--device", "cpu"]
    code, stdout, terminal = run_on_a_terminal(*common, "--output", str(tmp_path / "seg.nrrd"))
    assert code == 0, terminal[-3000:]
    assert re.search(r"segment: 100%\|.*4/4 .*(slice/s|s/slice)\]", terminal)  # the tqdm bar, in slices
    result = json.loads(stdout.splitlines()[-1])
    assert result["event"] == "result"
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "seg.nrrd")))
    assert "Done in" in terminal
    if result["segments"]:  # random weights: a segment, or an announced "not here"
        first = result["segments"][0]
        count = int((labels == first["label"]).sum())
        millilitres = count * 0.7 * 0.9 * 3.0 / 1000  # helpers.ct_like_volume's spacing
        assert f"{count:,} voxels, {millilitres:.2f} mL" in terminal
    else:
        assert "No segment was found" in terminal and not labels.any()

    code, quiet_stdout, quiet_terminal = run_on_a_terminal(*common, "--output", str(tmp_path / "quiet.nrrd"),
                                                           "--quiet")
    assert code == 0, quiet_terminal[-3000:]
    assert "Done in" not in quiet_terminal and "100%" not in quiet_terminal  # no bar, not even the libraries'
    assert shape_of(quiet_stdout) == shape_of(stdout)  # the console never changes the event stream


def test_summary_measures_the_written_labelmap(tmp_path):
    labels = np.zeros((4, 10, 10), np.uint8)
    labels[1:3, 2:7, 2:6] = 1  # 2 * 5 * 4 = 40 voxels
    labels[0, 0, :3] = 2  # 3 voxels
    image = sitk.GetImageFromArray(labels)
    image.SetSpacing((0.5, 2.0, 5.0))  # 5 mm³ per voxel
    sitk.WriteImage(image, str(tmp_path / "seg.nrrd"))
    text = summary_paragraph({"event": "result", "output": str(tmp_path / "seg.nrrd"),
                              "segments": [{"label": 1, "name": "liver"}, {"label": 2, "name": "tumour"}],
                              "slices_segmented": 4, "slices_skipped": 0}, 12.0)
    assert "'liver' (label 1) 40 voxels, 0.20 mL" in text and "'tumour' (label 2) 3 voxels, 0.01 mL" in text
    assert text.startswith("Done in 12.0 s")
    trained = summary_paragraph({"event": "result", "output": "ckpt", "steps": 30,
                                 "best": {"step": 25, "val_dice": 0.91234}}, 200)
    assert "checkpoint in ckpt" in trained and "0.9123 at step 25 of 30" in trained and "3.3 min" in trained


def test_console_is_off_without_a_terminal_and_never_breaks_a_job():
    sent = []
    assert attach(sent.append, stream=io.StringIO()) == sent.append  # not a terminal: events only
    screen = io.StringIO()
    console = ConsoleProgress(screen)
    console({"event": "progress", "stage": "segment", "done": "not a number", "total": 3})
    console({"event": "progress", "stage": "segment", "done": 1, "total": 3})  # ignored once broken
    assert console.broken and "progress display stopped" in screen.getvalue()


def test_a_budgeted_stage_shows_the_budget_left_not_a_step_eta():
    screen = io.StringIO()
    console = ConsoleProgress(screen)
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
