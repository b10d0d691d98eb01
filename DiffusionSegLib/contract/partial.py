"""Finished slices while a job runs: the `partial` event (docs/architecture.md, "The job contract").

After each batch the volume pipeline reports the foreground of the slices it has just finished,
so a front end can show them at once and a person can judge the first slices and cancel early.
The event is a preview: the zero-shot methods decide once more over the whole volume at the end,
and the 3D post-processing (fill holes, largest component) runs only then; the `result` event's
labelmap is the answer. Partial events are messages only — nothing is written for them, so a
cancelled job still leaves nothing behind.

Encoding, chosen to stay cheap for a 512×512×300 CT (measured in docs/cli.md): the foreground of
the batch's slices as one boolean block cropped to its bounding box in the slice plane,
bit-packed, zlib-compressed and base64-encoded. An organ-sized mask costs a few hundred bytes per
slice; a block that would exceed `MAX_MASK_BYTES` is not sent (`"mask": null, "omitted": true`),
so a noisy result cannot flood the event stream.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

MAX_MASK_BYTES = 1 << 20   # encoded; a larger preview is skipped, the final result still comes


def _plane_axes(axis: int) -> tuple[int, int]:
    return tuple(a for a in range(3) if a != axis)  # type: ignore[return-value]


def partial_event(labels: np.ndarray, axis: int, indices: Sequence[int], label: int = 1) -> dict[str, Any]:
    """The `partial` event for slices `indices` (along `axis` of the (K, J, I) `labels`): their
    foreground (labels > 0) is segment `label` of the final result."""
    indices = [int(i) for i in indices]
    block = np.take(np.asarray(labels), indices, axis=axis) > 0
    block = np.moveaxis(block, axis, 0)                        # (slices, plane rows, plane columns)
    plane = [int(block.shape[1]), int(block.shape[2])]
    event: dict[str, Any] = {"event": "partial", "label": int(label), "axis": int(axis), "slices": indices,
                             "plane": plane, "box": None, "mask": None}
    rows, cols = np.nonzero(block.any(axis=0))
    if rows.size == 0:
        return event
    box = [int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1]
    crop = np.ascontiguousarray(block[:, box[0]:box[1], box[2]:box[3]])
    encoded = base64.b64encode(zlib.compress(np.packbits(crop, axis=None).tobytes(), 6)).decode("ascii")
    event["box"] = box
    if len(encoded) > MAX_MASK_BYTES:
        event["omitted"] = True
    else:
        event["mask"] = encoded
    return event


def decode_partial(event: dict[str, Any], shape: Sequence[int]) -> tuple[int, list[int], np.ndarray | None]:
    """(axis, slice indices, foreground block (slices, plane rows, plane columns) or None when the
    slices are empty or the mask was omitted) of a `partial` event for a volume of `shape`
    (K, J, I). ValueError names what does not fit, so a malformed event is refused, never applied."""
    axis = int(event["axis"])
    if axis not in (0, 1, 2):
        raise ValueError(f"partial event: axis {axis} is not 0, 1 or 2")
    indices = [int(i) for i in event["slices"]]
    if not indices or any(not 0 <= i < shape[axis] for i in indices):
        raise ValueError(f"partial event: slices {indices[:5]} are outside the volume's {shape[axis]} slices")
    plane = [int(shape[a]) for a in _plane_axes(axis)]
    if [int(v) for v in event.get("plane") or []] != plane:
        raise ValueError(f"partial event: plane {event.get('plane')} does not match the volume's {plane}")
    if event.get("mask") is None or event.get("box") is None:
        return axis, indices, None
    r0, r1, c0, c1 = (int(v) for v in event["box"])
    if not (0 <= r0 < r1 <= plane[0] and 0 <= c0 < c1 <= plane[1]):
        raise ValueError(f"partial event: box {event['box']} is outside the plane {plane}")
    count = len(indices) * (r1 - r0) * (c1 - c0)
    expected = (count + 7) // 8
    inflater = zlib.decompressobj()
    packed = np.frombuffer(inflater.decompress(base64.b64decode(event["mask"]), expected + 1), np.uint8)
    if packed.size != expected or inflater.unconsumed_tail:   # never inflate more than the box holds
        raise ValueError("partial event: the mask does not have the size its box says")
    crop = np.unpackbits(packed, count=count).astype(bool).reshape(len(indices), r1 - r0, c1 - c0)
    block = np.zeros((len(indices), *plane), bool)
    block[:, r0:r1, c0:c1] = crop
    return axis, indices, block


def apply_partial(event: dict[str, Any], target: np.ndarray) -> int:
    """Write a `partial` event into `target` (K, J, I), the preview of the result: in its slices,
    voxels of the event's label are cleared, then its foreground gets that label (an omitted mask
    leaves them as they were). Returns the number of foreground voxels written."""
    axis, indices, block = decode_partial(event, target.shape)
    label = int(event.get("label", 1))
    if block is None:
        if event.get("omitted"):
            return 0
        block = np.zeros((len(indices), *[target.shape[a] for a in _plane_axes(axis)]), bool)
    view = np.moveaxis(target, axis, 0)     # a view: writing it writes `target`
    for n, index in enumerate(indices):
        plane = view[index]
        plane[plane == label] = 0
        plane[block[n]] = label
    return int(block.sum())
