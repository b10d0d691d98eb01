"""What `benchmark` compares each stage with: the bare network calls it makes, and its FLOPs.

A stage (encode, inversion, attention, inpaint …) is a few network calls plus glue (attention
capture, merging, schedulers, copies). Its *floor* is the time of the same network calls on
their own: `ProfilingContext` records, per stage, every forward call of the method's networks
(UNet, VAE encoder/decoder, text encoder, SDSeg conditioner) with its inputs; `time_floor`
replays each distinct call afterwards in the same process (default attention processors, no
hooks, no capture) and sums call time × count. A stage at 1.0× its floor spends nothing beyond
the networks; the capture pass of ADZUS is above 1 by what explicit softmax costs over fused
SDPA. FLOPs come from torch's FlopCounterMode around each stage (matmul-like ops: conv, mm,
bmm, SDPA), so achieved GFLOP/s can be compared with the machine's peak.
"""

from __future__ import annotations

import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch

from ..contract.events import JobContext, _synchronize


def method_networks(method: Any) -> dict[str, torch.nn.Module]:
    """The networks a loaded method calls, by name: from `method.parts` (ADZUS, DiffuGTS) or
    the SDSeg model (`method._model`)."""
    holder = getattr(method, "parts", None) or getattr(method, "_model", None)
    networks: dict[str, torch.nn.Module] = {}
    for name in ("unet", "text_encoder", "conditioner"):
        module = getattr(holder, name, None)
        if isinstance(module, torch.nn.Module):
            networks[name] = module
    vae = getattr(holder, "vae", None)
    if vae is not None:
        networks["vae_encoder"] = vae.encoder
        networks["vae_decoder"] = vae.decoder
    return networks


def _cpu_sdpa_flops(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, **kwargs: Any) -> int:
    """FLOPs of CPU flash SDPA, which torch's counter does not register: same as the CUDA kernels."""
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


def flop_counter() -> Any:
    from torch.utils.flop_counter import FlopCounterMode

    mapping = {}
    cpu_flash = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if cpu_flash is not None:
        mapping[cpu_flash] = _cpu_sdpa_flops
    return FlopCounterMode(display=False, custom_mapping=mapping)


def _signature(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.shape), str(value.dtype), str(value.device))
    if isinstance(value, (list, tuple)):
        return tuple(_signature(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _signature(v)) for k, v in value.items()))
    return repr(value)


def _detach(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, (list, tuple)):
        return type(value)(_detach(v) for v in value)
    if isinstance(value, dict):
        return {k: _detach(v) for k, v in value.items()}
    return value


@dataclass
class RecordedCall:
    network: str
    args: tuple
    kwargs: dict
    count: int = 0
    autocast: "torch.dtype | None" = None  # the call ran under autocast to this dtype (bf16 VAE encoder)


def _autocast_dtype(device: str) -> "torch.dtype | None":
    kind = torch.device(device).type
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else None


@dataclass
class ProfilingContext(JobContext):
    """A JobContext that also knows the current stage, and (while `profiling`) records network
    calls and counts FLOPs per stage."""

    profiling: bool = False
    stage: str | None = None
    calls: dict[str, dict[Any, RecordedCall]] = field(default_factory=dict)
    flops: dict[str, int] = field(default_factory=dict)

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        outer, self.stage = self.stage, stage
        with ExitStack() as stack:
            counter = stack.enter_context(flop_counter()) if self.profiling and outer is None else None
            stack.enter_context(super().timed(stage))
            try:
                yield
            finally:
                self.stage = outer
                if counter is not None:
                    self.flops[stage] = self.flops.get(stage, 0) + int(counter.get_total_flops())

    def record(self, network: str, args: tuple, kwargs: dict) -> None:
        if not self.profiling:
            return
        stage = self.stage or "untimed"
        autocast = _autocast_dtype(self.device)
        key = (network, _signature(args), _signature(kwargs), str(autocast))
        calls = self.calls.setdefault(stage, {})
        if key not in calls:
            calls[key] = RecordedCall(network, _detach(args), _detach(kwargs), autocast=autocast)
        calls[key].count += 1


@contextmanager
def recording(context: ProfilingContext, networks: dict[str, torch.nn.Module]) -> Iterator[ProfilingContext]:
    """Record every forward call of `networks` into `context` (hooks removed on exit)."""
    handles = []
    for name, module in networks.items():
        def hook(_module: Any, args: tuple, kwargs: dict, name: str = name) -> None:
            context.record(name, args, kwargs)

        handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
    context.profiling = True
    try:
        yield context
    finally:
        context.profiling = False
        for handle in handles:
            handle.remove()


@torch.no_grad()
def time_call(module: torch.nn.Module, call: RecordedCall, device: str, repeats: int = 1) -> float:
    """Best-of-`repeats` seconds of one bare forward call (after one untimed run), under the
    autocast it was made in."""
    autocast = torch.autocast(torch.device(device).type, dtype=call.autocast or torch.float32,
                              enabled=call.autocast is not None)
    with autocast:
        module(*call.args, **call.kwargs)
        best = float("inf")
        for _ in range(max(1, repeats)):
            _synchronize(device)
            start = time.perf_counter()
            module(*call.args, **call.kwargs)
            _synchronize(device)
            best = min(best, time.perf_counter() - start)
    return best


def time_floor(context: ProfilingContext, networks: dict[str, torch.nn.Module],
               repeats: int = 1) -> dict[str, dict]:
    """Per stage: {"seconds": floor over the recorded calls, "calls": {network: count}}.

    Each distinct call (network and input shapes) is timed once and multiplied by how often the
    stage made it, so a 15-call inversion costs one UNet call to measure."""
    cache: dict[Any, float] = {}
    floors: dict[str, dict] = {}
    for stage, calls in context.calls.items():
        seconds, counts = 0.0, {}
        for key, call in calls.items():
            if key not in cache:
                cache[key] = time_call(networks[call.network], call, context.device, repeats)
            seconds += cache[key] * call.count
            counts[call.network] = counts.get(call.network, 0) + call.count
        floors[stage] = {"seconds": seconds, "calls": counts}
    return floors
