"""`train <method>`: train a trainable method; each method adds its own options.

A run whose stages fell short of their checks (training/quality.py) ends with exit 8 after its
result. The output folder is checked and claimed here, for every trainer: a folder that already holds
files (a trained checkpoint) is never written into unless `--resume` continues it or
`--overwrite` says to replace it, and two runs cannot train into one folder at once.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

from ...contract.errors import InvalidRequest, OutputExists
from ...contract.events import CancelToken, JobContext
from ...io.output_files import claim_output
from ...methods import available_methods
from ..arguments import add_view_arguments
from ..protocol import run_with_events


def add_arguments(parser: argparse.ArgumentParser) -> None:
    train_methods = parser.add_subparsers(dest="train_method", required=True)
    for name, cls in available_methods().items():
        if cls.info.trainable:
            method_parser = train_methods.add_parser(name, help=cls.info.description)
            cls.add_train_arguments(method_parser)
            add_view_arguments(method_parser)
            method_parser.add_argument("--overwrite", action="store_true",
                                       help="train into an output folder that already holds files, replacing them")


def check_output_folder(args: argparse.Namespace) -> Path:
    """Refuse a non-empty output folder unless --resume or --overwrite, before any data or model
    is read."""
    output = Path(args.output).expanduser()
    if output.exists() and not output.is_dir():
        raise InvalidRequest(f"--output {output} is a file; training writes a folder.")
    if output.is_dir() and any(output.iterdir()) and not (getattr(args, "resume", False) or args.overwrite):
        raise OutputExists(f"The output folder {output} already holds files (a trained checkpoint?).",
                           hint="Pass --resume to continue that run, --overwrite to replace it, "
                                "or choose a new folder.")
    if not output.parent.is_dir():
        raise InvalidRequest(f"The folder that should hold --output does not exist: {output.parent}")
    return output


def main(args: argparse.Namespace) -> int:
    cls = available_methods()[args.train_method]

    def train(emit: Callable[[dict], None], token: CancelToken) -> None:
        from ...training.quality import raise_if_short

        output = check_output_folder(args)
        with claim_output(output):
            summary = cls.train(args, JobContext(emit=emit, cancel_token=token, seed=getattr(args, "seed", 0)))
        emit({"event": "result", **(summary or {})})
        raise_if_short(summary or {})  # the checkpoint is written; a stage that fell short says so and exits 8

    return run_with_events(train, quiet=args.quiet, json_lines=args.json, command="train")
