"""The closing words a person reads at the end of a command (see console.py), one kind per
command: what was written and the numbers that say whether it worked.

A segmentation is measured from the labelmap file that was written, not from the event: voxel
counts per label and, on a 3D grid, the volume in mL from the voxel spacing (mm³ / 1000); on a
2D image the share of the image (a photo's pixel spacing is rarely physical). A training run
names each stage's check (training/quality.py), an evaluation its mean scores and worst cases, a
batch its counts and where its summary is.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def label_measures(path: str | Path) -> tuple[dict[int, int], float, int, int]:
    """(voxel count per non-zero label, voxel size in mm³, dimension, voxel count) of a labelmap."""
    import numpy as np
    import SimpleITK as sitk

    if str(path).lower().endswith(".dcm"):
        from ..io.dicom_seg import seg_measures

        return seg_measures(path)
    image = sitk.ReadImage(str(path))
    values, counts = np.unique(sitk.GetArrayViewFromImage(image), return_counts=True)
    return ({int(v): int(c) for v, c in zip(values, counts) if v != 0},
            float(np.prod(image.GetSpacing())), image.GetDimension(), int(counts.sum()))


def _sizes(segments: list[dict], output: str) -> list[str]:
    """"'name' (label N) V voxels, X mL" per segment, measured from the written labelmap."""
    try:
        counts, voxel, dimension, everything = label_measures(output)
    except Exception:  # noqa: BLE001 - the summary can live without the measures
        counts, voxel, dimension, everything = {}, 0.0, 3, 0
    parts = []
    for segment in segments:
        label = int(segment.get("label", 0))
        n = counts.get(label, 0)
        if dimension == 3:
            size = f"{n:,} voxels, {n * voxel / 1000:.2f} mL"
        else:  # a photo's pixel spacing is rarely physical: the share of the image says more
            size = f"{n:,} pixels, {100 * n / max(everything, 1):.1f} % of the image"
        parts.append(f"'{segment.get('name', label)}' (label {label}) {size}")
    return parts


def segment_sentence(segments: list[dict], output: str) -> str:
    """One line for a result (the demo prints one per job)."""
    if not segments:
        return "No segment was found (the labelmap is all background)."
    parts = _sizes(segments, output)
    return f"{len(segments)} segment{'s' if len(segments) != 1 else ''}: " + "; ".join(parts) + "."


def segment_words(result: dict, seconds: float) -> str:
    output = result.get("output", "")
    if not output:   # an empty result asked for as DICOM SEG: no file (the warning says why)
        return f"Done in {_duration(seconds)}: nothing was found, so no DICOM SEG was written."
    what = "a DICOM SEG referencing the input series" if str(output).lower().endswith(".dcm") \
        else "a labelmap on the input's grid"
    lines = [f"Done in {_duration(seconds)}: wrote {output}, {what}."]
    if "slices_segmented" in result:
        lines[0] += (f" {result['slices_segmented']} slice(s) segmented, {result.get('slices_skipped', 0)} "
                     f"skipped without tissue.")
    segments = result.get("segments") or []
    if segments:
        lines += [f"  {part}" for part in _sizes(segments, output)]
    else:
        lines.append("  No segment was found (the labelmap is all background).")
    outputs = result.get("outputs") or {}
    evidence = [str(path) for name, path in outputs.items() if name not in ("labelmap", "provenance")]
    if evidence:
        lines.append("  Evidence: " + ", ".join(evidence))
    if outputs.get("provenance"):
        lines.append(f"  How it was made: {outputs['provenance']}")
    return "\n".join(lines)


def train_words(result: dict, seconds: float) -> str:
    lines = [f"Training finished in {_duration(seconds)}: checkpoint in {result.get('output', '')}."]
    for check in result.get("checks") or []:
        verdict = "ok" if check.get("passed") else "FELL SHORT"
        lines.append(f"  {check['label']}: {check['measure']} {check['score']:.4f} ({verdict}; floor "
                     f"{check['floor']:.2f}, {check['trivial_answer']} scores {check['trivial']:.4f})"
                     + (f"; {check['detail']}" if check.get("detail") else "") + ".")
    best = result.get("best") or {}
    if "val_dice" in best and best.get("step") is not None:
        lines.append(f"  Best validation Dice {best['val_dice']:.4f} at step {best.get('step')} of "
                     f"{result.get('steps')}; those weights are the checkpoint.")
    return "\n".join(lines)


def evaluate_words(result: dict, seconds: float) -> str:
    summary = result.get("summary") or {}
    output = Path(result.get("output", ""))
    lines = [(f"Evaluated {summary.get('cases', '?')} case(s) in {_duration(seconds)}: {output} and "
              f"{output.with_name('cases.csv')}.")]
    metrics = summary.get("metrics") or {}
    scores = []
    for name, label in (("dice", "Dice"), ("iou", "IoU"), ("hd95", "HD95")):
        value = metrics.get(name) or {}
        if value.get("mean") is not None:
            scores.append(f"{label} {value['mean']:.3f} ± {value.get('std') or 0:.3f} (n={value.get('n')})")
    if scores:
        lines.append("  Mean " + ", ".join(scores) + "; HD95 in physical units.")
    worst = summary.get("worst_cases") or []
    if worst:
        lines.append("  Lowest Dice: " + ", ".join(f"{w['case']} {w['dice']:.3f}" for w in worst) + ".")
    return "\n".join(lines)


def batch_words(result: dict, seconds: float) -> str:
    counts = result.get("counts") or {}
    told = ", ".join(f"{n} {status}" for status, n in counts.items()) or "no case"
    places = " and ".join(str(p) for p in (result.get("csv"), result.get("output")) if p)
    return f"Batch finished in {_duration(seconds)}: {told}. Summary: {places}."


def reselect_words(result: dict, seconds: float) -> str:
    return (f"Done: wrote {result.get('output', '')}, {result.get('voxels', 0):,} foreground voxels "
            f"({result.get('voxels_changed', 0):,} changed).")


def benchmark_words(result: dict, seconds: float) -> str:
    where = f"; the report is in {result['output']}" if result.get("output") else ""
    return f"Benchmark finished in {_duration(seconds)} (table above){where}."


WORDS: dict[str, Callable[[dict, float], str]] = {
    "segment": segment_words, "run": segment_words, "train": train_words, "evaluate": evaluate_words,
    "batch": batch_words, "reselect": reselect_words, "benchmark": benchmark_words}


def closing_words(command: str, result: dict, seconds: float) -> str:
    """What a person reads when `command` ends with `result`, `seconds` after it started."""
    return WORDS.get(command, segment_words)(result, seconds)
