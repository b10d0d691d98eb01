"""`batch`: a method over a cohort — a manifest (CSV/JSONL) or an image folder — with one warm
Runner per worker, a summary row per case, resume, sharding and an optional Ray engine.

    python -m DiffusionSegLib batch --manifest jobs.csv --output-dir out/
    python -m DiffusionSegLib batch --images scans/ --method adzus --prompt liver --output-dir out/
    python -m DiffusionSegLib batch --manifest jobs.csv --output-dir out/ --num-parts 4 --part-id 0
    python -m DiffusionSegLib batch --manifest jobs.csv --output-dir out/ --engine ray
    python -m DiffusionSegLib batch --dicomweb http://pacs:8042/dicom-web --study 1.2.3… --method M \
        --output-dir out/ --store

See docs/cohort.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ...contract.errors import InvalidRequest
from ...contract.request import SEG_TYPES, JobRequest
from ...io.images import OUTPUT_SUFFIXES, SEG_SUFFIX
from ..arguments import (
    add_model_arguments,
    add_pipeline_arguments,
    add_view_arguments,
    parse_params,
    pipeline_from_args,
)
from ..protocol import CANCEL_GRACE_S, run_with_events

RAY_SHUTDOWN_GRACE_S = 15.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--manifest", help="cases as .csv/.tsv (header: image or study, method, model, prompt, "
                                           "params, output, case) or .jsonl (one object a line)")
    source.add_argument("--images", help="a folder: every image file (or case sub-folder) is one case")
    parser.add_argument("--output-dir", required=True, help="labelmaps, summary.csv/.json and logs/ go here")
    parser.add_argument("--output-suffix", choices=OUTPUT_SUFFIXES, default=None,
                        help="format of outputs named after the image (default .nrrd; .dcm = DICOM SEG, the "
                             "default with --dicomweb)")
    parser.add_argument("--seg-type", choices=SEG_TYPES, default="binary", help="form of .dcm outputs (DICOM SEG)")
    remote = parser.add_argument_group("DICOMweb (docs/dicom.md)")
    remote.add_argument("--dicomweb", metavar="URL", help="a DICOMweb server (e.g. http://pacs:8042/dicom-web): "
                                                          "cases are the image series of --study or manifest "
                                                          "'study' rows")
    remote.add_argument("--study", action="append", metavar="UID", help="a StudyInstanceUID (repeatable)")
    remote.add_argument("--token-file", help="credentials for the server: a bearer token, 'Bearer …', 'Basic …' "
                                             "or user:password")
    remote.add_argument("--store", action="store_true", help="send each SEG back into its study (STOW-RS)")
    parser.add_argument("--overwrite", action="store_true",
                        help="redo finished cases and replace existing outputs (default: skip / refuse)")
    parser.add_argument("--num-parts", type=int, default=1, help="split the cohort into N parts (one per machine)")
    parser.add_argument("--part-id", type=int, default=0, help="which part this machine runs (0 … N-1)")
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="local: one warm worker in this process; ray: one per GPU (or CPU slot) on Ray")
    parser.add_argument("--workers", type=int, default=0,
                        help="Ray workers (0: one per GPU, else one per CPU slot)")
    parser.add_argument("--cpus-per-worker", type=int, default=1, help="CPUs Ray reserves for each worker")
    parser.add_argument("--ray-address", default=None, help="join this Ray cluster (e.g. auto or ray://host:10001) "
                                                            "instead of starting a local one")
    parser.add_argument("--evidence", action="store_true", help="also write each case's evidence bundle")
    add_model_arguments(parser, required_method=False, several_prompts=True)
    parser.set_defaults(method=None)
    add_pipeline_arguments(parser)
    add_view_arguments(parser)


def check_remote_args(args: argparse.Namespace) -> None:
    if not (args.manifest or args.images or args.study):
        raise InvalidRequest("Name the cases: --manifest FILE, --images DIR, or --dicomweb URL --study UID.")
    if args.dicomweb and args.images:
        raise InvalidRequest("--images reads a local folder; with --dicomweb name studies with --study or a "
                             "manifest's 'study' column.")
    if not args.dicomweb and (args.study or args.store or args.token_file):
        raise InvalidRequest("--study, --store and --token-file go with --dicomweb URL.")
    if args.store and (args.output_suffix or SEG_SUFFIX) != SEG_SUFFIX:
        raise InvalidRequest("--store sends DICOM SEG objects back to the server; leave --output-suffix out "
                             "(or give .dcm).")
    if args.dicomweb and not args.dicomweb.startswith(("http://", "https://")):
        raise InvalidRequest(f"--dicomweb must be an http:// or https:// URL; got {args.dicomweb!r}.")


def remote_cases(args: argparse.Namespace, defaults, log):
    """The image series of the studies on the command line and in a manifest's 'study' rows."""
    from ...batch.dicomweb import Server, study_cases
    from ...batch.manifest import read_manifest

    server = Server(args.dicomweb, args.token_file)
    studies = [({"study": uid}, f"--study {uid}") for uid in args.study or []]
    files = read_manifest(args.manifest, defaults, study_rows=studies) if args.manifest else []
    cases = files + study_cases(server, studies, defaults, args.store, log)
    if not cases:
        raise InvalidRequest("The studies hold no image series to segment.")
    return cases


