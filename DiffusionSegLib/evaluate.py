"""`evaluate`: one method over an image folder and a mask folder.

The model is loaded once; each case goes through the same volume pipeline as `segment`. Per
case Dice, IoU and HD95 plus mean and standard deviation, as JSON and CSV. For methods that
return unsupervised segments (ADZUS) an oracle choice of segments is reported separately as an
upper bound of what any segment-selection rule could reach.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from .datasets import pair_images_and_masks, parse_mask_mapping, read_mask
from .errors import InvalidData
from .events import CancelToken, JobContext
from .imageio import read_volume, write_labelmap
from .metrics import dice, hd95, iou, oracle_selection

METRICS = ("dice", "iou", "hd95")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .arguments import add_model_arguments, add_pipeline_arguments

    parser.add_argument("--images", required=True, help="folder of images (or one sub-folder per case)")
    parser.add_argument("--masks", required=True, help="folder of ground-truth masks, paired by file stem")
    parser.add_argument("--mask-map", default=None, help="which mask values are foreground: '>0', '255', '128,255'")
    parser.add_argument("--key", default=None, help="regex extracting the pairing key from file stems")
    parser.add_argument("--output", required=True, help="folder for metrics.json, cases.csv (and predictions)")
    parser.add_argument("--limit", type=int, default=0, help="only the first N pairs (sorted)")
    parser.add_argument("--cases", default=None, help="comma-separated case keys to evaluate")
    parser.add_argument("--save-predictions", action="store_true")
    parser.add_argument("--oracle", action="store_true",
                        help="also report the oracle choice of unsupervised segments (upper bound)")
    add_model_arguments(parser)
    add_pipeline_arguments(parser)


def summarise(rows: list[dict], prefix: str = "") -> dict:
    summary = {}
    for metric in METRICS:
        values = [r[prefix + metric] for r in rows if r.get(prefix + metric) is not None]
        summary[metric] = {
            "mean": float(np.mean(values)) if values else None,
            "std": float(np.std(values)) if values else None,
            "n": len(values),
        }
    return summary


def case_metrics(prediction: np.ndarray, truth: np.ndarray, spacing: tuple[float, ...]) -> dict:
    return {"dice": dice(prediction, truth), "iou": iou(prediction, truth), "hd95": hd95(prediction, truth, spacing)}


def run_evaluation(args: argparse.Namespace, emit, cancel_token: CancelToken | None = None) -> dict:
    from .arguments import parse_params, pipeline_from_args
    from .job import create_method
    from .models import resolve_device
    from .pipeline import VolumeSegmenter

    pairs = pair_images_and_masks(args.images, args.masks, args.key)
    if args.cases:
        wanted = {c.strip() for c in args.cases.split(",")}
        pairs = [p for p in pairs if p.key in wanted]
    if args.limit:
        pairs = pairs[: args.limit]
    if not pairs:
        raise InvalidData("No cases left to evaluate after --cases/--limit.")
    mapping = parse_mask_mapping(args.mask_map)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    from .dtypes import resolve_policy
    from .threads import configure_threads

    context = JobContext(emit=emit, cancel_token=cancel_token or CancelToken(), seed=args.seed, dtype=args.dtype)
    context.device = str(resolve_device(args.device))
    configure_threads(args.threads)
    method = create_method(args.method, parse_params(args.param), args.prompt, args.model, context)
    started = time.perf_counter()
    method.load()
    segmenter = VolumeSegmenter(method, pipeline_from_args(args), context)
    rows = []
    for number, pair in enumerate(pairs, start=1):
        volume = read_volume(pair.image)
        truth, mask_volume = read_mask(pair.mask, mapping)
        if truth.shape != volume.shape:
            raise InvalidData(f"Case {pair.key}: image is {volume.shape} but mask is {truth.shape} (K, J, I).")
        case_start = time.perf_counter()
        result = segmenter.segment(volume)
        spacing = tuple(reversed(volume.spacing))
        prediction = result.labels > 0
        row = {"case": pair.key, **case_metrics(prediction, truth, spacing),
               "seconds": round(time.perf_counter() - case_start, 3),
               "truth_fraction": float(truth.mean()), "predicted_fraction": float(prediction.mean())}
        if args.oracle and result.segment_map is not None:
            oracle = oracle_selection(result.segment_map, truth)
            row.update({f"oracle_{k}": v for k, v in case_metrics(oracle, truth, spacing).items()})
        if args.save_predictions:
            suffix = ".png" if volume.reference.GetDimension() == 2 else ".nii.gz"
            write_labelmap(result.labels, volume.reference, output / f"{pair.key}{suffix}")
        rows.append(row)
        emit({"event": "progress", "stage": "evaluate", "done": number, "total": len(pairs),
              "case": pair.key, "dice": round(row["dice"], 4)})
    summary = {
        "method": args.method, "model": method.model, "prompt": args.prompt, "params": method.params,
        "images": str(args.images), "masks": str(args.masks), "mask_map": args.mask_map,
        "cases": len(rows), "device": context.device, "dtype": resolve_policy(context.device, args.dtype).name,
        "seconds": round(time.perf_counter() - started, 2),
        "metrics": summarise(rows),
        "conventions": "Dice/IoU per case (both empty = 1); HD95 in physical units, undefined when a mask is empty.",
        "command": " ".join(sys.argv),
    }
    if args.oracle and any("oracle_dice" in r for r in rows):
        summary["oracle_metrics"] = summarise(rows, prefix="oracle_")
        summary["oracle_note"] = "Oracle = best union of unsupervised segments chosen WITH the ground truth: an upper bound, not accuracy."
    (output / "metrics.json").write_text(json.dumps({"summary": summary, "cases": rows}, indent=2, default=_clean))
    with open(output / "cases.csv", "w", newline="") as handle:
        fields = sorted({k for r in rows for k in r}, key=lambda k: (k != "case", k))
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return summary


def _clean(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


def main(args: argparse.Namespace) -> int:
    from .protocol import run_with_events

    def work(emit, token) -> None:
        summary = run_evaluation(args, emit, token)
        emit({"event": "result", "output": str(Path(args.output) / "metrics.json"), "summary": summary})

    return run_with_events(work, stream=sys.stdout)
