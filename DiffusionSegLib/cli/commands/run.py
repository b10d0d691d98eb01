"""`run`: one job from a request file (what the Slicer module writes); its events include the
finished slices as they come (`partial`), which the module shows while the job runs."""

from __future__ import annotations

import argparse

from ...contract.request import JobRequest
from ..arguments import add_quiet_argument
from ..protocol import run_with_events


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--request", required=True, help="job request JSON (see docs/cli.md)")
    add_quiet_argument(parser)


def main(args: argparse.Namespace) -> int:
    from ...jobs.runner import Runner
    from ...runtime.threads import configure_threads

    configure_threads(getattr(args, "threads", 0))  # this process: physical cores, or the cap

    return run_with_events(lambda emit, token: Runner().run(JobRequest.load(args.request), emit, token,
                                                            partial_results=True),
                           quiet=args.quiet)
