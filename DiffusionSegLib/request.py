"""The job request: the JSON file the Slicer module (or any script) writes for one job.

Versioned and transport-free, so a persistent or remote worker can accept the same object.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import InvalidRequest

REQUEST_VERSION = 1
DEVICES = ("auto", "cuda", "cpu", "mps")
SLICE_AXES = ("auto", "axial", "coronal", "sagittal", "i", "j", "k")


@dataclass
class PipelineOptions:
    """Volume pipeline settings shared by every method (see DiffusionSegLib/pipeline.py)."""

    axis: str = "auto"               # slice axis: patient-oriented name or an IJK axis
    intensity: str = "auto"          # preset name from data/intensity_presets.json
    skip_empty_slices: bool = True   # do not run the model on slices without tissue
    fill_holes: bool = True
    largest_component: bool = False
    batch_size: int = 0              # 0: sized from free GPU memory (1 on CPU)

    def validate(self) -> None:
        from .intensity import preset_names

        if self.axis not in SLICE_AXES:
            raise InvalidRequest(f"Slice axis must be one of {', '.join(SLICE_AXES)}; got {self.axis!r}.")
        if self.intensity not in preset_names():
            raise InvalidRequest(
                f"Unknown intensity preset {self.intensity!r}; choose one of {', '.join(preset_names())}.")
        if not isinstance(self.batch_size, int) or isinstance(self.batch_size, bool) or self.batch_size < 0:
            raise InvalidRequest(f"batch_size must be a whole number >= 0; got {self.batch_size!r}.")
        for name in ("skip_empty_slices", "fill_holes", "largest_component"):
            if not isinstance(getattr(self, name), bool):  # "false" would silently mean true
                raise InvalidRequest(f"Pipeline option {name} must be true or false; got {getattr(self, name)!r}.")


@dataclass
class JobRequest:
    """One segmentation job. Paths are absolute or relative to the working directory."""

    input: str
    output: str
    method: str
    prompt: str | None = None
    prompts: list[str] | None = None  # several prompts: one named segment each (instead of `prompt`)
    model: str | None = None          # HF repo id or local folder; None: the method's default
    device: str = "auto"
    dtype: str = "auto"               # auto, float32, bfloat16, float16 (see dtypes.py)
    threads: int = 0                  # CPU threads; 0 = the physical cores (see threads.py)
    params: dict[str, Any] = field(default_factory=dict)
    pipeline: PipelineOptions = field(default_factory=PipelineOptions)
    roi: dict[str, list[int]] | None = None   # {"ijk_min": [i, j, k], "ijk_max": [i, j, k]}, inclusive
    slice_range: list[int] | None = None      # [first, last] along the slice axis, inclusive
    seed: int = 0
    version: int = REQUEST_VERSION

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "JobRequest":
        if not isinstance(data, dict):
            raise InvalidRequest("A job request must be a JSON object.")
        version = data.get("version", REQUEST_VERSION)
        if version != REQUEST_VERSION:
            raise InvalidRequest(
                f"Request version {version} is not supported; this worker reads version {REQUEST_VERSION}.",
                hint="Update the DiffusionSeg extension and its worker together.")
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidRequest(f"Unknown request field(s): {', '.join(unknown)}.")
        for name in ("input", "output", "method"):
            if not isinstance(data.get(name), str) or not data[name].strip():
                raise InvalidRequest(f"The request needs a non-empty '{name}'.")
        values = dict(data)
        pipeline = values.pop("pipeline", None) or {}
        if not isinstance(pipeline, dict):
            raise InvalidRequest("'pipeline' must be an object.")
        pipe_fields = set(PipelineOptions.__dataclass_fields__)
        bad = sorted(set(pipeline) - pipe_fields)
        if bad:
            raise InvalidRequest(f"Unknown pipeline option(s): {', '.join(bad)}.")
        request = cls(**values, pipeline=PipelineOptions(**pipeline))
        request.validate()
        return request

    @classmethod
    def load(cls, path: str | Path) -> "JobRequest":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InvalidRequest(f"Request file not found: {path}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidRequest(f"Request file {path} is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    def prompt_list(self) -> list[str | None]:
        """The prompts of this job, in priority order (a single `prompt`, possibly None)."""
        return list(self.prompts) if self.prompts else [self.prompt]

    def _validate_prompts(self) -> None:
        if self.prompts is None:
            return
        if not isinstance(self.prompts, list) or not all(isinstance(p, str) and p.strip() for p in self.prompts):
            raise InvalidRequest("'prompts' must be a list of non-empty texts, e.g. [\"liver\", \"liver tumour\"].")
        self.prompts = [p.strip() for p in self.prompts]
        if len(set(self.prompts)) != len(self.prompts):
            raise InvalidRequest("'prompts' lists the same prompt twice; each prompt becomes one segment.")
        if self.prompt and self.prompts != [self.prompt.strip()]:
            raise InvalidRequest("Give either 'prompt' or 'prompts', not both.")

    def validate(self) -> None:
        self._validate_prompts()
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise InvalidRequest(f"seed must be a whole number; got {self.seed!r}.")
        if self.device not in DEVICES:
            raise InvalidRequest(f"Device must be one of {', '.join(DEVICES)}; got {self.device!r}.")
        from .dtypes import normalise_dtype_name

        if not isinstance(self.dtype, str):
            raise InvalidRequest(f"dtype must be a string such as 'auto' or 'float32'; got {self.dtype!r}.")
        self.dtype = normalise_dtype_name(self.dtype)
        if not isinstance(self.threads, int) or isinstance(self.threads, bool) or self.threads < 0:
            raise InvalidRequest(f"threads must be a whole number >= 0 (0 = all physical cores); got {self.threads!r}.")
        if not isinstance(self.params, dict):
            raise InvalidRequest("'params' must be an object of parameter values.")
        if self.roi is not None:
            try:
                lo, hi = [int(v) for v in self.roi["ijk_min"]], [int(v) for v in self.roi["ijk_max"]]
            except (KeyError, TypeError, ValueError):
                raise InvalidRequest("'roi' must be {\"ijk_min\": [i, j, k], \"ijk_max\": [i, j, k]}.") from None
            if len(lo) != 3 or len(hi) != 3 or any(a > b for a, b in zip(lo, hi)):
                raise InvalidRequest(f"ROI box is empty or malformed: min {lo}, max {hi}.")
            self.roi = {"ijk_min": lo, "ijk_max": hi}
        if self.slice_range is not None:
            try:
                first, last = (int(v) for v in self.slice_range)
            except (TypeError, ValueError):
                raise InvalidRequest("'slice_range' must be [first, last].") from None
            if first < 0 or last < first:
                raise InvalidRequest(f"Slice range [{first}, {last}] is empty or negative.")
            self.slice_range = [first, last]
        self.pipeline.validate()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2), encoding="utf-8")
