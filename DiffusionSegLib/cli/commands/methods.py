"""`methods`: the method registry with parameters, the pipeline defaults and intensity presets."""

from __future__ import annotations

import argparse
import json
import shutil
import textwrap

from ...contract.errors import EXIT_OK
from ...contract.request import PipelineOptions
from ...methods import available_methods


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def main(args: argparse.Namespace) -> int:
    from ...contract.choices import presets

    data = {"methods": [cls.info.to_dict() for cls in available_methods().values()],
            "pipeline": PipelineOptions().__dict__, "intensity_presets": presets()}
    if args.json:
        print(json.dumps(data, indent=2))
        return EXIT_OK
    print("\n".join(describe(data, width())))
    return EXIT_OK


def width() -> int:
    """The terminal's width (80 when stdout is not one), at most 110 so paragraphs stay readable."""
    return min(110, shutil.get_terminal_size((80, 24)).columns)


def describe(data: dict, columns: int) -> list[str]:
    """`methods` for a person: each method, its prompt and model, then one wrapped entry per parameter."""
    def wrap(text: str, indent: int, first: str = "") -> list[str]:
        return textwrap.wrap(first + text, columns - 1, initial_indent=" " * indent,
                             subsequent_indent=" " * (indent + 4), break_on_hyphens=False)

    lines: list[str] = []
    for info in data["methods"]:
        lines += wrap(f"{info['description']}", 0, f"{info['name']} ({info['label']}): ")
        lines += wrap(f"prompt {info['prompt']}; default model {info['default_model'] or '(a trained checkpoint)'}", 2)
        for p in info["params"]:
            limits = f" in [{p['minimum']}, {p['maximum']}]" if p["minimum"] is not None else ""
            choices = f" {{{', '.join(p['choices'])}}}" if p["choices"] else ""
            default = p["default"] if p["default"] != "" else '""'
            lines += wrap(f"{p['help']}", 2, f"--param {p['name']}={default}  ({p['type']}{choices}{limits}) ")
        lines.append("")
    lines.append("intensity presets (--intensity NAME):")
    for name, preset in data["intensity_presets"].items():
        lines += wrap(preset["label"], 2, f"{name:16s}")
    return lines
