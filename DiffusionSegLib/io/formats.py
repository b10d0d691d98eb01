"""What a file really is, and how a labelmap looks in a picture format.

Two user-facing facts live here: a file whose name and contents disagree (a JPEG named `.png`)
is named for what it is, instead of ITK's "Unable to determine ImageIO reader"; and a labelmap
written as PNG/BMP/TIFF/JPG is meant to be *looked at* (0/1 would be black), so one label is
written 0/255 and several labels in the documented palette of data/image_formats.json, while
NRRD/NIfTI/MHA keep the label values for programs.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..contract.choices import data_file

PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
LOSSY_SUFFIXES = (".jpg", ".jpeg")


@lru_cache(maxsize=1)
def _table() -> dict:
    return json.loads(data_file("image_formats.json").read_text(encoding="utf-8"))


def sniff_format(path: str | Path) -> tuple[str, tuple[str, ...]] | None:
    """(format name, its usual suffixes) from the file's first bytes; None when unknown."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(512)
    except OSError:
        return None
    for entry in _table()["signatures"]:
        magic = bytes.fromhex(entry["hex"])
        offset = entry["offset"]
        if head[offset:offset + len(magic)] == magic:
            return entry["format"], tuple(entry["suffixes"])
    return None


def mismatch_message(path: str | Path, suffix: str) -> str | None:
    """'x.png is a JPEG file …' when the contents say another format than the name; else None."""
    found = sniff_format(path)
    if found is None:
        return None
    name, suffixes = found
    if suffix in suffixes or (suffix == ".nii.gz" and ".gz" in suffixes):
        return None
    rename = f" Rename it to {suffixes[0]}." if suffixes and suffixes[0] else ""
    return f"{Path(path).name} is a {name} file although its name ends in '{suffix}'.{rename}"


def palette() -> np.ndarray:
    return np.asarray(_table()["palette"], dtype=np.uint8)


def viewable_labels(labels: np.ndarray) -> tuple[np.ndarray, bool]:
    """(pixels, is_rgb) for a picture format: 0/255 grey when only label 1 occurs, else label n
    in palette colour n (cycling), background black."""
    labels = np.asarray(labels)
    top = int(labels.max(initial=0))
    if top <= 1:
        return (labels > 0).astype(np.uint8) * 255, False
    colours = palette()
    rgb = np.zeros(labels.shape + (3,), np.uint8)
    foreground = labels > 0
    rgb[foreground] = colours[(labels[foreground].astype(np.int64) - 1) % len(colours)]
    return rgb, True
