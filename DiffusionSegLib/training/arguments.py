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


def add_run_arguments(parser: argparse.ArgumentParser, *, batch_size: int, lr: float, lr_help: str | None = None,
                      max_minutes_help: str = "wall-time budget of the training run",
                      resume_help: str = "continue the run saved in --output") -> argparse._ArgumentGroup:
    """The run options every trainer shares (batch size, learning rate, time budget, resume,
    seed, CPU threads, device); each trainer passes its own defaults and help where they differ.
    Returns the group so a trainer can add its own optimisation options to it."""
    run = parser.add_argument_group("optimisation")
    run.add_argument("--batch-size", type=int, default=batch_size, help="training slices per optimiser step")
    run.add_argument("--lr", type=float, default=lr, help=lr_help or "AdamW learning rate")
    run.add_argument("--max-minutes", type=float, default=None, help=max_minutes_help)
    run.add_argument("--resume", action="store_true", help=resume_help)
    run.add_argument("--seed", type=int, default=0, help="seed of the split, the initial weights and every draw")
    run.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    run.add_argument("--device", default="auto", help="where to train: auto (CUDA when present), cpu, cuda, cuda:N, mps")
    return run
