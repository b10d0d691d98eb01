"""The one-paragraph summary a person reads at the end of a job (see console.py).

A segmentation result is measured from the labelmap file that was written, not from the event:
voxel counts per label and, on a 3D grid, the volume in mL from the voxel spacing (mm³ / 1000);
on a 2D image the share of the image (a photo's pixel spacing is rarely physical). A training
result names the checkpoint and its best validation score.
"""

from __future__ import annotations

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


def segment_sentence(segments: list[dict], output: str) -> str:
    try:
        counts, voxel, dimension, everything = label_measures(output)
    except Exception:  # noqa: BLE001 - the summary can live without the measures
        counts, voxel, dimension, everything = {}, 0.0, 3, 0
    if not segments:
        return "No segment was found (the labelmap is all background)."
    parts = []
    for segment in segments:
        label = int(segment.get("label", 0))
        n = counts.get(label, 0)
        if dimension == 3:
            size = f"{n:,} voxels, {n * voxel / 1000:.2f} mL"
        else:  # a photo's pixel spacing is rarely physical: the share of the image says more
            size = f"{n:,} pixels, {100 * n / max(everything, 1):.1f} % of the image"
        parts.append(f"'{segment.get('name', label)}' (label {label}) {size}")
    return f"{len(segments)} segment{'s' if len(segments) != 1 else ''}: " + "; ".join(parts) + "."


def summary_paragraph(result: dict, seconds: float) -> str:
    """The closing paragraph for a `result` event, `seconds` after the job started."""
    output = result.get("output", "")
    if "segments" in result:
        if not output:   # an empty result asked for as DICOM SEG: no file (the warning says why)
            return f"Done in {_duration(seconds)}: nothing was found, so no DICOM SEG was written."
        what = "a DICOM SEG referencing the input series" if str(output).lower().endswith(".dcm") \
            else "a labelmap on the input's grid"
        text = f"Done in {_duration(seconds)}: wrote {output}, {what}. "
        text += segment_sentence(result["segments"], output)
        if "slices_segmented" in result:
            text += (f" {result['slices_segmented']} slice(s) segmented, {result.get('slices_skipped', 0)} "
                     f"skipped without tissue.")
        return text
    text = f"Training finished in {_duration(seconds)}: checkpoint in {output}."
    best = result.get("best") or {}
    if "val_dice" in best:
        text += f" Best validation Dice {best['val_dice']:.4f} at step {best.get('step')} of {result.get('steps')}."
    metrics = result.get("metrics") or {}
    if "refined_dice" in metrics:
        text += f" Validation Dice {metrics['refined_dice']:.4f} (coarse {metrics.get('coarse_dice', 0):.4f})."
    return text
