"""`train <method>`: train a trainable method; each method adds its own options."""

from __future__ import annotations

import argparse
from typing import Callable

from ..arguments import add_quiet_argument
from ..events import CancelToken, JobContext
from ..methods import available_methods
from ..protocol import run_with_events


def add_arguments(parser: argparse.ArgumentParser) -> None:
    train_methods = parser.add_subparsers(dest="train_method", required=True)
    for name, cls in available_methods().items():
        if cls.info.trainable:
            method_parser = train_methods.add_parser(name, help=cls.info.description)
            cls.add_train_arguments(method_parser)
            add_quiet_argument(method_parser)


def main(args: argparse.Namespace) -> int:
    cls = available_methods()[args.train_method]

    def train(emit: Callable[[dict], None], token: CancelToken) -> None:
        summary = cls.train(args, JobContext(emit=emit, cancel_token=token, seed=getattr(args, "seed", 0)))
        emit({"event": "result", **(summary or {})})

    return run_with_events(train, quiet=args.quiet)
