"""Training data: pairs of images and masks turned into letterboxed (3, S, S) slices.

Sources, paired by file stem with `datasets.pair_images_and_masks`:
- 2D image files with 2D masks (PNG/BMP/JPG...), and
- image volumes with label volumes (NRRD, NIfTI, MHA, incl. Slicer's `.seg.nrrd`); a label
  volume on a different grid (Slicer saves segmentations cropped to their extent) is resampled
  onto the image grid by physical coordinates, nearest neighbour.
Preprocessing is the inference pipeline's own (intensity mapping, slice plan, letterbox): what
the model is trained on is what `segment` will feed it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..contract.errors import InvalidData

# Empty slices of a volume (no label) are kept in this proportion to labelled ones: enough to
# learn "nothing here", few enough not to drown the foreground.
DEFAULT_EMPTY_SLICE_RATIO = 0.25


@dataclass
class SliceSet:
    """Model-ready slices: images (N, 3, S, S) in [0, 1], masks (N, S, S) int64 class ids."""

    images: torch.Tensor
    masks: torch.Tensor
    cases: list[str] = field(default_factory=list)  # case key of every slice

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, case_keys: Sequence[str]) -> "SliceSet":
        wanted = set(case_keys)
        index = [i for i, case in enumerate(self.cases) if case in wanted]
        return SliceSet(self.images[index], self.masks[index], [self.cases[i] for i in index])


def split_cases(keys: Sequence[str], val_fraction: float, seed: int | None = 0) -> tuple[list[str], list[str]]:
    """Deterministic split by case (never by slice: slices of one volume are not independent).

    Keys are sorted first, so the result does not depend on file-system order (the reference
    code's unsorted glob made its splits irreproducible). seed None keeps sorted order and takes
    the last cases for validation; an int shuffles the sorted list with that seed."""
    ordered = sorted(set(keys))
    if not 0.0 <= val_fraction < 1.0:
        raise InvalidData(f"The validation fraction must be in [0, 1); got {val_fraction}.")
    n_val = int(round(len(ordered) * val_fraction))
    if val_fraction > 0 and len(ordered) > 1:
        n_val = max(1, n_val)
    n_val = min(n_val, len(ordered) - 1)
    if seed is not None:
        random.Random(seed).shuffle(ordered)
    train, val = ordered[:len(ordered) - n_val], ordered[len(ordered) - n_val:]
    return sorted(train), sorted(val)


def parse_class_values(text: str | None) -> list[float] | None:
    """'128,255' as class list for multi-class training: value i-th → class i+1."""
    if not text:
        return None
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InvalidData(f"Cannot read class values {text!r}; use e.g. '128,255'.") from None


def _mask_on_image_grid(mask_array: np.ndarray, mask_reference, image_reference, case: str) -> np.ndarray:
    """Resample a label array onto the image's grid when their geometries differ."""
    import SimpleITK as sitk

    same = (mask_reference.GetSize() == image_reference.GetSize()
            and np.allclose(mask_reference.GetOrigin(), image_reference.GetOrigin(), atol=1e-4)
            and np.allclose(mask_reference.GetSpacing(), image_reference.GetSpacing(), atol=1e-5)
            and np.allclose(mask_reference.GetDirection(), image_reference.GetDirection(), atol=1e-5))
    if same:
        return mask_array
    if mask_reference.GetDimension() == 2 or image_reference.GetDimension() == 2:
        raise InvalidData(f"Case {case}: mask size {mask_reference.GetSize()} does not match image size "
                          f"{image_reference.GetSize()}.", hint="Each mask must have its image's size.")
    labels = sitk.GetImageFromArray(mask_array.astype(np.uint16))
    labels.CopyInformation(mask_reference)
    resampled = sitk.Resample(labels, image_reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                              sitk.sitkUInt16)
    return sitk.GetArrayFromImage(resampled)


def _read_labels(path: Path, mask_map: str | None, class_values: list[float] | None):
    """(K, J, I) int class ids and the mask's volume; binary unless class values are given."""
    from ..io.datasets import parse_mask_mapping, read_mask
    from ..io.images import read_volume

    if class_values:
        volume = read_volume(path, allow_constant=True)
        values = volume.array if not volume.is_rgb else volume.array.max(axis=-1)
        labels = np.zeros(values.shape, dtype=np.int64)
        for class_id, value in enumerate(class_values, start=1):
            labels[values == value] = class_id
        return labels, volume
    foreground, volume = read_mask(path, parse_mask_mapping(mask_map))
    return foreground.astype(np.int64), volume


def load_slices(images: str | Path, masks: str | Path, image_size: int, mask_map: str | None = None,
                class_values: list[float] | None = None, intensity: str = "auto", axis: str = "auto",
                empty_slice_ratio: float = DEFAULT_EMPTY_SLICE_RATIO, key: str | None = None) -> SliceSet:
    """Read every pair and preprocess it as the inference pipeline does."""
    from ..contract.errors import DiffusionSegError
    from ..imaging.intensity import choose_mapping
    from ..imaging.letterbox import Letterbox
    from ..imaging.slicing import plan_slices
    from ..io.datasets import pair_images_and_masks
    from ..io.images import read_volume

    pairs = pair_images_and_masks(images, masks, key)
    out_images: list[torch.Tensor] = []
    out_masks: list[torch.Tensor] = []
    cases: list[str] = []
    for pair in pairs:
        try:
            volume = read_volume(pair.image)
            labels, mask_volume = _read_labels(pair.mask, mask_map, class_values)
        except DiffusionSegError as error:
            if isinstance(error, InvalidData):
                raise
            raise InvalidData(f"Case {pair.key}: {error.message}", hint=error.hint) from None
        if labels.shape != volume.shape:
            labels = _mask_on_image_grid(labels, mask_volume.reference, volume.reference, pair.key)
        if labels.shape != volume.shape:
            raise InvalidData(f"Case {pair.key}: mask size {labels.shape[::-1]} differs from image size "
                              f"{volume.shape[::-1]}.", hint="Each mask must cover its image pixel for pixel.")
        plan = plan_slices(volume, axis)
        mapping = choose_mapping(volume.array, volume.is_rgb, intensity)
        box = Letterbox.fit(*plan.slice_shape(), image_size, plan.pixel_spacing(volume.spacing))
        for index in _slices_to_keep(plan, labels, empty_slice_ratio):
            pixels = torch.from_numpy(mapping.apply(plan.extract(volume.array, index)))[None]
            label = torch.from_numpy(plan.extract(labels, index).astype(np.float32))[None, None]
            out_images.append(box.forward(pixels)[0])
            out_masks.append(_letterbox_labels(box, label))
            cases.append(pair.key)
    if not out_images:
        raise InvalidData(f"No slice with a mask was found in {masks}.")
    if not any(bool(m.any()) for m in out_masks):
        raise InvalidData(f"Every mask in {masks} is empty: there is nothing to learn.",
                          hint="Check the mask mapping (e.g. '>0' or '255').")
    return SliceSet(torch.stack(out_images).clamp(0, 1), torch.stack(out_masks), cases)


def _slices_to_keep(plan, labels: np.ndarray, empty_slice_ratio: float) -> list[int]:
    """Every labelled slice plus evenly spaced empty ones (a 2D image is always kept: an empty
    mask there is a real "nothing to segment" example)."""
    if len(plan.indices) == 1:
        return list(plan.indices)
    labelled = [i for i in plan.indices if plan.extract(labels, i).any()]
    empty = [i for i in plan.indices if i not in set(labelled)]
    wanted = min(len(empty), int(round(len(labelled) * empty_slice_ratio)))
    if wanted:
        empty = [empty[int(j)] for j in np.linspace(0, len(empty) - 1, wanted)]
    else:
        empty = []
    return sorted(set(labelled) | set(empty))


def _letterbox_labels(box, label: torch.Tensor) -> torch.Tensor:
    """Integer labels through the letterbox: one-hot, bilinear, argmax (no label blending)."""
    n_classes = int(label.max().item()) + 1
    if n_classes <= 2:
        return (box.forward(label)[0, 0] > 0.5).long()
    onehot = torch.cat([(label == c).float() for c in range(n_classes)], dim=1)
    return box.forward(onehot)[0].argmax(dim=0)
