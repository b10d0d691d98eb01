"""The closed vocabularies of a job request: devices, slice axes, dtypes and intensity presets.

They live here, at the bottom of the backend, because everything reads them — the request's
validator, the CLI's `choices=`, the Slicer panel's combo boxes — and none of those may import
the modules that act on them (torch policies, intensity mapping). The presets themselves are
data (data/intensity_presets.json).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from .errors import InvalidRequest

DATA_DIR = Path(__file__).resolve().parents[1] / "data"

DEVICES = ("auto", "cuda", "cpu", "mps")
SLICE_AXES = ("auto", "axial", "coronal", "sagittal", "i", "j", "k")
DTYPE_CHOICES = ("auto", "float32", "bfloat16", "float16")
ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}


def data_file(*parts: str) -> Path:
    """A file of the package's data folder (JSON tables: presets, formats, architectures …)."""
    return DATA_DIR.joinpath(*parts)


def normalise_dtype_name(name: str | None) -> str:
    """'bf16' → 'bfloat16', None/'' → 'auto'; anything else is refused with the choices named."""
    text = (name or "auto").strip().lower()
    text = ALIASES.get(text, text)
    if text not in DTYPE_CHOICES:
        raise InvalidRequest(f"Unknown dtype {name!r}; choose one of {', '.join(DTYPE_CHOICES)} "
                             f"(or {', '.join(ALIASES)}).")
    return text


@lru_cache(maxsize=1)
def presets() -> dict[str, dict]:
    """Intensity presets by name (window, percentiles or RGB), as data/intensity_presets.json holds them."""
    return json.loads(data_file("intensity_presets.json").read_text())["presets"]


def preset_names() -> list[str]:
    return list(presets())
