"""How much bf16 can gain on this CPU (quoted in docs/benchmarks-cpu.md; not a test, ~2 min):

    PYTHONPATH=. python Testing/measure_bf16_ceiling.py [THREADS]

Prints a 4096³ matrix product's GFLOP/s in fp32 and bf16 (the hardware ratio every compute-bound
stage is bounded by) and, per operator, one SD v1 UNet call at 512 px (random weights) in each
dtype, from torch's profiler: convolutions, linear layers, fused attention, and the whole call.
"""

from __future__ import annotations

import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

OPERATORS = {"convolution": "aten::mkldnn_convolution", "linear": "aten::addmm",
             "fused attention": "aten::_scaled_dot_product_flash_attention_for_cpu"}


def gemm_gflops(dtype: torch.dtype, side: int = 4096, repeats: int = 3) -> float:
    a, b = torch.randn(side, side).to(dtype), torch.randn(side, side).to(dtype)
    torch.mm(a, b)
    start = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    return 2 * side ** 3 * repeats / (time.perf_counter() - start) / 1e9


def unet_profile(unet: torch.nn.Module, dtype: torch.dtype) -> dict[str, float]:
    """Seconds per operator kind and for the whole call (each the best of two calls)."""
    from DiffusionSegLib.models.loading import cast_module

    cast_module(unet, dtype)
    x, t, c = torch.randn(1, 4, 64, 64).to(dtype), torch.tensor([100]), torch.randn(1, 77, 768).to(dtype)
    with torch.inference_mode():
        unet(x, t, c)
        whole = min(_timed(lambda: unet(x, t, c)) for _ in range(2))
        runs = []
        for _ in range(2):
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                unet(x, t, c)
            # self time of each operator on the calling thread (intra-op threads run inside it)
            runs.append({event.key: event.self_cpu_time_total / 1e6 for event in prof.key_averages()})
    best = {name: min(run.get(op, 0.0) for run in runs) for name, op in OPERATORS.items()}
    return {**best, "whole UNet": whole}


def _timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def main() -> None:
    from diffusers import UNet2DConditionModel

    from DiffusionSegLib.models.architectures import architecture

    torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
    fp32, bf16 = gemm_gflops(torch.float32), gemm_gflops(torch.bfloat16)
    print(f"{'4096^3 matrix product':<24}{fp32:>8.0f} GFLOP/s{bf16:>8.0f} GFLOP/s  {bf16 / fp32:.2f}x")
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**{**architecture("sd-v1")["unet"], "sample_size": 64}).eval()
    slow, fast = unet_profile(unet, torch.float32), unet_profile(unet, torch.bfloat16)
    for name in slow:
        ratio = slow[name] / fast[name] if fast[name] else float("nan")
        print(f"{name:<24}{slow[name]:>8.2f} s fp32  {fast[name]:>6.2f} s bf16  {ratio:.2f}x")


if __name__ == "__main__":
    main()
