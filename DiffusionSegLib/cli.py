"""Command line: `python -m DiffusionSegLib <command>` (or the `diffusionseg` script).

segment   one image or volume, from arguments
run       one job from a request file (what the Slicer module writes)
methods   the method registry with parameters (JSON for tools)
evaluate  a method over an image folder and a mask folder: Dice, IoU, HD95
benchmark per-stage time and peak memory on real architectures
train     train a trainable method (see `train <method> --help`)

`segment` and `run` speak the job contract: JSON-lines events on stdout and nothing else there
(library chatter is redirected to stderr), and the exit statuses in errors.py.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from typing import Any, Callable, TextIO

from . import __version__
from .errors import (EXIT_INTERNAL, EXIT_OK, OUT_OF_MEMORY_HINT, DiffusionSegError, InvalidRequest,
                     JobCancelled, OutOfMemory)
from .events import CancelToken, JsonLinesWriter, error_event
from .methods import available_methods
from .request import DEVICES, SLICE_AXES, JobRequest, PipelineOptions


def _isolate_stdout() -> TextIO:
    """Keep stdout for events only: anything else printed (by us, diffusers, C libraries) goes to
    stderr, so the reader of the event stream never sees a stray line."""
    sys.stdout.flush()
    events = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return events


def run_with_events(work: Callable[[Callable[[dict], None], CancelToken], Any],
                    stream: TextIO | None = None) -> int:
    """Run a job with the event protocol, cancellation signals and exit codes around it."""
    emit = JsonLinesWriter(stream or _isolate_stdout())
    token = CancelToken()

    def on_signal(signum: int, frame: Any) -> None:
        token.cancel()
        raise JobCancelled()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        work(emit, token)
        return EXIT_OK
    except DiffusionSegError as error:
        emit(error_event(error.code, error.message, error.hint))
        return error.exit_code
    except Exception as error:  # noqa: BLE001 - the contract needs an error event for anything
        if "out of memory" in str(error).lower():  # wherever it happens: load, merge, decode…
            oom = OutOfMemory("The device ran out of memory.", hint=OUT_OF_MEMORY_HINT)
            emit(error_event(oom.code, oom.message, oom.hint))
            return oom.exit_code
        import traceback

        traceback.print_exc(file=sys.stderr)
        emit(error_event("internal", f"Unexpected error: {type(error).__name__}: {error}",
                         "This is a bug; the log on stderr has the details."))
        return EXIT_INTERNAL
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _parse_params(pairs: list[str]) -> dict[str, str]:
    params = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise InvalidRequest(f"--param expects NAME=VALUE, got {pair!r}.")
        name, value = pair.split("=", 1)
        params[name.strip()] = value.strip()
    return params


def _parse_roi(text: str | None) -> dict | None:
    if not text:
        return None
    try:
        values = [int(v) for v in text.replace(" ", "").split(",")]
    except ValueError:
        values = []
    if len(values) != 6:
        raise InvalidRequest(f"--roi expects i0,j0,k0,i1,j1,k1 (inclusive voxel indices), got {text!r}.")
    return {"ijk_min": values[:3], "ijk_max": values[3:]}


def _parse_slices(text: str | None) -> list[int] | None:
    if not text:
        return None
    first, _, last = text.partition(":")
    try:
        return [int(first), int(last or first)]
    except ValueError:
        raise InvalidRequest(f"--slices expects FIRST:LAST slice indices, got {text!r}.") from None


def add_pipeline_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = PipelineOptions()
    group = parser.add_argument_group("volume pipeline")
    group.add_argument("--axis", choices=SLICE_AXES, default=defaults.axis,
                       help="slice axis (auto = axial; i/j/k = image axes)")
    group.add_argument("--intensity", default=defaults.intensity,
                       help="intensity preset: auto, ct-soft-tissue, ct-lung, mr, rgb, … (see `methods`)")
    group.add_argument("--keep-empty-slices", action="store_true", help="also segment slices without tissue")
    group.add_argument("--no-fill-holes", action="store_true")
    group.add_argument("--largest-component", action="store_true", help="keep the largest 3D component")
    group.add_argument("--batch-size", type=int, default=0, help="slices per batch (0 = from free GPU memory)")


def pipeline_from_args(args: argparse.Namespace) -> PipelineOptions:
    return PipelineOptions(axis=args.axis, intensity=args.intensity, skip_empty_slices=not args.keep_empty_slices,
                           fill_holes=not args.no_fill_holes, largest_component=args.largest_component,
                           batch_size=args.batch_size)


def add_model_arguments(parser: argparse.ArgumentParser, required_method: bool = True) -> None:
    parser.add_argument("--method", required=required_method, help=f"one of: {', '.join(available_methods())}")
    parser.add_argument("--prompt", default=None, help="what to segment, e.g. 'white blood cell'")
    parser.add_argument("--model", default=None, help="HF repo id, diffusers folder or trained checkpoint folder")
    parser.add_argument("--device", choices=DEVICES, default="auto")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="method parameter (repeatable); see `methods`")
    parser.add_argument("--seed", type=int, default=0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m DiffusionSegLib", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"DiffusionSegLib {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    segment = commands.add_parser("segment", help="segment one image or volume")
    segment.add_argument("--input", required=True, help="image file or DICOM series folder")
    segment.add_argument("--output", required=True, help="labelmap to write (.nrrd, .nii.gz, .mha, .png)")
    add_model_arguments(segment)
    segment.add_argument("--roi", help="i0,j0,k0,i1,j1,k1 inclusive voxel box")
    segment.add_argument("--slices", help="first:last slice indices along the slice axis (inclusive)")
    add_pipeline_arguments(segment)

    run = commands.add_parser("run", help="run one job from a request file")
    run.add_argument("--request", required=True, help="job request JSON (see README)")

    methods = commands.add_parser("methods", help="list methods and their parameters")
    methods.add_argument("--json", action="store_true", help="machine-readable output")

    from .evaluate import add_arguments as add_evaluate_arguments
    add_evaluate_arguments(commands.add_parser("evaluate", help="Dice/IoU/HD95 over image and mask folders"))
    from .benchmark import add_arguments as add_benchmark_arguments
    add_benchmark_arguments(commands.add_parser("benchmark", help="per-stage time and peak memory"))

    train = commands.add_parser("train", help="train a method")
    train_methods = train.add_subparsers(dest="train_method", required=True)
    for name, cls in available_methods().items():
        if cls.info.trainable:
            cls.add_train_arguments(train_methods.add_parser(name, help=cls.info.description))
    return parser


def _segment_request(args: argparse.Namespace) -> JobRequest:
    request = JobRequest(input=args.input, output=args.output, method=args.method, prompt=args.prompt,
                         model=args.model, device=args.device, params=_parse_params(args.param),
                         pipeline=pipeline_from_args(args), roi=_parse_roi(args.roi),
                         slice_range=_parse_slices(args.slices), seed=args.seed)
    request.validate()
    return request


def _print_methods(as_json: bool) -> int:
    from .intensity import presets

    data = {"methods": [cls.info.to_dict() for cls in available_methods().values()],
            "pipeline": PipelineOptions().__dict__, "intensity_presets": presets()}
    if as_json:
        print(json.dumps(data, indent=2))
        return EXIT_OK
    for info in data["methods"]:
        print(f"{info['name']:10s} {info['label']}: {info['description']}")
        print(f"{'':10s} prompt {info['prompt']}; default model {info['default_model'] or '(trained checkpoint)'}")
        for p in info["params"]:
            limits = f" [{p['minimum']}, {p['maximum']}]" if p["minimum"] is not None else ""
            choices = f" {{{', '.join(p['choices'])}}}" if p["choices"] else ""
            print(f"{'':12s}{p['name']} ({p['type']}{choices}{limits}) = {p['default']}: {p['help']}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "methods":
        return _print_methods(args.json)
    if args.command in ("segment", "run"):
        from .job import run_job

        def work(emit: Callable[[dict], None], token: CancelToken) -> None:
            request = JobRequest.load(args.request) if args.command == "run" else _segment_request(args)
            run_job(request, emit, token)

        return run_with_events(work)
    if args.command == "evaluate":
        from .evaluate import main as evaluate_main
        return evaluate_main(args)
    if args.command == "benchmark":
        from .benchmark import main as benchmark_main
        return benchmark_main(args)
    if args.command == "train":
        cls = available_methods()[args.train_method]
        from .events import JobContext

        def train(emit: Callable[[dict], None], token: CancelToken) -> None:
            summary = cls.train(args, JobContext(emit=emit, cancel_token=token, seed=getattr(args, "seed", 0)))
            emit({"event": "result", **(summary or {})})

        return run_with_events(train)
    parser.error(f"unknown command {args.command}")
    return EXIT_INTERNAL
