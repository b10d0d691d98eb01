"""`benchmark`: where the time and memory of a method go, on a real architecture.

By default the model is `random:sd-v1:<resolution>`: the real SD v1.x UNet/VAE/text-encoder
architecture with random weights, so FLOPs and memory are those of the real model with nothing
downloaded. Per stage (load, encode, inversion, capture pass, merge, post-process …) the time is
measured with CUDA synchronisation, and divided by the number of slices.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from typing import Any

import numpy as np

from ..contract.events import CancelToken


def synthetic_volume(slices: int, size: int, seed: int = 0):
    """A CT-like volume (HU) with a round organ and a darker lesion: real content for the
    pipeline's tissue test and normalisation, exactly `size` px in plane (no resizing cost)."""
    import SimpleITK as sitk

    from ..io.images import volume_from_image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    body = ((yy - 0.5) ** 2 + (xx - 0.5) ** 2 < 0.16)
    lesion = ((yy - 0.45) ** 2 + (xx - 0.55) ** 2 < 0.01)
    plane = np.where(body, 40.0, -1000.0) - 60.0 * lesion
    array = np.stack([plane + rng.normal(0, 10, plane.shape) for _ in range(slices)]).astype(np.float32)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.8, 0.8, 2.5))
    return volume_from_image(image, "<synthetic>")


def peak_memory(device: str) -> dict:
    if device.startswith("cuda"):
        import torch

        return {"kind": "cuda_max_allocated", "bytes": int(torch.cuda.max_memory_allocated())}
    import resource

    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is KiB on Linux
    return {"kind": "cpu_peak_rss", "bytes": int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale)}


def _reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats()


def run_benchmark(args: argparse.Namespace, emit, cancel_token: CancelToken | None = None,
                  dtype: str | None = None) -> dict:
    """Load once, warm up, record one batch's network calls and FLOPs (untimed), time
    `args.slices` slices, then time the bare network calls (the floors)."""
    import gc

    import torch

    from ..contract.request import PipelineOptions
    from ..jobs.job import create_method
    from ..runtime.devices import resolve_device
    from ..runtime.dtypes import resolve_policy
    from ..runtime.threads import configure_threads
    from ..volume.segmenter import VolumeSegmenter
    from .profiling import ProfilingContext, method_networks, recording, time_floor

    configure_threads(args.threads)
    context = ProfilingContext(emit=emit, cancel_token=cancel_token or CancelToken(), seed=args.seed)
    context.device = str(resolve_device(args.device))
    policy = resolve_policy(context.device, dtype)
    context.dtype = policy.requested
    model = args.model or f"random:sd-v1:{args.resolution}"
    method = create_method(args.method, dict(args.params), args.prompt, model, context)
    _reset_peak(context.device)
    with context.timed("load"):
        method.load()
    load_seconds = context.timings.pop("load")
    policy = getattr(getattr(method, "parts", None), "policy", None) or getattr(method, "policy", None) or policy
    networks = method_networks(method)
    if args.compile:
        for module in networks.values():
            module.compile()
    options = PipelineOptions(batch_size=args.batch_size, skip_empty_slices=False, intensity="ct-soft-tissue")
    segmenter = VolumeSegmenter(method, options, context)
    warmup_seconds = 0.0
    if args.warmup:  # also fills the per-job caches (text embeddings), as in a real job
        start = time.perf_counter()
        segmenter.segment(synthetic_volume(args.warmup, method.image_size, seed=1))
        warmup_seconds = time.perf_counter() - start
    profile_slices = max(1, args.batch_size)
    if not args.no_floor:  # one untimed batch: which network calls each stage makes, and its FLOPs
        context.timings.clear()
        with recording(context, networks):
            segmenter.segment(synthetic_volume(profile_slices, method.image_size, seed=2))
    context.timings.clear()
    _reset_peak(context.device)
    volume = synthetic_volume(args.slices, method.image_size)
    start = time.perf_counter()
    segmenter.segment(volume)
    total = time.perf_counter() - start
    memory = peak_memory(context.device)
    floors = {} if args.no_floor else time_floor(context, networks, args.floor_repeats)
    stages = {}
    for name, sec in context.timings.items():
        per_slice = sec / args.slices
        entry = {"seconds": round(sec, 4), "per_slice": round(per_slice, 4)}
        if name in floors:
            floor = floors[name]["seconds"] / profile_slices
            entry.update(floor_per_slice=round(floor, 4), calls=floors[name]["calls"],
                         floor_ratio=round(per_slice / floor, 3) if floor > 0 else None)
        if context.flops.get(name):
            gflop = context.flops[name] / profile_slices / 1e9
            entry.update(gflop_per_slice=round(gflop, 2),
                         gflops_per_second=round(gflop / per_slice, 1) if per_slice > 0 else None)
        stages[name] = entry
    report = {
        "method": args.method, "model": model, "params": method.params, "device": context.device,
        "device_name": torch.cuda.get_device_name() if context.device.startswith("cuda") else platform.processor() or platform.machine(),
        "dtype": policy.name, "dtype_requested": policy.requested, "dtype_reason": policy.reason,
        "vae_dtype": policy.vae_description,
        "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
        "torch": torch.__version__, "compiled": bool(args.compile),
        "resolution": method.image_size, "batch_size": args.batch_size, "slices": args.slices,
        "load_seconds": round(load_seconds, 3), "warmup_seconds": round(warmup_seconds, 3),
        "total_seconds": round(total, 3),
        "seconds_per_slice": round(total / args.slices, 4), "slices_per_second": round(args.slices / total, 4),
        "stages": stages, "peak_memory": memory, "load_average": _load_average(), "command": " ".join(sys.argv),
    }
    del method, segmenter, networks, context
    gc.collect()
    return report