def plan_from_args(args: argparse.Namespace, log=lambda message: None):
    """Cases and options from the command line; every problem is found here, before any model."""
    from ...batch.manifest import (
        Defaults,
        cases_from_folder,
        local_model,
        read_manifest,
        split_prompts,
    )
    from ...batch.plan import BatchOptions
    from ...batch.ray_engine import RayOptions
    from ...batch.sharding import check_part

    check_part(args.num_parts, args.part_id)
    for name in ("workers", "threads"):
        if getattr(args, name) < 0:
            raise InvalidRequest(f"--{name} must be 0 or more; got {getattr(args, name)}.")
    if args.cpus_per_worker < 1:
        raise InvalidRequest(f"--cpus-per-worker must be at least 1; got {args.cpus_per_worker}.")
    if args.engine != "ray" and (args.workers or args.ray_address or args.cpus_per_worker != 1):
        raise InvalidRequest("--workers, --cpus-per-worker and --ray-address go with --engine ray.",
                             hint="The local engine runs one worker; split a machine's GPUs with --num-parts.")
    if args.images and not args.method:
        raise InvalidRequest("--images needs --method (a manifest may name the method per case instead).")
    check_remote_args(args)
    output_dir = Path(args.output_dir).expanduser().resolve()
    if output_dir.exists() and not output_dir.is_dir():
        raise InvalidRequest(f"--output-dir {output_dir} is a file, not a folder.")
    prompts = args.prompt or []  # repeatable; each may also hold several separated by ';'
    request = {"device": args.device, "pipeline": dict(vars(pipeline_from_args(args))), "seed": args.seed,
               **request_extras(args)}
    defaults = Defaults(method=args.method, model=local_model(args.model, Path.cwd()),
                        prompts=tuple(p for text in prompts for p in split_prompts(text)),
                        params=parse_params(args.param), request=request, output_dir=output_dir,
                        output_suffix=args.output_suffix or (SEG_SUFFIX if args.dicomweb else ".nrrd"))
    if args.dicomweb:
        cases = remote_cases(args, defaults, log)
    else:
        cases = read_manifest(args.manifest, defaults) if args.manifest else cases_from_folder(args.images, defaults)
    ray = RayOptions(address=args.ray_address, workers=args.workers, cpus_per_worker=args.cpus_per_worker,
                     threads=args.threads, use_gpus=args.device != "cpu")
    options = BatchOptions(output_dir=output_dir, overwrite=args.overwrite, num_parts=args.num_parts,
                           part_id=args.part_id, engine=args.engine, threads=args.threads, ray=ray)
    return cases, options


def request_extras(args: argparse.Namespace) -> dict:
    """Request fields that depend on what this DiffusionSegLib's request knows."""
    fields = JobRequest.__dataclass_fields__
    extras = {}
    if "overwrite" in fields:  # the batch decides per case (skip / refuse / redo) before the job runs
        extras["overwrite"] = True
    if args.seg_type != "binary":  # likewise: only when asked
        extras["seg_type"] = args.seg_type
    if args.evidence:  # set only when asked, so requests (and resume fingerprints) stay as they were
        if "evidence" not in fields:
            raise InvalidRequest("--evidence needs the result bundle (job request version 2), which this "
                                 "DiffusionSegLib does not have yet.", hint="Run without --evidence.")
        extras["evidence"] = True
    return extras


def main(args: argparse.Namespace) -> int:
    from ...batch.plan import run_batch

    def work(emit, token) -> None:
        cases, options = plan_from_args(args, lambda message: emit({"event": "log", "level": "info",
                                                                     "message": message}))
        options.output_dir.mkdir(parents=True, exist_ok=True)
        run_batch(cases, options, emit, token)

    # A cancelled Ray run stops its actors and the local cluster (seconds): the watchdog must not
    # cut that short, or Ray's processes outlive the command.
    grace = RAY_SHUTDOWN_GRACE_S if args.engine == "ray" else CANCEL_GRACE_S
    return run_with_events(work, grace=grace, quiet=args.quiet, json_lines=args.json, command="batch")
