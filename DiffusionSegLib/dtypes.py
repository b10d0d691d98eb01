"""Which floating-point type each part of a model runs in (`--dtype`, the request's `dtype`).

`auto` picks per device and per part:

- CPU: bfloat16 for the UNet, the text encoder and the SDSeg conditioner when the CPU computes
  bf16 natively (AVX512-BF16 or AMX: oneDNN then uses `vdpbf16ps`/tile instructions, measured
  4.7x faster than fp32 for the SD v1 UNet on an AVX512-BF16 EPYC); fp32 otherwise, because
  emulated bf16 is slower than fp32.
- CUDA: bfloat16 where the GPU supports it (Ampere and later: same speed as fp16 and no fp16
  overflow in attention logits or large activations); float16 on older GPUs.
- MPS: float16 (what diffusers runs Stable Diffusion in on Apple GPUs; bf16 needs macOS 14).

Whatever the compute dtype, some parts never leave fp32 (callers cast at the network boundary):

- the VAE decoder (pseudo-healthy images whose pixels are compared, SDSeg masks) and the whole
  SDSeg VAE: fp32 always (SD's VAE overflows in fp16 on bright images; decoded pixels are data);
- the VAE encoder: fp32, except with a bf16 compute dtype, where it runs in bf16: bf16 has fp32's
  range (no overflow), its latent only feeds a bf16 UNet (which rounds it to bf16 anyway), and at
  512 px it is the largest single cost of ADZUS (fp32 encoder 15.3 CPU-s vs 7.6 in bf16). The
  agreement was measured and is tested (docs/benchmarks-cpu.md, Testing/test_dtype_parity.py);
- statistics and accumulators: KL merging, latent estimation (z0 from eps), DDIM/inpainting
  latents, Otsu and residual statistics, attention sums (`attention.AttentionStore` sums in fp32).

Imports torch only inside functions: the request and the CLI parser use the names without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import InvalidRequest

if TYPE_CHECKING:  # pragma: no cover
    import torch

DTYPE_CHOICES = ("auto", "float32", "bfloat16", "float16")
ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def normalise_dtype_name(name: str | None) -> str:
    """'bf16' → 'bfloat16', None/'' → 'auto'; anything else is refused with the choices named."""
    text = (name or "auto").strip().lower()
    text = ALIASES.get(text, text)
    if text not in DTYPE_CHOICES:
        raise InvalidRequest(f"Unknown dtype {name!r}; choose one of {', '.join(DTYPE_CHOICES)} "
                             f"(or {', '.join(ALIASES)}).")
    return text


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
    and `vae` (the decoder and everything else of the autoencoder); `reason` says why, for the
    job log and `benchmark`."""

    requested: str
    compute: "torch.dtype"
    vae_encoder: "torch.dtype"
    vae: "torch.dtype"
    reason: str

    @property
    def name(self) -> str:
        return str(self.compute).replace("torch.", "")


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


def resolve_policy(device: "torch.device | str", requested: str | None = "auto") -> DtypePolicy:
    """The dtype of each part for a device and a request ('auto', 'float32', 'bfloat16', 'float16')."""
    import torch

    name = normalise_dtype_name(requested)
    if name == "auto":
        compute, reason = auto_compute_dtype(device)
    else:
        compute, reason = getattr(torch, name), "requested"
        if name == "float16" and torch.device(device).type == "cpu":
            reason = "requested (fp16 on CPU is emulated and slow)"
    encoder = torch.bfloat16 if compute == torch.bfloat16 else torch.float32
    return DtypePolicy(requested=name, compute=compute, vae_encoder=encoder, vae=torch.float32, reason=reason)