def _load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def format_table(report: dict) -> str:
    lines = [f"{report['method']} on {report['device']} ({report['device_name']}), {report['resolution']} px, "
             f"{report['dtype']} ({report['dtype_reason']}; VAE {report['vae_dtype']}), {report['threads']} thread(s), "
             f"batch {report['batch_size']}, {report['slices']} slice(s), model {report['model']}",
             f"{'stage':<13}{'s/slice':>9}{'floor s':>9}{'x floor':>9}{'GFLOP':>9}{'GFLOP/s':>9}  network calls",
             f"{'load (once)':<13}{report['load_seconds']:>9.3f}"]
    if report.get("compiled"):
        lines.append(f"{'warm-up':<13}{report['warmup_seconds']:>9.3f}  (includes torch.compile)")

    def cell(value: Any, spec: str) -> str:
        return format(value, spec) if isinstance(value, (int, float)) else f"{'-':>9}"

    for name, v in report["stages"].items():
        calls = ", ".join(f"{k}×{n}" for k, n in (v.get("calls") or {}).items())
        lines.append(f"{name:<13}{v['per_slice']:>9.3f}{cell(v.get('floor_per_slice'), '>9.3f')}"
                     f"{cell(v.get('floor_ratio'), '>9.2f')}{cell(v.get('gflop_per_slice'), '>9.1f')}"
                     f"{cell(v.get('gflops_per_second'), '>9.1f')}  {calls}")
    memory = report["peak_memory"]
    lines += [f"{'total':<13}{report['seconds_per_slice']:>9.3f}",
              f"slices/s {report['slices_per_second']:.3f}; peak memory {memory['bytes'] / 2**30:.2f} GiB "
              f"({memory['kind']}); load average {report.get('load_average')}"]
    return "\n".join(lines)


def speedup(reference: dict, other: dict) -> dict:
    """Per stage and in total: reference seconds / other seconds."""
    out = {name: round(v["per_slice"] / other["stages"][name]["per_slice"], 2)
           for name, v in reference["stages"].items()
           if name in other["stages"] and other["stages"][name]["per_slice"] > 0}
    out["total"] = round(reference["seconds_per_slice"] / other["seconds_per_slice"], 2)
    return out


def format_speedup(reference: dict, other: dict) -> str:
    ratios = speedup(reference, other)
    lines = [f"speed-up {other['dtype']} over {reference['dtype']} (s/slice)",
             f"{'stage':<13}{reference['dtype']:>10}{other['dtype']:>10}{'speed-up':>10}"]
    for name, ratio in ratios.items():
        a = reference["seconds_per_slice"] if name == "total" else reference["stages"][name]["per_slice"]
        b = other["seconds_per_slice"] if name == "total" else other["stages"][name]["per_slice"]
        lines.append(f"{name:<13}{a:>10.3f}{b:>10.3f}{ratio:>9.2f}x")
    return "\n".join(lines)
