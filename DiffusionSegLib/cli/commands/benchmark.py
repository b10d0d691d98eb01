"""`benchmark`: per-stage time and peak memory of a method on a real architecture (random weights)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..arguments import add_model_arguments, add_view_arguments, parse_params
from ..protocol import run_with_events


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--resolution", type=int, default=512, help="model input side in pixels")
    parser.add_argument("--slices", type=int, default=2, help="slices to time (after warm-up)")
    parser.add_argument("--batch-size", type=int, default=1, help="slices per network call")
    parser.add_argument("--warmup", type=int, default=1, help="untimed warm-up slices")
    parser.add_argument("--compare-dtypes", action="store_true",
                        help="run float32 and --dtype (default auto) in this process and print the speed-up")
    parser.add_argument("--no-floor", action="store_true", help="skip the floor and FLOP measurement")
    parser.add_argument("--floor-repeats", type=int, default=1, help="timings per distinct bare network call (best)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the networks (the warm-up then includes compilation: reported)")
    parser.add_argument("--output", default=None, help="write the report as JSON here")
    add_view_arguments(parser)


def main(args: argparse.Namespace) -> int:
    from ...tools.benchmark import format_speedup, format_table, run_benchmark, speedup

    def work(emit, token) -> None:
        args.params = parse_params(args.param)
        if args.compare_dtypes:
            runs = [run_benchmark(args, emit, token, dtype) for dtype in ("float32", args.dtype)]
            report = {"runs": runs, "speedup": speedup(runs[0], runs[1])}
            text = "\n\n".join(format_table(run) for run in runs) + "\n\n" + format_speedup(runs[0], runs[1])
        else:
            report = run_benchmark(args, emit, token, args.dtype)
            text = format_table(report)
        print(text, file=sys.stderr)
        if args.output:
            Path(args.output).write_text(json.dumps(report, indent=2, default=str))
        emit({"event": "result", "output": args.output, "report": report})

    return run_with_events(work, stream=sys.stdout, quiet=args.quiet, json_lines=args.json,
                           command="benchmark")
