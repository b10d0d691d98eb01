"""Several prompts in one job: one named segment per prompt, sharing the work that does not
depend on the prompt.

The method runs once per prompt on the same loaded model (the runner's model cache) and the
same image, so everything prompt-independent comes from the runner's per-image cache: the VAE
latent of every slice and — with ADZUS `proposals=shared` — the DDIM inversion, the
self-attention pass and the merged proposals; per prompt only its cross-attention pass and its
vote remain. Each prompt's foreground (every non-zero label of its result) becomes label i+1,
named after prompt i.

Overlaps: a labelmap holds one label per voxel, so a voxel claimed by several prompts goes to
the prompt listed first (list order is priority, like the Slicer panel's lines, top line
first). The result event reports every overlap (`overlaps`: the two prompts and the voxel
count) and a warning is logged, so nothing is lost silently.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..contract.errors import InvalidRequest
from ..contract.events import JobContext
from ..contract.request import JobRequest
from ..io.images import Volume
from ..methods import Method
from .segmenter import VolumeSegmentation, VolumeSegmenter


def check_several_prompts(methods: list[Method]) -> None:
    info = methods[0].info
    if len(methods) > 1 and not info.prompt_conditioned:
        raise InvalidRequest(f"{info.label} does not use the prompt to decide what to segment, so several "
                             "prompts would give the same mask several times.",
                             hint="Give one prompt (it names the segment), or use a prompt-driven method.")


def segment_prompts(methods: list[Method], request: JobRequest, volume: Volume, context: JobContext,
                    collect_evidence: bool = False) -> tuple[VolumeSegmentation, list[dict[str, Any]]]:
    """(combined segmentation, overlaps). One method instance per prompt, in priority order.
    `collect_evidence`: keep the result bundle's maps (one prompt only; the job checks that)."""
    if len(methods) == 1:
        segmenter = VolumeSegmenter(methods[0], request.pipeline, context, collect_evidence=collect_evidence)
        return segmenter.segment(volume, request.roi, request.slice_range), []
    masks, first = [], None
    for index, method in enumerate(methods):
        context.log(f"Prompt {index + 1}/{len(methods)}: '{method.prompt}'.", prompt=method.prompt)
        context.partial_label = index + 1   # this prompt's segment in the combined result
        try:
            result = VolumeSegmenter(method, request.pipeline, context).segment(volume, request.roi,
                                                                               request.slice_range)
        finally:
            context.partial_label = 1
        context.progress("prompts", index + 1, len(methods))
        masks.append(result.labels > 0)
        first = first or result
    labels, overlaps = combine_masks(masks, [m.prompt or "" for m in methods])
    for overlap in overlaps:
        context.log(f"{overlap['voxels']} voxel(s) matched both '{overlap['prompts'][0]}' and "
                    f"'{overlap['prompts'][1]}'; they are labelled '{overlap['prompts'][0]}' (listed first).",
                    level="warning")
    segments = [{"label": i + 1, "name": method.prompt, "prompt": method.prompt}
                for i, method in enumerate(methods) if np.any(labels == i + 1)]
    for i, method in enumerate(methods):
        if not masks[i].any():
            context.log(f"Nothing was found for '{method.prompt}'.", level="warning", prompt=method.prompt)
    return VolumeSegmentation(labels, None, segments, first.slices_segmented, first.slices_skipped), overlaps


def combine_masks(masks: list[np.ndarray], names: list[str]) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Label i+1 where mask i is set and no earlier mask is; plus the pairwise overlaps."""
    labels = np.zeros(masks[0].shape, dtype=np.uint16)
    for i in reversed(range(len(masks))):  # earlier prompts written last: they win
        labels[masks[i]] = i + 1
    overlaps = []
    for i in range(len(masks)):
        for j in range(i + 1, len(masks)):
            count = int(np.count_nonzero(masks[i] & masks[j]))
            if count:
                overlaps.append({"prompts": [names[i], names[j]], "voxels": count})
    return labels, overlaps
