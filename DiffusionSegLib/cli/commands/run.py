"""`run`: one job from a request file (what the Slicer module writes); its events include the
finished slices as they come (`partial`), which the module shows while the job runs."""

from __future__ import annotations

import argparse

from ...contract.request import JobRequest
from ..arguments import add_view_arguments
from ..protocol import run_with_events


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--request", required=True,
                        help="job request JSON (see docs/cli.md), or a result's <stem>.provenance.json to repeat it")
    parser.add_argument("--output", default=None, help="write the result here instead of the request's output")
    parser.add_argument("--overwrite", action="store_true", help="replace the output (and its record) if it exists")
    add_view_arguments(parser)


def load_request(args: argparse.Namespace) -> JobRequest:
    """The request file, with the command line's --output and --overwrite applied."""
    request = JobRequest.load(args.request)
    if args.output:
        request.output = args.output
    if args.overwrite:
        request.overwrite = True
    request.validate()
    return request


def main(args: argparse.Namespace) -> int:
    from ...jobs.runner import Runner
    from ...runtime.threads import configure_threads

    configure_threads(getattr(args, "threads", 0))  # this process: physical cores, or the cap

    return run_with_events(lambda emit, token: Runner().run(load_request(args), emit, token, partial_results=True),
                           quiet=args.quiet, json_lines=args.json, command="run")
