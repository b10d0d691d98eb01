"""Command-line options every `train <method>` shares, so all trainers read data the same way.

Kept free of torch: the CLI parser is built before any job runs.
"""

from __future__ import annotations

import argparse


def add_data_arguments(parser: argparse.ArgumentParser, output_help: str) -> argparse._ArgumentGroup:
    """The data group (images, masks, output, mask mapping, pairing key, intensity, validation
    share); returns it so a trainer can add its own data options to the same group."""
    data = parser.add_argument_group("data")
    data.add_argument("--images", required=True, help="folder of images or image volumes")
    data.add_argument("--masks", required=True, help="folder of masks or label volumes (.nrrd, .seg.nrrd, .nii.gz…)")
    data.add_argument("--output", required=True, help=output_help)
    data.add_argument("--mask-map", default=None, help="which mask values are foreground: '>0', '255', '128,255'")
    data.add_argument("--key", default=None, help="regex extracting the shared image/mask key from file stems")
    data.add_argument("--intensity", default="auto", help="intensity preset, as for segmentation")
    data.add_argument("--val-fraction", type=float, default=0.1, help="cases held out for validation Dice")
    return data
