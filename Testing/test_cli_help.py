"""The command line explains itself and refuses what it cannot do: every option has a meaning and
shows its default, every command's help ends with the exit statuses, `serve` comes with the
install (and names what is missing when it does not), blank prompts are refused, DiffuGTS says
when a prompt names no abnormality, `reselect` says why an SDSeg result has nothing to re-select."""

from __future__ import annotations

import argparse
import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from DiffusionSegLib.cli.main import build_parser
from DiffusionSegLib.contract.errors import EXIT_MEANINGS, InvalidRequest, error_codes
from DiffusionSegLib.contract.events import JobContext
from DiffusionSegLib.jobs.job import create_method

ROOT = Path(__file__).resolve().parents[1]
JOB_COMMANDS = ("segment", "run", "evaluate", "batch", "reselect", "benchmark", "train sdseg", "train diffugts")


def parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    yield " ".join(path), parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from parsers(sub, (*path, name))


def test_every_option_says_what_it_means_and_its_default():
    found = dict(parsers(build_parser()))
    assert set(JOB_COMMANDS) <= set(found)
    for where, parser in found.items():
        for action in parser._actions:
            if action.option_strings and not isinstance(action, argparse._SubParsersAction):
                assert action.help, f"{where} {action.option_strings[-1]} has no help"
    text = found["train sdseg"].format_help()
    assert "--steps STEPS" in text and "(default: 2000)" in text and "(default: 16,32,32)" in text
    assert "(default: None)" not in text and "(default: False)" not in text  # nothing worth saying: not said
    for name in JOB_COMMANDS:
        options = {o for action in found[name]._actions for o in action.option_strings}
        assert {"--quiet", "--json"} <= options, name


def test_help_ends_with_every_exit_status_and_its_error_codes():
    text = " ".join(dict(parsers(build_parser()))["segment"].format_help().split())
    assert "exit statuses" in text and "errors.py" not in build_parser().format_help()
    for status in EXIT_MEANINGS:
        assert re.search(rf"\b{status} ", text), status
    for codes in error_codes().values():
        for code in codes:
            assert code in text, code


def test_serve_is_installed_with_the_package_and_names_what_is_missing(monkeypatch, capsys):
    listed = re.search(r"^dependencies = \[(.*?)^\]", (ROOT / "pyproject.toml").read_text(), re.S | re.M).group(1)
    core = {re.split(r"[<>=!~ ]", d)[0].lower() for d in re.findall(r'^\s*"([^"]+)"', listed, re.M)}
    slicer = {re.split(r"[<>=!~ ]", line)[0].lower()
              for line in (ROOT / "DiffusionSeg" / "Resources" / "requirements.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    from DiffusionSegLib.cli.commands import serve

    assert set(serve.SERVE_PACKAGES) <= core  # `pip install -e .` (the README's install) brings them
    assert set(serve.SERVE_PACKAGES) <= slicer  # the panel starts `serve` in Slicer's Python
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else real(name, *a))
    assert serve.main(build_parser().parse_args(["serve"])) == 2
    err = capsys.readouterr().err
    assert "serve needs uvicorn" in err and "pip install uvicorn" in err


def test_a_blank_prompt_is_refused_before_anything_runs():
    for argv in (["segment", "--method", "adzus", "--input", "a", "--output", "b", "--prompt", "  "],
                 ["batch", "--images", "d", "--method", "adzus", "--output-dir", "o", "--prompt", ""]):
        with pytest.raises(SystemExit) as stopped:
            build_parser().parse_args(argv)
        assert stopped.value.code == 2


@pytest.mark.parametrize("prompt, warned", [("white blood cell", True), ("liver tumour", False),
                                            ("brain metastases", False), ("lung nodule", False)])
def test_diffugts_warns_when_the_prompt_names_no_abnormality(prompt, warned):
    events = []
    create_method("diffugts", {"organ": "liver"} if warned else {}, prompt, None, JobContext(emit=events.append))
    warnings = [e["message"] for e in events if e["event"] == "warning"]
    assert bool(warnings) == warned
    if warned:
        assert "names no abnormality" in warnings[0] and "--method adzus" in warnings[0]


def test_reselect_explains_that_an_sdseg_result_has_no_proposals(tmp_path):
    from DiffusionSegLib.cli.commands.reselect import reselect_files

    image = sitk.GetImageFromArray(np.zeros((3, 8, 8), np.uint8))
    sitk.WriteImage(image, str(tmp_path / "seg.nrrd"))
    sitk.WriteImage(sitk.Cast(image, sitk.sitkFloat32), str(tmp_path / "seg.evidence.nrrd"))  # what SDSeg writes
    with pytest.raises(InvalidRequest) as refused:
        reselect_files(tmp_path / "seg.nrrd", tmp_path / "new.nrrd", vote_threshold=2.0)
    assert "no proposals" in refused.value.message and "SDSeg" in refused.value.message
    assert "--evidence" not in refused.value.message + (refused.value.hint or "")  # it was given
    assert "threshold" in refused.value.hint
