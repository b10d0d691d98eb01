"""The volume pipeline shared by every method.

read → pick slices (axis, range, ROI, tissue) → normalise → letterbox → batches → method →
inverse letterbox → 3D post-processing. A `VolumeSegmenter` holds one loaded method, so
`evaluate` and a persistent worker can segment many volumes with one model load.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..contract.errors import OUT_OF_MEMORY_HINT, OutOfMemory
from ..contract.events import JobContext
from ..contract.request import PipelineOptions
from ..decision.selection import result_warning, select_labels
from ..imaging.intensity import choose_mapping, has_tissue
from ..imaging.letterbox import Letterbox
from ..imaging.postprocess import finish_labels, match_labels_across_slices
from ..imaging.slicing import SlicePlan, plan_slices
from ..io.images import Volume
from ..methods.base import Method
from .evidence import EvidenceCollector

MAX_AUTO_BATCH = 16
MEMORY_HEADROOM = 0.8   # of the free GPU memory; the rest absorbs fragmentation and other processes
TISSUE_LEVEL = 0.05  # normalised intensity above which a pixel counts as tissue (as `has_tissue`)


@dataclass
class VolumeSegmentation:
    labels: np.ndarray                       # (K, J, I) on the input grid
    segment_map: np.ndarray | None           # every unsupervised segment, when the method has them
    segments: list[dict] = field(default_factory=list)
    slices_segmented: int = 0
    slices_skipped: int = 0
    warning: str | None = None               # empty or whole-tissue result: the job's `warning` event
    evidence: EvidenceCollector | None = None  # the result bundle's maps, when asked for


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error).lower()


class VolumeSegmenter:
    def __init__(self, method: Method, options: PipelineOptions, context: JobContext,
                 collect_evidence: bool = False):
        self.method = method
        self.options = options
        self.context = context
        self.collect_evidence = collect_evidence

    def batch_size(self) -> int:
        """The requested batch size; automatic (0) is 1 on CPU/MPS and, on CUDA, 1 for the first
        batch, whose peak memory then sizes the rest (`measured_batch_size`)."""
        return self.options.batch_size if self.options.batch_size > 0 else 1

    def _measures_memory(self) -> bool:
        return self.options.batch_size == 0 and self.context.device.startswith("cuda")

    def measured_batch_size(self, baseline: int) -> int:
        """After one slice ran from `baseline` allocated bytes: how many fit in the free memory."""
        per_slice = max(1, torch.cuda.max_memory_allocated() - baseline)
        free, _ = torch.cuda.mem_get_info()
        reusable = torch.cuda.memory_reserved() - torch.cuda.memory_allocated()  # cached by torch
        size = batch_size_from_memory(per_slice, free + reusable)
        self.context.log(f"Measured {per_slice / 2**20:.0f} MiB per slice; batch size {size}.")
        return size

    def segment(self, volume: Volume, roi: dict | None = None,
                slice_range: list[int] | None = None) -> VolumeSegmentation:
        ctx = self.context
        plan = plan_slices(volume, self.options.axis, roi, slice_range)
        mapping = choose_mapping(volume.array, volume.is_rgb, self.options.intensity)
        ctx.log(f"Slicing the {plan.view} way: {len(plan.indices)} slice(s) of "
                f"{plan.slice_shape()[0]}×{plan.slice_shape()[1]} px; intensity preset '{mapping.preset}'.")
        with ctx.timed("preprocess"):
            # Only the tissue decision is kept: slices are normalised again per batch, so a large
            # CT never exists as a float RGB copy (normalising is cheap next to the model).
            todo = list(plan.indices)
            if self.options.skip_empty_slices:
                todo = [i for i in todo if has_tissue(mapping.apply(plan.extract(volume.array, i)))]
        skipped = len(plan.indices) - len(todo)
        if skipped:
            ctx.log(f"Skipping {skipped} slice(s) without tissue.")
        labels = np.zeros(volume.shape, dtype=np.uint16)
        segment_map = None
        box = Letterbox.fit(*plan.slice_shape(), self.method.image_size, plan.pixel_spacing(volume.spacing))
        valid = box.valid_mask()
        collector = EvidenceCollector(volume, plan, box, mapping) if self.collect_evidence else None
        consistent = True
        tissue = np.zeros(volume.shape, dtype=bool)
        tables: dict = {}
        selection = None
        size = self.batch_size()
        measure = self._measures_memory()
        done = 0
        ctx.progress("segment", 0, len(todo))
        while done < len(todo):
            ctx.check_cancelled()
            batch = todo[done:done + size]
            images = torch.from_numpy(np.stack([mapping.apply(plan.extract(volume.array, i)) for i in batch]))
            with ctx.timed("letterbox"):
                model_input = box.forward(images)
            try:
                if measure:
                    torch.cuda.reset_peak_memory_stats()
                    baseline = torch.cuda.memory_allocated()
                result = self.method.segment(model_input, valid.expand(len(batch), -1, -1), indices=list(batch))
                if measure:
                    size, measure = self.measured_batch_size(baseline), False
            except (RuntimeError, torch.cuda.OutOfMemoryError) as error:
                if not is_out_of_memory(error):
                    raise
                if ctx.device.startswith("cuda"):
                    torch.cuda.empty_cache()
                if size == 1:
                    raise OutOfMemory("The GPU ran out of memory even for one slice at a time.",
                                      hint=OUT_OF_MEMORY_HINT) from None
                size = max(1, size // 2)
                ctx.log(f"Out of GPU memory; retrying with batch size {size}.", level="warning")
                continue
            consistent = consistent and result.consistent_ids
            with ctx.timed("restore"):
                restored = box.inverse_labels(result.labels.cpu()).numpy()
                restored_map = None
                if result.segment_map is not None:
                    restored_map = box.inverse_labels(result.segment_map.cpu()).numpy()
                    if segment_map is None:
                        segment_map = np.zeros(volume.shape, dtype=np.uint16)
            for n, index in enumerate(batch):
                plan.place(labels, index, restored[n])
                plan.place(tissue, index, images[n].mean(0).numpy() > TISSUE_LEVEL)
                if restored_map is not None:
                    plan.place(segment_map, index, restored_map[n])
                if result.scores is not None:
                    tables[index] = result.scores[n]
            ctx.partial(labels, plan.axis, batch)   # the finished slices, shown as they come (contract/partial.py)
            selection = result.selection if result.scores is not None else selection
            if collector is not None:
                collector.add(batch, result)
            done += len(batch)
            ctx.progress("segment", done, len(todo))
        if selection is not None and segment_map is not None:
            with ctx.timed("select"):
                # the volume-level decision: proposals + scores → labels (what `reselect` redoes)
                labels = select_labels(segment_map, tables, selection, plan.axis)
                consistent = selection.mode != "all"
        with ctx.timed("postprocess"):
            labels = self._postprocess(labels, plan, consistent)
            local_map = segment_map
            if segment_map is not None and segment_map.shape[plan.axis] > 1:
                # unsupervised ids are per slice: match them so a 3D oracle compares like with like
                segment_map = match_labels_across_slices(segment_map, plan.axis)
            if collector is not None:  # the bundle's proposals and the scores that name them
                collector.set_proposals(local_map, segment_map, tables, selection)
        present = [int(v) for v in np.unique(labels) if v != 0]
        segments = [{"label": v, "name": self.method.segment_name(v)} for v in present]
        mode = selection.mode if selection is not None else None  # the advice names that rule's parameters
        warning = result_warning(labels, tissue, plan.axis, todo, mode) if todo else all_skipped_warning(mapping.preset)
        return VolumeSegmentation(labels, segment_map, segments, len(todo), skipped, warning, collector)

    def _postprocess(self, labels: np.ndarray, plan: SlicePlan, consistent: bool) -> np.ndarray:
        return finish_labels(labels, plan.axis, consistent, self.options.fill_holes, self.options.largest_component)


def all_skipped_warning(preset: str) -> str:
    """Why a volume whose every slice was skipped is empty, and what to do about it."""
    return (f"The result is empty: every slice was skipped as having no tissue under the intensity preset "
            f"'{preset}' (normalised intensity above {TISSUE_LEVEL} on too few pixels). If the image does hold "
            "tissue, choose the intensity preset that fits it, or keep empty slices (--keep-empty-slices).")


def batch_size_from_memory(bytes_per_slice: int, available_bytes: int, cap: int = MAX_AUTO_BATCH) -> int:
    """Slices per batch that fit `MEMORY_HEADROOM` of the available memory (at least 1, at most cap)."""
    return int(max(1, min(cap, MEMORY_HEADROOM * available_bytes // max(1, bytes_per_slice))))
