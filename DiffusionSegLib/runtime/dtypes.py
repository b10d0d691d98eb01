"""Which floating-point type each part of a model runs in (`--dtype`, the request's `dtype`).

`auto` picks per device and per part:

- CPU: bfloat16 for the UNet, the text encoder and the SDSeg conditioner when the CPU computes
  bf16 natively (AVX512-BF16 or AMX: oneDNN then uses `vdpbf16ps`/tile instructions); fp32
  otherwise, because emulated bf16 is slower than fp32. On the AVX512-BF16 EPYC (Zen 4) of
  docs/benchmarks-cpu.md a bf16 GEMM peaks at 2.1x fp32 and the SD v1 UNet runs 1.7x faster.
- CUDA: bfloat16 where the GPU supports it (Ampere and later: same speed as fp16 and no fp16
  overflow in attention logits or large activations); float16 on older GPUs.
- MPS: float16 (what diffusers runs Stable Diffusion in on Apple GPUs; bf16 needs macOS 14).

Whatever the compute dtype, some parts never leave fp32 (callers cast at the network boundary):

- the VAE decoder (pseudo-healthy images whose pixels are compared, SDSeg masks) and the whole
  SDSeg VAE: fp32 always (SD's VAE overflows in fp16 on bright images; decoded pixels are data);
- the VAE encoder where its latent is decoded again and compared with the image (DiffuGTS's
  repaint and residual): fp32 (`encode_image(..., for_reconstruction=True)`);
- statistics and accumulators: KL merging, latent estimation (z0 from eps), DDIM/inpainting
  latents, Otsu and residual statistics, attention sums (`attention.AttentionStore` sums in fp32).

The VAE encoder whose latent only feeds the UNet (ADZUS reads attention, never pixels) follows
a bf16 compute dtype (`vae_encoder`; run through autocast, so the fp32 weights are never
rounded and a DiffuGTS job on the same warm model still gets its fp32 encoder). Measured on
this CPU at 512 px: 3.7 s instead of 6.5 s, latents within 1.5 % (relative L2) of fp32, and
ADZUS proposals from the two encoders agree (test_dtype_parity.py; docs/benchmarks-cpu.md).
fp16 never: SD's VAE overflows in fp16 on bright images.

Imports torch only inside functions: the request and the CLI parser use the names without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..contract.choices import normalise_dtype_name

if TYPE_CHECKING:  # pragma: no cover
    import torch

NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# Below this UNet size `auto` keeps fp32 on a CPU: oneDNN's bf16 path converts activations and
# weights around every small op, which costs more than it saves. Measured on the AMD EPYC
# (AVX512-BF16) of docs/benchmarks-cpu.md: a 1.4 M-parameter SDSeg UNet at 64 px and the 1.7 M tiny
# SD run 1.3-2x slower in bf16; the 860 M SD v1 UNet at 512 px 4.7x faster. Sizes in between
# were not measured; the threshold sits between the two and can be overridden with --dtype.
CPU_BF16_MIN_PARAMETERS = 20_000_000


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The feature flags Linux reports for the first CPU (empty where there is no /proc)."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[-1].split())
    return set()


def cpu_has_native_bf16(flags: set[str] | None = None) -> bool:
    """True when the CPU computes bf16 in hardware (AVX512-BF16 or AMX-BF16).

    /proc/cpuinfo is read first (it is what the kernel enabled); elsewhere torch's own
    capability checks, which ask the CPU through cpuinfo/oneDNN."""
    flags = cpu_flags() if flags is None else flags
    if flags:
        return any(flag in flags for flag in NATIVE_BF16_FLAGS)
    import torch

    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


@dataclass(frozen=True)
class DtypePolicy:
    """The resolved choice: `compute` for the UNet, text encoder and conditioner; `vae_encoder`
    for an SD VAE encoder whose latent only feeds the UNet (ADZUS); `vae` for the rest of the
    autoencoder (decoder, reconstruction encodes, SDSeg's VAE); `reason` says why, for the job
    log and `benchmark`."""

    requested: str
    compute: "torch.dtype"
    vae_encoder: "torch.dtype"
    vae: "torch.dtype"
    reason: str

    @property
    def name(self) -> str:
        return str(self.compute).replace("torch.", "")

    @property
    def vae_description(self) -> str:
        """For logs: which VAE parts run in which dtype."""
        encoder = str(self.vae_encoder).replace("torch.", "")
        rest = str(self.vae).replace("torch.", "")
        if encoder == rest:
            return f"{rest} (encoder and decoder)"
        return (f"SD encoder {encoder} where only the UNet reads the latent (ADZUS), {rest} otherwise "
                f"(decoder, DiffuGTS reconstruction, SDSeg's VAE)")


def parameter_count(module: "torch.nn.Module") -> int:
    return sum(p.numel() for p in module.parameters())


def needs_size(device: "torch.device | str", requested: str | None) -> bool:
    """True when `auto` on a CPU depends on the model size: load in fp32, then `resolve_policy`
    with the UNet's parameter count and cast (`apply_compute_dtype`)."""
    import torch

    return normalise_dtype_name(requested) == "auto" and torch.device(device).type == "cpu"


def auto_compute_dtype(device: "torch.device | str") -> tuple["torch.dtype", str]:
    import torch

    kind = torch.device(device).type
    if kind == "cuda":
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16, "CUDA GPU with bf16 support"
        return torch.float16, "CUDA GPU without bf16 support"
    if kind == "mps":
        return torch.float16, "Apple MPS"
    if kind == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16, "CPU with native bf16 (AVX512-BF16/AMX)"
    return torch.float32, "CPU without native bf16"


def resolve_policy(device: "torch.device | str", requested: str | None = "auto",
                   unet_parameters: int | None = None) -> DtypePolicy:
    """The dtype of each part for a device and a request ('auto', 'float32', 'bfloat16', 'float16').

    unet_parameters: the size of the model's denoiser, when known; `auto` keeps small models in
    fp32 on a CPU (`CPU_BF16_MIN_PARAMETERS`)."""
    import torch

    name = normalise_dtype_name(requested)
    if name == "auto":
        compute, reason = auto_compute_dtype(device)
        small = unet_parameters is not None and unet_parameters < CPU_BF16_MIN_PARAMETERS
        if compute == torch.bfloat16 and torch.device(device).type == "cpu" and small:
            compute = torch.float32
            reason = f"small UNet ({unet_parameters / 1e6:.1f} M parameters): bf16 is slower on a CPU at this size"
    else:
        compute, reason = getattr(torch, name), "requested"
        if name == "float16" and torch.device(device).type == "cpu":
            reason = "requested (fp16 on CPU is emulated and slow)"
    vae_encoder = torch.bfloat16 if compute == torch.bfloat16 else torch.float32
    return DtypePolicy(requested=name, compute=compute, vae_encoder=vae_encoder, vae=torch.float32,
                       reason=reason)


def safetensors_parameters(folder: str | Path) -> int | None:
    """Parameters stored in a folder's *.safetensors files, read from their headers (no weights
    are loaded): sizes a model for `resolve_policy` before it is loaded in the chosen dtype.
    None when the folder has no such file."""
    from math import prod

    from safetensors import safe_open

    files = sorted(Path(folder).expanduser().glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for path in files:
        with safe_open(str(path), framework="pt") as handle:
            total += sum(prod(handle.get_slice(name).get_shape()) for name in handle.keys())
    return total
