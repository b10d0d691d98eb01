"""`train sdseg` options, kept free of torch so building the CLI parser stays light."""

from __future__ import annotations

import argparse

from ...training.arguments import add_data_arguments, add_run_arguments


def parse_channels(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 4:
        raise argparse.ArgumentTypeError(f"channel counts must be >= 4, got {text!r}")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    data = add_data_arguments(parser, output_help="checkpoint folder to write (also holds the resumable state)")
    data.add_argument("--classes", default=None, help="multi-class: mask values of classes 1..K, e.g. '128,255'")
    start = parser.add_argument_group("starting point")
    start.add_argument("--pretrained", default=None, help="diffusers reference with vae/ and a 4-channel unet/")
    start.add_argument("--init-from", default=None, help="SDSeg checkpoint to fine-tune (learning from corrections)")
    start.add_argument("--vae-from", default=None,
                       help="reuse the frozen VAE of this checkpoint (from scratch; skips the VAE stage)")
    start.add_argument("--objective", choices=("sdseg", "supervised"), default="sdseg",
                       help="'supervised': the plain supervised UNet baseline")
    size = parser.add_argument_group("model size (from scratch)")
    size.add_argument("--image-size", type=int, default=64, help="model input side in pixels")
    size.add_argument("--vae-channels", type=parse_channels, default=(16, 32, 32),
                      help="VAE block widths; downsampling factor 2**(n-1)")
    size.add_argument("--latent-channels", type=int, default=4, help="channels of the VAE's latent")
    size.add_argument("--unet-channels", type=parse_channels, default=(32, 64, 64), help="UNet block widths")
    size.add_argument("--layers-per-block", type=int, default=1, help="ResNet layers per UNet block")
    size.add_argument("--denoiser-skip", action=argparse.BooleanOptionalAction, default=None,
                      help="add z_t to the UNet output. Default: on from scratch (a deviation from the paper that "
                           "makes short from-scratch runs converge; see docs/methods/sdseg.md), off with --pretrained "
                           "(the paper's parameterisation), inherited with --init-from; --no-denoiser-skip "
                           "restores the paper's parameterisation from scratch")
    size.add_argument("--dropout", type=float, default=0.0,
                      help="UNet and conditioner dropout (paper 0.2; 0 suits short CPU runs)")
    optim = add_run_arguments(parser, batch_size=8, lr=2e-4, lr_help="AdamW learning rate (paper: 4e-5 at batch 4)",
                              max_minutes_help="wall-time budget of the whole run (data, VAE stage, SDSeg stage, "
                                               "final validation); from scratch the VAE stage gets 25 %% of what "
                                               "is left after loading",
                              resume_help="continue the run saved in --output")
    optim.add_argument("--steps", type=int, default=2000,
                       help="SDSeg steps (the time budget usually ends the stage first); --resume counts on")
    optim.add_argument("--vae-steps", type=int, default=1500, help="VAE steps, from scratch (or the VAE stage's budget)")
    optim.add_argument("--vae-minutes", type=float, default=None,
                       help="budget of the VAE stage instead of its 25 %% share (never more than is left)")
    optim.add_argument("--warmup-steps", type=int, default=100, help="linear learning-rate warm-up")
    optim.add_argument("--latent-weight", type=float, default=1.0, help="lambda of the latent loss")
    optim.add_argument("--ema-decay", type=float, default=0.9999,
                       help="decay of the weights' moving average (the checkpoint holds the average)")
    optim.add_argument("--val-every", type=int, default=250,
                       help="validate (and keep the best weights) every N steps, and at the end")
