"""Pairing images with masks in two folders, and turning mask values into foreground.

Used by `evaluate` and by training. Real collections name things differently (`001.bmp` ↔
`001.png`, `IMD002.png` ↔ `IMD002_lesion.png`, one folder per case for volumes), so pairing
tries the exact stem, then "<stem>_<suffix>", then a user-given regular expression.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..contract.errors import InvalidData
from .images import Volume, read_volume

IMAGE_SUFFIXES = (".nrrd", ".nii", ".nii.gz", ".mha", ".mhd", ".png", ".jpg", ".jpeg", ".bmp",
                  ".tif", ".tiff", ".gif", ".dcm")
MaskMapping = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Pair:
    key: str
    image: Path
    mask: Path


def file_stem(path: Path) -> str:
    name = path.name
    for suffix in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(".seg" + suffix):
            return name[: -len(suffix) - 4]
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def list_cases(folder: Path) -> dict[str, Path]:
    """Image files by stem; sub-folders count as one case each (a volume or a DICOM series)."""
    if not folder.is_dir():
        raise InvalidData(f"Folder not found: {folder}")
    cases: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_dir():
            cases[path.name] = path
        elif any(path.name.lower().endswith(suffix) for suffix in IMAGE_SUFFIXES):
            cases[file_stem(path)] = path
    return cases


def pair_images_and_masks(images: str | Path, masks: str | Path, key: str | None = None) -> list[Pair]:
    images, masks = Path(images).expanduser(), Path(masks).expanduser()
    image_cases, mask_cases = list_cases(images), list_cases(masks)
    if not image_cases:
        raise InvalidData(f"No images found in {images}.", hint=f"Expected files ending in {', '.join(IMAGE_SUFFIXES)}.")
    if not mask_cases:
        raise InvalidData(f"No masks found in {masks}.")
    try:
        pattern = re.compile(key) if key else None
    except re.error as error:
        raise InvalidData(f"--key {key!r} is not a valid regular expression ({error}).") from None

    def key_of(stem: str) -> str | None:
        if pattern is None:
            return stem
        match = pattern.search(stem)
        return (match.group(1) if match.groups() else match.group(0)) if match else None

    by_key = {k: path for stem, path in mask_cases.items() if (k := key_of(stem)) is not None}
    pairs = []
    for stem, image_path in image_cases.items():
        wanted = key_of(stem)
        if wanted is None:
            continue
        mask_path = by_key.get(wanted)
        if mask_path is None and pattern is None:
            candidates = [p for s, p in mask_cases.items() if s.startswith(stem + "_")]
            mask_path = candidates[0] if len(candidates) == 1 else None
        if mask_path is not None:
            pairs.append(Pair(wanted or stem, image_path, mask_path))
    if not pairs:
        raise InvalidData(f"No image in {images} has a mask in {masks} with a matching name.",
                          hint="Masks pair by file stem ('001.bmp' ↔ '001.png', 'IMD002' ↔ 'IMD002_lesion'); "
                               "use --key REGEX to extract a shared key otherwise.")
    return pairs


def parse_mask_mapping(text: str | None) -> MaskMapping | None:
    """'>0', '>=128', '255', '128,255' or '1-4' → function from mask values to foreground."""
    if text is None or not text.strip():
        return None
    text = text.replace(" ", "")
    match = re.fullmatch(r"(>=|>|<=|<)(-?\d+(?:\.\d+)?)", text)
    if match:
        op, value = match.group(1), float(match.group(2))
        return {">": lambda a: a > value, ">=": lambda a: a >= value,
                "<": lambda a: a < value, "<=": lambda a: a <= value}[op]
    match = re.fullmatch(r"(\d+)-(\d+)", text)
    if match:
        low, high = float(match.group(1)), float(match.group(2))
        return lambda a: (a >= low) & (a <= high)
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise InvalidData(f"Cannot read mask mapping {text!r}; use e.g. '>0', '255', '128,255' or '1-4'.") from None
    return lambda a: np.isin(a, values)


def read_mask(path: Path, mapping: MaskMapping | None) -> tuple[np.ndarray, Volume]:
    """Foreground (K, J, I) bool and the mask's volume (for its geometry).

    Without a mapping a mask must be binary (two values, the larger is foreground): guessing
    which of several labels is meant would silently measure the wrong structure."""
    volume = read_volume(path, allow_constant=True)  # an all-background mask is valid
    values = volume.array if not volume.is_rgb else volume.array.max(axis=-1)
    if mapping is None:
        present = np.unique(values)
        if present.size > 2:
            shown = ", ".join(f"{v:g}" for v in present[:6])
            raise InvalidData(f"Mask {path.name} has {present.size} values ({shown}…), not two.",
                              hint="Say which are foreground with a mask mapping such as '>0' or '255'.")
        if present.size == 1:  # all one value: foreground only if that value is not zero
            return np.full(values.shape, bool(present[0] > 0)), volume
        return values == present.max(), volume
    return np.asarray(mapping(values), dtype=bool), volume
