"""The cost of the `partial` event (contract/partial.py) on a 512×512×300 CT-sized labelmap: encode
and decode time per event, JSON size per event and per job, for an organ-sized ellipsoid (one and
four slices per batch) and for random noise on 300 slices (the worst case: a random-weight
model). Quoted in docs/cli.md. Run: `python Testing/measure_partial_events.py`."""

from __future__ import annotations

import json
import time

import numpy as np

from DiffusionSegLib.contract.partial import apply_partial, partial_event

SHAPE = (300, 512, 512)


def organ() -> np.ndarray:
    k, j, i = np.ogrid[:SHAPE[0], :SHAPE[1], :SHAPE[2]]
    return ((((i - 300) / 120.0) ** 2 + ((j - 250) / 90.0) ** 2 + ((k - 150) / 100.0) ** 2) < 1).astype(np.uint16)


def noise() -> np.ndarray:
    return (np.random.default_rng(0).random(SHAPE) > 0.5).astype(np.uint16)


def measure(name: str, labels: np.ndarray, batch: int) -> None:
    events, encode = [], 0.0
    for start in range(0, labels.shape[0], batch):
        begin = time.perf_counter()
        events.append(partial_event(labels, 0, list(range(start, min(start + batch, labels.shape[0])))))
        encode += time.perf_counter() - begin
    sizes = [len(json.dumps(event)) for event in events]
    target = np.zeros(labels.shape, np.uint8)
    begin = time.perf_counter()
    for event in events:
        apply_partial(event, target)
    decode = time.perf_counter() - begin
    assert np.array_equal(target > 0, labels > 0)
    print(f"{name}: {len(events)} events, encode {1000 * encode / len(events):.2f} ms/event, "
          f"decode+apply {1000 * decode / len(events):.2f} ms/event, JSON {np.mean(sizes) / 1024:.1f} KiB/event "
          f"(max {max(sizes) / 1024:.1f}), {sum(sizes) / 2**20:.2f} MiB per job")


if __name__ == "__main__":
    measure("organ, 1 slice/batch", organ(), 1)
    measure("organ, 4 slices/batch", organ(), 4)
    measure("random noise, 1 slice/batch", noise(), 1)
