"""Per-slice random draws: a slice's noise is a function of the job seed and the slice index
alone, never of the batch it happens to be in (batch sizes differ between machines and halve on
out-of-memory, so anything else would make results machine-dependent)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def slice_seed(seed: int, index: int, stream: int = 0) -> int:
    """A 63-bit seed mixed from (job seed, slice index, stream) by numpy's SeedSequence, so nearby
    seeds and indices give unrelated streams."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(index) & 0xFFFFFFFF, int(stream)])
    return int(state.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def slice_noise(shape: Sequence[int], seed: int, indices: Sequence[int], stream: int = 0,
                device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(len(indices), *shape) standard normal noise, drawn on the CPU per slice, then moved."""
    draws = [torch.randn(tuple(shape), generator=torch.Generator().manual_seed(slice_seed(seed, i, stream)))
             for i in indices]
    return torch.stack(draws).to(device=device, dtype=dtype)
