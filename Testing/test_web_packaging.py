"""`python -m DiffusionSegWeb` from any folder once the `web` extra is installed: the wheel built
from pyproject.toml carries the web app, the Slicer module's DiffusionSegSlicerLib (which the app
imports) and their data files, and the app imports from the installed copy, not a source tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    pytest.importorskip("trame_slicer")
    wheels = tmp_path_factory.mktemp("wheel")
    source = tmp_path_factory.mktemp("source") / "repo"   # a copy: the build leaves nothing in the checkout
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info",
                                                               "__pycache__", "Testing"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(wheels), str(source)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = wheels.glob("*.whl")
    target = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(target)
    return target, names


def test_the_wheel_carries_the_web_app_and_the_slicer_side_logic(installed):
    _, names = installed
    for name in ("DiffusionSegWeb/__main__.py", "DiffusionSegWeb/data/window_presets.json",
                 "DiffusionSegSlicerLib/JobStatus.py", "DiffusionSegSlicerLib/data/error_hints.json",
                 "DiffusionSegLib/data/terminology.json", "DiffusionSegLib/api.py"):
        assert name in names, name


def test_the_app_runs_from_another_folder(installed, tmp_path):
    target, _ = installed
    env = {**os.environ, "PYTHONPATH": str(target)}   # the installed copy only, no source tree
    code = ("import DiffusionSegWeb.app, DiffusionSegSlicerLib, DiffusionSegSlicerLib.JobStatus as s; "
            "print(DiffusionSegSlicerLib.__file__); print(len(s.ERROR_HINTS))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    location, hints = out.stdout.split()[-2:]
    assert Path(location).is_relative_to(target) and int(hints) > 10
    help = subprocess.run([sys.executable, "-m", "DiffusionSegWeb", "--help"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert help.returncode == 0 and "--max-upload-mb" in help.stdout
