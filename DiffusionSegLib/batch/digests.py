"""Checksums a cohort's summary records, so a resumed run knows a file is the one it wrote.

`output_sha256` is the written file's bytes: any change to the file (another run, an editor, a
copy cut short) makes the case run again, where a size check would miss a file of equal size.
`labels_sha256` is the label array's: equal hashes mean equal volumes whatever the file format
or compression, which is what compares two runs (a local and a Ray run, say).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

CHUNK = 1 << 20


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def array_sha256(labels: np.ndarray) -> str:
    return hashlib.sha256(str((labels.shape, labels.dtype.str)).encode() + labels.tobytes()).hexdigest()


def labels_sha256(path: str | Path) -> str:
    import SimpleITK as sitk

    return array_sha256(sitk.GetArrayFromImage(sitk.ReadImage(str(path))))
