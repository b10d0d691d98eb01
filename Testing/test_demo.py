"""`python -m DiffusionSegLib demo`: offline, every method end to end on synthetic inputs with
random-weight models, said to be a plumbing check; outputs on their inputs' grids."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from DiffusionSegLib.cli.commands.demo import JOBS

ROOT = Path(__file__).resolve().parents[1]


def demo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "DiffusionSegLib", "demo", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=900,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"})


def test_demo_runs_every_method_offline_and_says_what_it_is(tmp_path):
    out = tmp_path / "demo"
    done = demo("--output", str(out), "--device", "cpu")
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "PLANTED model, a stand-in for Stable Diffusion" in done.stdout and "RANDOM weights" in done.stdout
    assert f"{len(JOBS)} of {len(JOBS)} jobs ran end to end" in done.stdout
    assert {method for method, *_ in JOBS} == {"adzus", "diffugts", "sdseg"}
    for method, name, *_ in JOBS:
        source = sitk.ReadImage(str(out / name))
        labels = sitk.ReadImage(str(out / f"{name.split('.')[0]}-{method}.nrrd"))
        assert labels.GetSize() == source.GetSize()
        for get in ("GetOrigin", "GetSpacing", "GetDirection"):  # NRRD stores spacing × direction: float rounding
            assert np.allclose(getattr(labels, get)(), getattr(source, get)(), atol=1e-6), get
    # the planted jobs get the known answer, written beside each input and measured against it
    dices = [float(d) for d in re.findall(r"Dice (\d\.\d+) against \w+\.truth\.nrrd", done.stdout)]
    assert len(dices) == sum(model == "planted" for *_, model in JOBS) and min(dices) >= 0.85, dices
    assert (out / "cell.truth.nrrd").exists() and (out / "ct.truth.nrrd").exists()
    for command in ("train sdseg", "segment --method sdseg", "evaluate --method sdseg"):
        assert command in done.stdout  # the real path follows
    readme = (ROOT / "README.md").read_text()
    used = set(re.findall(r"diffusionseg-demo/([\w./-]+\w)", readme))
    assert "labelled/train/images" in used and "cell.png" in used
    for relative in used:  # the README's commands use files the demo really writes
        assert (out / relative).exists(), relative


def test_demo_never_writes_into_a_folder_with_the_users_files(tmp_path):
    (tmp_path / "mine.txt").write_text("keep")
    done = demo("--output", str(tmp_path))
    assert done.returncode == 2 and "not empty" in done.stdout
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]
