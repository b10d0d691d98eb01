"""The panel's choices as one plain object, and the job request built from it.

`JobSettings` is what the parameter node, QSettings, the logic, the log and the tests share. It
holds no MRML nodes (those are passed to the logic separately) and no Qt.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from DiffusionSegLib.api import DTYPE_CHOICES, JobRequest, PipelineOptions

DEVICES = ("auto", "cuda", "cpu", "mps")
DTYPES = DTYPE_CHOICES                # auto, float32, bfloat16, float16 (DiffusionSegLib/runtime/dtypes.py)
SLICE_AXES = ("auto", "axial", "coronal", "sagittal")


@dataclass
class JobSettings:
    method: str = ""
    prompt: str = ""
    model: str = ""                   # "" = the method's default model; else HF repo id or folder
    device: str = "auto"
    dtype: str = "auto"               # compute precision (advanced)
    threads: int = 0                  # CPU threads of the worker; 0 = all physical cores
    params: dict[str, Any] = field(default_factory=dict)   # method parameters (by name)
    axis: str = "auto"
    intensity: str = "auto"
    skipEmptySlices: bool = True
    fillHoles: bool = True
    largestComponent: bool = False
    batchSize: int = 0
    sliceRange: list[int] | None = None   # [first, last] along the slice axis, inclusive
    seed: int = 0
    evidence: bool = True             # also import the evidence maps and keep the result steerable
    pythonInterpreter: str = ""       # "" = the worker Python chosen in the user settings (WorkerSettings.py)

    def toDict(self) -> dict[str, Any]:
        return asdict(self)

    def toJson(self) -> str:
        return json.dumps(self.toDict(), sort_keys=True)

    @classmethod
    def fromDict(cls, data: dict[str, Any] | None) -> "JobSettings":
        """Tolerant of stale or foreign keys (old QSettings): unknown keys are ignored, values of
        the wrong type fall back to the default."""
        settings = cls()
        for f in fields(cls):
            if not data or f.name not in data:
                continue
            value = data[f.name]
            default = getattr(settings, f.name)
            if f.name == "sliceRange":
                ok = value is None or (isinstance(value, (list, tuple)) and len(value) == 2)
                value = [int(v) for v in value] if ok and value is not None else None
            elif isinstance(default, bool):
                ok = isinstance(value, bool)
            elif isinstance(default, int):
                ok = isinstance(value, int) and not isinstance(value, bool)
            else:
                ok = isinstance(value, type(default))
            if ok:
                setattr(settings, f.name, value)
        if settings.device not in DEVICES:
            settings.device = "auto"
        if settings.dtype not in DTYPES:
            settings.dtype = "auto"
        settings.threads = max(0, settings.threads)
        return settings

    @classmethod
    def fromJson(cls, text: str) -> "JobSettings":
        try:
            return cls.fromDict(json.loads(text))
        except (TypeError, ValueError):
            return cls()


def storedParameterValue(param: dict, stored: dict):
    """The stored value when it is still valid for this parameter, else its default."""
    value = stored.get(param["name"], param["default"])
    if param["type"] == "choice" and value not in param["choices"]:
        return param["default"]
    if param["type"] in ("int", "float"):
        try:
            value = int(value) if param["type"] == "int" else float(value)
        except (TypeError, ValueError):
            return param["default"]
        if param.get("minimum") is not None and value < param["minimum"] or \
                param.get("maximum") is not None and value > param["maximum"]:
            return param["default"]
    return value


def splitPrompts(text: str) -> list[str]:
    """One segment per prompt: prompts are separated by new lines or ';' (VoxTell's panel takes
    one per line), e.g. "liver; liver tumour". Order is priority where they overlap."""
    parts = [part.strip() for line in (text or "").splitlines() for part in line.split(";")]
    return list(dict.fromkeys(part for part in parts if part))


def buildJobRequest(settings: JobSettings, inputPath: str, outputPath: str,
                    roiIjk: tuple[list[int], list[int]] | None = None,
                    methodInfo: Any = None) -> JobRequest:
    """The request the worker reads. With `methodInfo`, parameters are checked now (so a bad
    value is reported before a process starts) and the prompt rule is enforced."""
    params = dict(settings.params)
    prompts = splitPrompts(settings.prompt)
    prompt = prompts[0] if len(prompts) == 1 else None
    if methodInfo is not None:
        known = {p.name for p in methodInfo.params}
        params = methodInfo.resolve_params({k: v for k, v in params.items() if k in known})
        if methodInfo.prompt == "required" and not prompts:
            raise ValueError(f"{methodInfo.label} needs a text prompt, for example "
                             f"'{(methodInfo.prompt_examples or ('liver',))[0]}'.")
        if methodInfo.prompt == "none":
            prompt, prompts = None, []
    if settings.sliceRange and not 0 <= settings.sliceRange[0] <= settings.sliceRange[1]:
        raise ValueError(f"The slice range {settings.sliceRange[0]} to {settings.sliceRange[1]} is empty; "
                         "the first slice must not come after the last.")
    roi = None
    if roiIjk is not None:
        roi = {"ijk_min": [int(v) for v in roiIjk[0]], "ijk_max": [int(v) for v in roiIjk[1]]}
    pipeline = PipelineOptions(
        axis=settings.axis, intensity=settings.intensity,
        skip_empty_slices=settings.skipEmptySlices, fill_holes=settings.fillHoles,
        largest_component=settings.largestComponent, batch_size=int(settings.batchSize))
    return JobRequest(
        input=str(inputPath), output=str(outputPath), method=settings.method, prompt=prompt,
        prompts=prompts if len(prompts) > 1 else None,
        model=settings.model.strip() or None, device=settings.device, dtype=settings.dtype,
        threads=max(0, int(settings.threads)), params=params,
        pipeline=pipeline, roi=roi,
        slice_range=list(settings.sliceRange) if settings.sliceRange else None,
        seed=int(settings.seed),
        evidence=bool(settings.evidence) and len(prompts) <= 1)  # the bundle holds one prompt's evidence
