"""`evaluate`: one method over an image folder and a mask folder.

Every case is a job through the Runner, exactly as `segment` runs it (the model loads once and
stays warm in the runner's cache; cancel, dtype and threads work as for any job), so a case's
labelmap is the one `segment` writes for the same request, bit for bit. Per case Dice, IoU and
HD95 plus mean and standard deviation, as JSON and CSV. For methods that return unsupervised
segments (ADZUS) `--oracle` also asks each job for its evidence bundle and reports the oracle
choice of its proposals: an upper bound of what any segment-selection rule could reach.

Nothing is written until every case is done: labelmaps go to a private folder beside the
output, and the metrics (and, with `--save-predictions`, the labelmaps) are moved into the
output folder at the end, so a cancelled or failed evaluation leaves the output as it was.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..contract.errors import InvalidData, OutputExists
from ..contract.events import CancelToken
from ..contract.request import JobRequest
from ..io.datasets import pair_images_and_masks, parse_mask_mapping, read_mask
from ..io.images import read_volume
from .metrics import dice, hd95, iou, oracle_selection

METRICS = ("dice", "iou", "hd95")
RESULT_FILES = ("metrics.json", "cases.csv")


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


def case_request(args: Any, image: Path, output: Path) -> JobRequest:
    """The job one case runs: what `segment` with the same options would run."""
    request = JobRequest(input=str(image), output=str(output), method=args.method, prompt=args.prompt,
                         model=args.model, device=args.device, dtype=args.dtype, threads=args.threads,
                         params=dict(args.params), pipeline=args.pipeline, seed=args.seed,
                         evidence=bool(args.oracle), overwrite=True)
    request.validate()
    return request


def run_evaluation(args: Any, emit: Callable[[dict], None], cancel_token: CancelToken | None = None,
                   runner: Any = None) -> dict:
    """`args`: the `evaluate` options with `params` (dict) and `pipeline` (PipelineOptions)
    already parsed. Returns the summary written to metrics.json."""
    from ..jobs.runner import Runner

    pairs = select_pairs(args)
    mapping = parse_mask_mapping(args.mask_map)
    output = Path(args.output)
    for name in RESULT_FILES:
        if (output / name).exists() and not getattr(args, "overwrite", False):
            raise OutputExists(f"{output / name} already exists.", hint="Choose another --output folder or pass --overwrite.")
    token = cancel_token or CancelToken()
    runner = runner or Runner()
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".diffusionseg-evaluate-", dir=output.parent))
    try:
        started = time.perf_counter()
        rows, saved, last = [], [], None
        emit({"event": "progress", "stage": "evaluate", "done": 0, "total": len(pairs)})  # before the first case's stages
        for number, pair in enumerate(pairs, start=1):
            token.check()
            truth, _ = read_mask(pair.mask, mapping)
            labelmap_path = staging / f"{pair.key}.nrrd"
            request = case_request(args, pair.image, labelmap_path)
            case_start = time.perf_counter()
            last = runner.run(request, _case_events(emit, pair.key), token)
            labelmap = read_volume(str(labelmap_path), allow_constant=True)
            if truth.shape != labelmap.shape:
                raise InvalidData(f"Case {pair.key}: image is {labelmap.shape} but mask is {truth.shape} (K, J, I).")
            prediction = labelmap.array > 0
            spacing = tuple(reversed(labelmap.spacing))
            row = {"case": pair.key, **case_metrics(prediction, truth, spacing),
                   "seconds": round(time.perf_counter() - case_start, 3),
                   "truth_fraction": float(truth.mean()), "predicted_fraction": float(prediction.mean())}
            proposals = last.outputs.get("proposals")
            if args.oracle and proposals:
                oracle = oracle_selection(read_volume(proposals, allow_constant=True).array, truth)
                row.update({f"oracle_{k}": v for k, v in case_metrics(oracle, truth, spacing).items()})
            if args.save_predictions:
                saved.append(labelmap_path)
            rows.append(row)
            emit({"event": "progress", "stage": "evaluate", "done": number, "total": len(pairs),
                  "case": pair.key, "dice": round(row["dice"], 4)})
        token.check()
        summary = build_summary(args, rows, last, time.perf_counter() - started)
        _write_results(output, staging, summary, rows, saved)
        return summary
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def select_pairs(args: Any) -> list:
    pairs = pair_images_and_masks(args.images, args.masks, args.key)
    if args.cases:
        wanted = {c.strip() for c in args.cases.split(",")}
        pairs = [p for p in pairs if p.key in wanted]
    if args.limit:
        pairs = pairs[: args.limit]
    if not pairs:
        raise InvalidData("No cases left to evaluate after --cases/--limit.")
    return pairs


def _case_events(emit: Callable[[dict], None], case: str) -> Callable[[dict], None]:
    """A case's job events, named by case; its `result` is the evaluation's business, not the
    reader's (the evaluation ends with one result of its own)."""
    def forward(event: dict) -> None:
        if event.get("event") != "result":
            emit({**event, "case": case})
    return forward


def build_summary(args: Any, rows: list[dict], last: Any, seconds: float) -> dict:
    summary = {
        "method": args.method, "model": last.model, "prompt": args.prompt, "params": dict(args.params),
        "images": str(args.images), "masks": str(args.masks), "mask_map": args.mask_map,
        "cases": len(rows), "device": last.device, "dtype": last.dtype,
        "seconds": round(seconds, 2),
        "metrics": summarise(rows),
        "worst_cases": worst_cases(rows),
        "conventions": "Dice/IoU per case (both empty = 1); HD95 in physical units, undefined when a mask is empty.",
        "command": " ".join(sys.argv),
    }
    if args.oracle and any("oracle_dice" in r for r in rows):
        summary["oracle_metrics"] = summarise(rows, prefix="oracle_")
        summary["oracle_note"] = ("Oracle = best union of unsupervised segments chosen WITH the ground truth: "
                                  "an upper bound, not accuracy.")
    return summary


def worst_cases(rows: list[dict], count: int = 3) -> list[dict]:
    """The cases with the lowest Dice: where a reader looks first."""
    scored = sorted((r for r in rows if r.get("dice") is not None), key=lambda r: r["dice"])
    return [{"case": r["case"], "dice": round(float(r["dice"]), 4)} for r in scored[:count]]


def _write_results(output: Path, staging: Path, summary: dict, rows: list[dict], saved: list[Path]) -> None:
    """Metrics and predictions into `output`, each written in the staging folder and renamed."""
    (staging / "metrics.json").write_text(json.dumps({"summary": summary, "cases": rows}, indent=2, default=_clean))
    with open(staging / "cases.csv", "w", newline="") as handle:
        fields = sorted({k for r in rows for k in r}, key=lambda k: (k != "case", k))
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    output.mkdir(parents=True, exist_ok=True)
    for path in saved + [staging / name for name in RESULT_FILES]:
        path.replace(output / path.name)


def _clean(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)
