"""`benchmark`: where the time and memory of a method go, on a real architecture.

By default the model is `random:sd-v1:<resolution>`: the real SD v1.x UNet/VAE/text-encoder
architecture with random weights, so FLOPs and memory are those of the real model with nothing
downloaded. Per stage (load, encode, inversion, capture pass, merge, post-process …) the time is
measured with CUDA synchronisation, and divided by the number of slices.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from .events import CancelToken


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .arguments import add_model_arguments

    add_model_arguments(parser)
    parser.add_argument("--resolution", type=int, default=512, help="model input side in pixels")
    parser.add_argument("--slices", type=int, default=2, help="slices to time (after warm-up)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=1, help="untimed warm-up slices")
    parser.add_argument("--dtype", default=None, help="float16/bfloat16/float32 (default: fp16 on CUDA)")
    parser.add_argument("--output", default=None, help="write the report as JSON here")


def synthetic_volume(slices: int, size: int, seed: int = 0):
    """A CT-like volume (HU) with a round organ and a darker lesion: real content for the
    pipeline's tissue test and normalisation, exactly `size` px in plane (no resizing cost)."""
    import SimpleITK as sitk

    from .imageio import volume_from_image

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


def run_benchmark(args: argparse.Namespace, emit, cancel_token: CancelToken | None = None) -> dict:
    import torch

    from .arguments import parse_params
    from .events import JobContext
    from .job import create_method
    from .models import resolve_device
    from .pipeline import VolumeSegmenter
    from .request import PipelineOptions

    context = JobContext(emit=emit, cancel_token=cancel_token or CancelToken(), seed=args.seed)
    context.device = str(resolve_device(args.device))
    context.dtype = args.dtype
    model = args.model or f"random:sd-v1:{args.resolution}"
    method = create_method(args.method, parse_params(args.param), args.prompt, model, context)
    if context.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    with context.timed("load"):
        method.load()
    load_seconds = context.timings.pop("load")
    options = PipelineOptions(batch_size=args.batch_size, skip_empty_slices=False, intensity="ct-soft-tissue")
    segmenter = VolumeSegmenter(method, options, context)
    if args.warmup:
        segmenter.segment(synthetic_volume(args.warmup, method.image_size, seed=1))
        context.timings.clear()
        if context.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
    volume = synthetic_volume(args.slices, method.image_size)
    start = time.perf_counter()
    segmenter.segment(volume)
    total = time.perf_counter() - start
    stages = {name: {"seconds": round(sec, 4), "per_slice": round(sec / args.slices, 4)}
              for name, sec in context.timings.items()}
    return {
        "method": args.method, "model": model, "params": method.params, "device": context.device,
        "device_name": torch.cuda.get_device_name() if context.device.startswith("cuda") else platform.processor() or platform.machine(),
        "dtype": str(getattr(getattr(method, "parts", None), "dtype", args.dtype or "default")),
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "resolution": method.image_size, "batch_size": args.batch_size, "slices": args.slices,
        "load_seconds": round(load_seconds, 3), "total_seconds": round(total, 3),
        "seconds_per_slice": round(total / args.slices, 4), "slices_per_second": round(args.slices / total, 4),
        "stages": stages, "peak_memory": peak_memory(context.device), "command": " ".join(sys.argv),
    }


def format_table(report: dict) -> str:
    lines = [f"{report['method']} on {report['device']} ({report['device_name']}), {report['resolution']} px, "
             f"batch {report['batch_size']}, {report['slices']} slice(s), model {report['model']}",
             f"{'stage':<14}{'s/slice':>10}", f"{'load (once)':<14}{report['load_seconds']:>10.3f}"]
    for name, values in report["stages"].items():
        lines.append(f"{name:<14}{values['per_slice']:>10.3f}")
    memory = report["peak_memory"]
    lines += [f"{'total':<14}{report['seconds_per_slice']:>10.3f}",
              f"slices/s {report['slices_per_second']:.3f}; peak memory {memory['bytes'] / 2**30:.2f} GiB ({memory['kind']})"]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    from .protocol import run_with_events

    def work(emit, token) -> None:
        report = run_benchmark(args, emit, token)
        print(format_table(report), file=sys.stderr)
        if args.output:
            Path(args.output).write_text(json.dumps(report, indent=2, default=str))
        emit({"event": "result", "output": args.output, "report": report})

    return run_with_events(work, stream=sys.stdout)
