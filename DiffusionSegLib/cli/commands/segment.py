"""`segment`: one image or volume, from command-line arguments."""

from __future__ import annotations

import argparse

from ...contract.request import SEG_TYPES, JobRequest
from ..arguments import (
    add_model_arguments,
    add_pipeline_arguments,
    add_view_arguments,
    parse_params,
    parse_roi,
    parse_slices,
    pipeline_from_args,
)
from ..protocol import run_with_events


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, help="image file or DICOM series folder")
    parser.add_argument("--output", required=True,
                        help="labelmap to write: .nrrd, .nii.gz, .mha keep label values; .png/.bmp/.tif show them; "
                             ".dcm writes a DICOM SEG (input: a DICOM series)")
    parser.add_argument("--seg-type", choices=SEG_TYPES, default="binary",
                        help="form of a .dcm output: binary SEG (default, read everywhere) or labelmap SEG "
                             "(one frame per slice, DICOM 2024+ readers)")
    parser.add_argument("--overwrite", action="store_true", help="replace the output file if it exists")
    add_model_arguments(parser, several_prompts=True)
    parser.add_argument("--roi", help="i0,j0,k0,i1,j1,k1 inclusive voxel box")
    parser.add_argument("--slices", help="first:last slice indices along the slice axis (inclusive)")
    add_pipeline_arguments(parser)
    parser.add_argument("--evidence", action="store_true",
                        help="also write the result bundle beside the output: <stem>.proposals.nrrd, "
                             "<stem>.scores.json, <stem>.evidence.nrrd, <stem>.uncertainty.nrrd, "
                             "<stem>.pseudo_healthy.nrrd (what the method has; docs/evidence.md)")
    add_view_arguments(parser)


def request_from_args(args: argparse.Namespace) -> JobRequest:
    prompts = args.prompt or []
    request = JobRequest(input=args.input, output=args.output, method=args.method,
                         prompt=prompts[0] if len(prompts) == 1 else None, prompts=prompts if len(prompts) > 1 else None,
                         model=args.model, device=args.device, dtype=args.dtype, threads=args.threads,
                         params=parse_params(args.param),
                         pipeline=pipeline_from_args(args), roi=parse_roi(args.roi),
                         slice_range=parse_slices(args.slices), seed=args.seed, evidence=args.evidence,
                         overwrite=args.overwrite, seg_type=args.seg_type)
    request.validate()
    return request


def main(args: argparse.Namespace) -> int:
    from ...jobs.runner import Runner
    from ...runtime.threads import configure_threads

    configure_threads(getattr(args, "threads", 0))  # this process: physical cores, or the cap

    return run_with_events(lambda emit, token: Runner().run(request_from_args(args), emit, token),
                           quiet=args.quiet, json_lines=args.json, command="segment")
