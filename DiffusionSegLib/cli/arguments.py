"""Command-line arguments shared by several commands (segment, evaluate, benchmark, batch …):
the model/method options, the volume pipeline options and the small parsers behind them."""

from __future__ import annotations

import argparse
import shutil
import textwrap

from ..contract.choices import ALIASES, DEVICES, DTYPE_CHOICES, SLICE_AXES
from ..contract.errors import InvalidRequest
from ..contract.request import PipelineOptions
from ..methods import available_methods


def parse_params(pairs: list[str]) -> dict[str, str]:
    params = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise InvalidRequest(f"--param expects NAME=VALUE, got {pair!r}.")
        name, value = pair.split("=", 1)
        params[name.strip()] = value.strip()
    return params


def prompt_text(text: str) -> str:
    """A --prompt value: a blank one is refused, not silently dropped (leave --prompt out instead)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("the prompt is empty; give the text to segment, or leave --prompt out "
                                         "(ADZUS and SDSeg work without one)")
    return text


def parse_roi(text: str | None) -> dict | None:
    if not text:
        return None
    try:
        values = [int(v) for v in text.replace(" ", "").split(",")]
    except ValueError:
        values = []
    if len(values) != 6:
        raise InvalidRequest(f"--roi expects i0,j0,k0,i1,j1,k1 (inclusive voxel indices), got {text!r}.")
    return {"ijk_min": values[:3], "ijk_max": values[3:]}


def parse_slices(text: str | None) -> list[int] | None:
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
    group.add_argument("--no-fill-holes", action="store_true",
                       help="keep holes inside a segment (by default each slice's holes are filled)")
    group.add_argument("--largest-component", action="store_true", help="keep the largest 3D component")
    group.add_argument("--batch-size", type=int, default=0, help="slices per batch (0 = from free GPU memory)")


def pipeline_from_args(args: argparse.Namespace) -> PipelineOptions:
    return PipelineOptions(axis=args.axis, intensity=args.intensity, skip_empty_slices=not args.keep_empty_slices,
                           fill_holes=not args.no_fill_holes, largest_component=args.largest_component,
                           batch_size=args.batch_size)


def add_view_arguments(parser: argparse.ArgumentParser) -> None:
    """`--quiet` and `--json`: what a terminal shows of a job (console.py)."""
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bars (ours or the libraries'), stage lines or closing summary; "
                             "warnings and errors are still said. Piped stdout carries the JSON events either way")
    parser.add_argument("--json", action="store_true",
                        help="JSON events on stdout even when it is a terminal (one object a line, as a pipe "
                             "gets them), instead of bars and a summary")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option's default after its meaning, unless it has none worth saying (off, empty)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        nothing = default is None or default is False or default == "" or default == []  # (0 is a default)
        if (action.option_strings and "%(default)" not in text and not nothing
                and default is not argparse.SUPPRESS and not isinstance(action, argparse._VersionAction)):
            shown = ",".join(map(str, default)) if isinstance(default, (tuple, list)) else "%(default)s"
            text += f" (default: {shown})"
        return text


def exit_epilog() -> str:
    """The exit statuses and their error codes, for the end of every command's --help."""
    from ..contract.errors import EXIT_MEANINGS, error_codes

    codes = error_codes()
    width = max(60, min(100, shutil.get_terminal_size().columns - 2))
    lines = ["exit statuses (docs/cli.md):"]
    for status, meaning in EXIT_MEANINGS.items():
        named = f" [{', '.join(codes.get(status, []))}]" if codes.get(status) else ""
        lines.append(textwrap.fill(f"{meaning}{named}", width, initial_indent=f"  {status:>3}  ",
                                   subsequent_indent=" " * 7))
    return "\n".join(lines)


def add_model_arguments(parser: argparse.ArgumentParser, required_method: bool = True,
                        several_prompts: bool = False) -> None:
    parser.add_argument("--method", required=required_method, help=f"one of: {', '.join(available_methods())}")
    if several_prompts:  # a list in args.prompt: one named segment per prompt, the first wins overlaps
        parser.add_argument("--prompt", action="append", default=None, type=prompt_text,
                            help="what to segment, e.g. 'white blood cell'; repeat for several segments")
    else:
        parser.add_argument("--prompt", default=None, type=prompt_text, help="what to segment, e.g. 'white blood cell'")
    parser.add_argument("--model", default=None,
                        help="Hugging Face repo id, diffusers folder or trained checkpoint folder (default: the "
                             "method's, see `methods`)")
    parser.add_argument("--device", choices=DEVICES, default="auto", help="where to run (auto: CUDA when present)")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="method parameter (repeatable); see `methods`")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random draw (noise, sampling)")
    add_speed_arguments(parser)


def add_speed_arguments(parser: argparse.ArgumentParser) -> None:
    """--dtype and --threads (dtypes.py, threads.py)."""
    parser.add_argument("--dtype", choices=DTYPE_CHOICES + tuple(ALIASES), default="auto",
                        help="compute dtype of the UNet and text encoder (auto: bf16 on CPUs with native bf16 "
                             "(AVX512-BF16/AMX) and on bf16 GPUs, fp16 on older GPUs, else fp32; small UNets "
                             "stay fp32 on a CPU). ADZUS's VAE encoder follows bf16; the VAE decoder, DiffuGTS's "
                             "encoder and SDSeg's VAE stay fp32 (docs/benchmarks-cpu.md)")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads (0 = all physical cores); fewer keeps the desktop responsive")
