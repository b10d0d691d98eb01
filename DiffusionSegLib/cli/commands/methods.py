"""`methods`: the method registry with parameters, the pipeline defaults and intensity presets."""

from __future__ import annotations

import argparse
import json

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
    for info in data["methods"]:
        print(f"{info['name']:10s} {info['label']}: {info['description']}")
        print(f"{'':10s} prompt {info['prompt']}; default model {info['default_model'] or '(trained checkpoint)'}")
        for p in info["params"]:
            limits = f" [{p['minimum']}, {p['maximum']}]" if p["minimum"] is not None else ""
            choices = f" {{{', '.join(p['choices'])}}}" if p["choices"] else ""
            print(f"{'':12s}{p['name']} ({p['type']}{choices}{limits}) = {p['default']}: {p['help']}")
    print("\nintensity presets (--intensity NAME):")
    for name, preset in data["intensity_presets"].items():
        print(f"{'':2s}{name:16s}{preset['label']}")
    return EXIT_OK
