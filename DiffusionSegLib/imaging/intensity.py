"""Intensity normalisation: from stored voxel values to model input in [0, 1].

The mapping is decided once per volume (window or robust percentiles) and applied slice by
slice, so neighbouring slices get identical contrast and a 3D volume never has to exist as a
float RGB copy in memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..contract.choices import presets
from ..contract.errors import InvalidRequest

_MAX_SAMPLES = 2_000_000


@dataclass(frozen=True)
class IntensityMapping:
    """Linear map of [low, high] to [0, 1] with clipping; RGB keeps its three channels."""

    preset: str
    low: float
    high: float
    rgb: bool

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        """(H, W) or (H, W, 3) stored values → (3, H, W) float32 in [0, 1]."""
        scaled = (pixels.astype(np.float32) - self.low) / max(self.high - self.low, 1e-6)
        scaled = np.clip(scaled, 0.0, 1.0)
        if self.rgb:
            return np.ascontiguousarray(np.moveaxis(scaled, -1, 0))
        return np.repeat(scaled[np.newaxis], 3, axis=0)


def _sample(values: np.ndarray) -> np.ndarray:
    flat = values.reshape(-1)
    step = max(1, flat.size // _MAX_SAMPLES)
    return flat[::step]


def looks_like_ct(array: np.ndarray) -> bool:
    """Hounsfield units: air near -1000 and dense tissue well above 0."""
    sample = _sample(array)
    return float(sample.min()) <= -500.0 and float(np.percentile(sample, 99)) >= 100.0


def _foreground_sample(array: np.ndarray) -> np.ndarray:
    """Voxels without the dominant background value (zero padding around skull-stripped MR)."""
    sample = _sample(array)
    values, counts = np.unique(sample, return_counts=True)
    if counts.max() > 0.2 * sample.size:
        kept = sample[sample != values[counts.argmax()]]
        if kept.size > 0:
            return kept
    return sample


def choose_mapping(array: np.ndarray, is_rgb: bool, preset: str = "auto") -> IntensityMapping:
    """Pick the mapping for a volume; 'auto' = RGB as is, CT soft-tissue window, or MR percentiles."""
    table = presets()
    if preset not in table:
        raise InvalidRequest(f"Unknown intensity preset {preset!r}; choose one of {', '.join(table)}.")
    if preset == "auto":
        preset = "rgb" if is_rgb else ("ct-soft-tissue" if looks_like_ct(array) else "mr")
    spec = table[preset]
    if is_rgb and spec["kind"] != "rgb":
        raise InvalidRequest(f"Preset {preset!r} is for scalar images; this image is RGB (use 'rgb' or 'auto').")
    if spec["kind"] == "rgb":
        if not is_rgb:
            raise InvalidRequest("Preset 'rgb' needs a colour image; this image is scalar.")
        top = 255.0 if float(array.max()) <= 255.0 and float(array.min()) >= 0.0 else float(array.max())
        bottom = 0.0 if top == 255.0 else float(array.min())
        return IntensityMapping(preset, bottom, top, rgb=True)
    if spec["kind"] == "window":
        half = spec["width"] / 2.0
        return IntensityMapping(preset, spec["level"] - half, spec["level"] + half, rgb=False)
    sample = _foreground_sample(array)
    low, high = np.percentile(sample, [spec["low"], spec["high"]])
    if high <= low:
        low, high = float(sample.min()), float(sample.max())
    return IntensityMapping(preset, float(low), float(high), rgb=False)


def has_tissue(normalised: np.ndarray, min_fraction: float = 0.005) -> bool:
    """A slice worth segmenting: some pixels above background and some contrast at all."""
    gray = normalised.mean(axis=0)
    return bool((gray > 0.05).mean() >= min_fraction and gray.std() > 1e-3)


def could_be_hounsfield(array: np.ndarray) -> bool:
    """Whether values can be Hounsfield units at all. A CT need not show air or bone (a liver ROI,
    a slab without contrast or bone runs from about -100 to 250), so only values no CT holds
    rule it out: below -1100, above 4000, or no value under -100 with the upper tail far above
    soft tissue (typical of MR and PET, whose values start at 0)."""
    sample = _sample(array)
    low, high, p99 = float(sample.min()), float(sample.max()), float(np.percentile(sample, 99))
    return low >= -1100.0 and high <= 4000.0 and (low < -100.0 or p99 <= 400.0)


def check_intensity_fit(array: np.ndarray, is_rgb: bool, preset: str, modality: str | None = None) -> str | None:
    """Before any model loads: refuse a CT window on values that cannot be Hounsfield units
    (every slice would come out black or white); return a warning for the reverse (percentiles on
    CT) or for a series that says CT but holds no HU. None when the preset fits."""
    if is_rgb or preset not in presets():
        return None   # choose_mapping names those mistakes itself
    kind = presets()[preset]["kind"]
    said = f" (the DICOM series says {modality})" if modality else ""
    sample = _sample(array)
    low, p99 = float(sample.min()), float(np.percentile(sample, 99))
    if kind == "window" and not could_be_hounsfield(array):
        raise InvalidRequest(
            f"The intensity preset '{preset}' is a CT window in Hounsfield units, but this volume's values "
            f"run from {low:g} to {float(sample.max()):g} (99th percentile {p99:g}){said}, which no CT holds "
            "(an MR or PET image, or a CT stored without its rescale slope/intercept).",
            hint="Use --intensity auto (or mr); for a CT exported without rescale, export it again in HU.")
    if kind == "percentiles" and preset != "minmax" and looks_like_ct(array):
        return (f"This volume looks like CT in Hounsfield units (from {low:g} HU){said}, but the preset '{preset}' "
                "scales each volume by its own percentiles; a CT window (--intensity auto or ct-soft-tissue) gives "
                "the same contrast for every scan.")
    if kind == "auto" and modality == "CT" and not could_be_hounsfield(array):
        return (f"The series says CT but its values run from {low:g} to {float(sample.max()):g}, not Hounsfield "
                "units; 'auto' scales it by percentiles like an MR. Check the export's rescale slope/intercept.")
    return None
