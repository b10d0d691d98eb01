"""Command line: `python -m DiffusionSegLib <command>` (or the `diffusionseg` script).

segment   one image or volume, from arguments
run       one job from a request file (what the Slicer module writes)
methods   the method registry with parameters (JSON for tools)
evaluate  a method over an image folder and a mask folder: Dice, IoU, HD95
benchmark per-stage time and peak memory on real architectures
train     train a trainable method (see `train <method> --help`)
serve     a warm worker over HTTP: models stay loaded between jobs (docs/service.md)
batch     a method over a cohort (manifest or folder): resumable, sharded, optionally on Ray
reselect  re-choose a result's foreground proposals from its evidence bundle, without the model
demo      offline plumbing check: synthetic inputs, random-weight models, every method

On a terminal a job shows progress bars and closing words; with stdout piped (or `--json`) it
speaks the job contract instead: one JSON event per line on stdout and nothing else there
(library chatter goes to stderr). `<command> --help` lists every option with its default.
"""

from __future__ import annotations

import argparse
import importlib

from .. import __version__
from .notices import silence_notices
from .protocol import JsonErrorArgumentParser, cancel_before_job_starts

# name → (module with add_arguments/main, one-line help). Modules import lightly at top level:
# torch and the models are imported inside `main`, so `--help` and `methods` stay fast.
COMMANDS: dict[str, tuple[str, str]] = {
    "segment": ("DiffusionSegLib.cli.commands.segment", "segment one image or volume"),
    "run": ("DiffusionSegLib.cli.commands.run", "run one job from a request file"),
    "methods": ("DiffusionSegLib.cli.commands.methods", "list methods, their parameters and intensity presets"),
    "evaluate": ("DiffusionSegLib.cli.commands.evaluate", "Dice/IoU/HD95 over image and mask folders"),
    "benchmark": ("DiffusionSegLib.cli.commands.benchmark", "per-stage time and peak memory"),
    "train": ("DiffusionSegLib.cli.commands.train", "train a method"),
    "serve": ("DiffusionSegLib.cli.commands.serve", "a warm worker over HTTP (jobs, events, cancel, results)"),
    "batch": ("DiffusionSegLib.cli.commands.batch", "a method over a cohort: manifest or folder, resume, shards, Ray"),
    "reselect": ("DiffusionSegLib.cli.commands.reselect", "re-choose a result's proposals without the model"),
    "demo": ("DiffusionSegLib.cli.commands.demo", "offline plumbing check of every method (random weights)"),
}


def build_parser() -> argparse.ArgumentParser:
    # argument errors come as a JSON `invalid_request` event too (subparsers inherit the class)
    parser = JsonErrorArgumentParser(prog="python -m DiffusionSegLib", description=__doc__)
    parser.add_argument("--version", action="version", version=f"DiffusionSegLib {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text[:1].upper() + help_text[1:] + ".")
        importlib.import_module(module).add_arguments(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    cancel_before_job_starts()
    silence_notices()
    args = build_parser().parse_args(argv)
    return importlib.import_module(COMMANDS[args.command][0]).main(args)
