"""Which device a job runs on: 'auto' picks CUDA when present; a device that is asked for but
missing is a clear `device_unavailable` error before any model is loaded."""

from __future__ import annotations

import torch

from ..contract.errors import DeviceUnavailable


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' means CUDA when present, else CPU. MPS is used only when asked for: not every op
    the methods use is verified on it."""
    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceUnavailable(
                "CUDA was requested but this PyTorch sees no CUDA GPU "
                f"(torch {torch.__version__}, built for CUDA {torch.version.cuda or 'none'}).",
                hint="Choose device 'cpu' or 'auto', or install a CUDA build of PyTorch that matches your driver.")
        return torch.device(name)
    if name == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise DeviceUnavailable("Apple MPS was requested but is not available on this machine.",
                                    hint="Choose device 'cpu' or 'auto'.")
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise DeviceUnavailable(f"Unknown device {name!r}; use auto, cuda, mps or cpu.")
