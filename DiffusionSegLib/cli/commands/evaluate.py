"""`evaluate`: a method over an image folder and a mask folder (Dice, IoU, HD95), every case a job."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..arguments import (
    add_model_arguments,
    add_pipeline_arguments,
    add_view_arguments,
    parse_params,
    pipeline_from_args,
)
from ..protocol import run_with_events


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", required=True, help="folder of images (or one sub-folder per case)")
    parser.add_argument("--masks", required=True, help="folder of ground-truth masks, paired by file stem")
    parser.add_argument("--mask-map", default=None, help="which mask values are foreground: '>0', '255', '128,255'")
    parser.add_argument("--key", default=None, help="regex extracting the pairing key from file stems")
    parser.add_argument("--output", required=True, help="folder for metrics.json, cases.csv (and predictions)")
    parser.add_argument("--overwrite", action="store_true", help="replace metrics.json/cases.csv in --output")
    parser.add_argument("--limit", type=int, default=0, help="only the first N pairs (sorted)")
    parser.add_argument("--cases", default=None, help="comma-separated case keys to evaluate")
    parser.add_argument("--save-predictions", action="store_true", help="keep each case's labelmap as <case>.nrrd")
    parser.add_argument("--oracle", action="store_true",
                        help="also report the oracle choice of unsupervised segments (upper bound)")
    add_model_arguments(parser)
    add_pipeline_arguments(parser)
    add_view_arguments(parser)


def main(args: argparse.Namespace) -> int:
    from ...tools.evaluate import run_evaluation

    def work(emit, token) -> None:
        args.params, args.pipeline = parse_params(args.param), pipeline_from_args(args)
        summary = run_evaluation(args, emit, token)
        emit({"event": "result", "output": str(Path(args.output) / "metrics.json"), "summary": summary})

    return run_with_events(work, quiet=args.quiet, json_lines=args.json, command="evaluate")
