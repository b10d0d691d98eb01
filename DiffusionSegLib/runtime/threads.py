"""CPU threads of the worker: the physical cores by default, or fewer on request.

torch's default intra-op pool is one thread per *logical* CPU. With SMT two threads share one
core's vector units, so for the convolution and GEMM kernels the UNet spends its time in, the
extra threads add contention and no throughput. The default is therefore the physical cores
this process may run on (its affinity mask, so containers and `taskset` are respected). A cap
(`--threads N`, the request's `threads`, the Slicer panel's "CPU threads") leaves cores to
Slicer so the GUI stays responsive while a job runs.

Inter-op threads are set to 1: the methods run one network call after another (no
`torch.jit.fork`), so a second pool would only hold idle threads.
"""

from __future__ import annotations

import os


def physical_cores() -> int:
    """Physical cores usable by this process (at least 1)."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        import psutil

        physical = psutil.cpu_count(logical=False) or usable
        logical = psutil.cpu_count(logical=True) or usable
    except ImportError:  # psutil is a dependency; stay usable without it
        physical = logical = usable
    # Scale the machine's physical/logical ratio to the affinity mask (2-way SMT halves it).
    return max(1, min(usable, round(usable * physical / max(logical, 1))))


def choose_threads(cap: int = 0) -> int:
    """Threads to use: the physical cores, capped at `cap` when cap > 0."""
    if cap < 0:
        raise ValueError(f"threads must be >= 0 (0 = all physical cores); got {cap}")
    cores = physical_cores()
    return min(cores, cap) if cap else cores


def configure_threads(cap: int = 0) -> int:
    """Set torch's intra-op threads (and inter-op threads to 1 where still allowed); returns the
    intra-op count. Safe to call more than once in a process."""
    import torch

    threads = choose_threads(cap)
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # only settable before the first inter-op work; a later call keeps the first value
    return threads


def current_threads() -> int:
    import torch

    return torch.get_num_threads()
