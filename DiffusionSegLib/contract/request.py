"""The job request: the JSON file the Slicer module (or any script) writes for one job.

Versioned and transport-free, so a persistent or remote worker can accept the same object.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .choices import DEVICES, SLICE_AXES, normalise_dtype_name, preset_names
from .errors import InvalidParameter, InvalidRequest, describe

REQUEST_VERSION = 2
SUPPORTED_VERSIONS = {1, 2}       # 2 adds `evidence` (the result bundle); 1 means evidence = false
MAX_SEED = 2**32 - 1              # numpy and torch generators both accept [0, 2^32)
MAX_PROMPT_CHARS = 1000           # CLIP reads 77 tokens; a longer prompt is a mistake, not a prompt
MAX_PATH_CHARS = 4096
MAX_NESTING = 6                   # a request is at most {"roi": {"ijk_min": [..]}} deep
MAX_REQUEST_BYTES = 1_000_000
PROVENANCE_FORMAT = "diffusionseg-provenance"   # a result's record; its "request" repeats the job
SEG_TYPES = ("binary", "labelmap")            # DICOM SEG forms (io/dicom_seg.py)


@dataclass
class PipelineOptions:
    """Volume pipeline settings shared by every method (see DiffusionSegLib/volume/segmenter.py)."""

    axis: str = "auto"               # slice axis: patient-oriented name or an IJK axis
    intensity: str = "auto"          # preset name from data/intensity_presets.json
    skip_empty_slices: bool = True   # do not run the model on slices without tissue
    fill_holes: bool = True
    largest_component: bool = False
    batch_size: int = 0              # 0: sized from free GPU memory (1 on CPU)

    def validate(self) -> None:
        if not isinstance(self.axis, str) or self.axis not in SLICE_AXES:
            raise InvalidRequest(f"Slice axis must be one of {', '.join(SLICE_AXES)}; got {describe(self.axis)}.")
        if not isinstance(self.intensity, str) or self.intensity not in preset_names():
            raise InvalidRequest(
                f"Unknown intensity preset {describe(self.intensity)}; choose one of {', '.join(preset_names())}.")
        if not _is_int(self.batch_size) or not 0 <= self.batch_size <= 4096:
            raise InvalidRequest(f"batch_size must be a whole number from 0 to 4096; got {describe(self.batch_size)}.")
        for name in ("skip_empty_slices", "fill_holes", "largest_component"):
            if not isinstance(getattr(self, name), bool):  # "false" would silently mean true
                raise InvalidRequest(
                    f"Pipeline option {name} must be true or false; got {describe(getattr(self, name))}.")


@dataclass
class JobRequest:
    """One segmentation job. Paths are absolute or relative to the working directory.

    `validate()` is the one request validator: types, ranges and text of every field, run
    before any file is opened or any model loaded (files are checked next, by the job)."""

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
    evidence: bool = False                    # also write the result bundle (docs/evidence.md)
    seg_type: str = "binary"                  # a .dcm output: binary or labelmap DICOM SEG
    overwrite: bool = False           # replace an existing output file
    version: int = REQUEST_VERSION

    @classmethod
    def from_dict(cls, data: Any) -> "JobRequest":
        if not isinstance(data, dict):
            raise InvalidRequest("A job request must be a JSON object.")
        if _depth(data) > MAX_NESTING:
            raise InvalidRequest(f"The request is nested more than {MAX_NESTING} levels deep; "
                                 "no field of a job request holds deeper values.")
        _check_text(data, "request")
        check_version(data.get("version", REQUEST_VERSION))
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise InvalidRequest(f"Unknown request field(s): {describe(', '.join(map(str, unknown)))}.")
        missing = [name for name in ("input", "output", "method") if name not in data]
        if missing:
            raise InvalidRequest(f"The request needs the field(s) {', '.join(repr(m) for m in missing)}.")
        values = dict(data)
        pipeline = values.pop("pipeline", None)
        pipeline = {} if pipeline is None else pipeline
        if not isinstance(pipeline, dict):
            raise InvalidRequest(f"'pipeline' must be an object; got {describe(pipeline)}.")
        bad = sorted(set(pipeline) - set(PipelineOptions.__dataclass_fields__))
        if bad:
            raise InvalidRequest(f"Unknown pipeline option(s): {describe(', '.join(bad))}.")
        request = cls(**values, pipeline=PipelineOptions(**pipeline))
        request.validate()
        return request

    @classmethod
    def load(cls, path: str | Path) -> "JobRequest":
        path = Path(path)
        try:
            if path.stat().st_size > MAX_REQUEST_BYTES:
                raise InvalidRequest(f"Request file {path} is larger than {MAX_REQUEST_BYTES // 1000} kB; "
                                     "a job request is a few hundred bytes.")
            if not path.is_file():
                raise InvalidRequest(f"Request file {path} is not a regular file.")
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InvalidRequest(f"Request file not found: {path}") from None
        except RecursionError:
            raise InvalidRequest(f"Request file {path} is nested too deeply to be a job request.") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidRequest(f"Request file {path} is not valid JSON: {str(exc)[:200]}") from None
        if isinstance(data, dict) and data.get("format") == PROVENANCE_FORMAT:
            data = data.get("request")   # a result's provenance record: repeat the job it describes
            if not isinstance(data, dict):
                raise InvalidRequest(f"The provenance record {path} holds no request to repeat.")
        return cls.from_dict(data)

    def prompt_list(self) -> list[str | None]:
        """The prompts of this job, in priority order (a single `prompt`, possibly None)."""
        return list(self.prompts) if self.prompts else [self.prompt]

    def _validate_prompts(self) -> None:
        if self.prompts is None:
            return
        if not isinstance(self.prompts, list) or not all(isinstance(p, str) and p.strip() for p in self.prompts):
            raise InvalidRequest("'prompts' must be a list of non-empty texts, e.g. [\"liver\", \"liver tumour\"].")
        for prompt in self.prompts:
            if len(prompt) > MAX_PROMPT_CHARS:
                raise InvalidRequest(f"A prompt is {len(prompt)} characters long; at most {MAX_PROMPT_CHARS} "
                                     f"are read: {describe(prompt)}.", hint="Describe the target in a few words.")
        _check_text({f"prompts[{i}]": p for i, p in enumerate(self.prompts)}, "request")
        self.prompts = [p.strip() for p in self.prompts]
        if len(set(self.prompts)) != len(self.prompts):
            raise InvalidRequest("'prompts' lists the same prompt twice; each prompt becomes one segment.")
        if self.prompt and self.prompts != [self.prompt.strip()]:
            raise InvalidRequest("Give either 'prompt' or 'prompts', not both.")

    def validate(self) -> None:
        for name in ("input", "output", "method"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise InvalidRequest(f"The request needs a non-empty text '{name}'; got {describe(value)}.")
        for name in ("prompt", "model"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise InvalidRequest(f"'{name}' must be text; got {describe(value)}.")
        for name in ("input", "output", "model"):
            value = getattr(self, name)
            if value is not None and len(value) > MAX_PATH_CHARS:
                raise InvalidRequest(f"'{name}' is {len(value)} characters long; paths are at most "
                                     f"{MAX_PATH_CHARS}: {describe(value)}.")
        if self.prompt is not None and len(self.prompt) > MAX_PROMPT_CHARS:
            raise InvalidRequest(f"The prompt is {len(self.prompt)} characters long; at most {MAX_PROMPT_CHARS} "
                                 f"are read: {describe(self.prompt)}.", hint="Describe the target in a few words.")
        _check_text({n: getattr(self, n) for n in ("input", "output", "method", "prompt", "model", "device")},
                    "request")
        check_version(self.version)
        if not _is_int(self.seed) or not 0 <= self.seed <= MAX_SEED:
            raise InvalidRequest(f"seed must be a whole number from 0 to {MAX_SEED}; got {describe(self.seed)}.")
        if not isinstance(self.evidence, bool):
            raise InvalidRequest(f"'evidence' must be true or false; got {describe(self.evidence)}.")
        if self.evidence and self.version < 2:
            raise InvalidRequest("'evidence' needs a version 2 request.", hint='Set "version": 2.')
        if not isinstance(self.overwrite, bool):
            raise InvalidRequest(f"'overwrite' must be true or false; got {describe(self.overwrite)}.")
        if not isinstance(self.seg_type, str) or self.seg_type not in SEG_TYPES:
            raise InvalidRequest(f"'seg_type' must be one of {', '.join(SEG_TYPES)}; got {describe(self.seg_type)}.")
        if not isinstance(self.device, str) or self.device not in DEVICES:
            raise InvalidRequest(f"Device must be one of {', '.join(DEVICES)}; got {describe(self.device)}.")
        _check_params(self.params)
        self._validate_prompts()
        if not isinstance(self.dtype, str):
            raise InvalidRequest(f"dtype must be text such as 'auto' or 'float32'; got {describe(self.dtype)}.")
        self.dtype = normalise_dtype_name(self.dtype)
        if not _is_int(self.threads) or not 0 <= self.threads <= 4096:
            raise InvalidRequest(f"threads must be a whole number from 0 (all physical cores) to 4096; "
                                 f"got {describe(self.threads)}.")
        if self.roi is not None:
            self.roi = _roi(self.roi)
        if self.slice_range is not None:
            first, last = _int_list(self.slice_range, 2, "'slice_range' must be [first, last] slice indices")
            if first < 0 or last < first:
                raise InvalidRequest(f"Slice range [{first}, {last}] is empty or negative.")
            self.slice_range = [first, last]
        if not isinstance(self.pipeline, PipelineOptions):
            raise InvalidRequest("'pipeline' must be an object of pipeline options.")
        self.pipeline.validate()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if data["seg_type"] == "binary":   # the default: left out, so an older worker reads the request
            del data["seg_type"]
        return data

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2), encoding="utf-8")


def check_version(version: Any) -> None:
    """One message for every wrong version: a number this worker does not read, or no number."""
    supported = ", ".join(map(str, sorted(SUPPORTED_VERSIONS)))
    if not _is_int(version) or version not in SUPPORTED_VERSIONS:
        kind = "" if _is_int(version) else f" ({type(version).__name__}, not a whole number)"
        raise InvalidRequest(f"Request 'version' {describe(version, 20)}{kind} is not supported; this worker "
                             f"reads version {supported}.",
                             hint="Update the DiffusionSeg extension and its worker together.")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_list(value: Any, length: int, message: str) -> list[int]:
    """Exactly `length` whole numbers (a string such as "12" is not the list [1, 2])."""
    if not isinstance(value, (list, tuple)) or len(value) != length or not all(_is_int(v) for v in value):
        raise InvalidRequest(f"{message}; got {describe(value)}.")
    return [int(v) for v in value]


def _roi(roi: Any) -> dict[str, list[int]]:
    shape = '\'roi\' must be {"ijk_min": [i, j, k], "ijk_max": [i, j, k]} with whole numbers'
    if not isinstance(roi, dict) or set(roi) != {"ijk_min", "ijk_max"}:
        raise InvalidRequest(f"{shape}; got {describe(roi)}.")
    lo, hi = _int_list(roi["ijk_min"], 3, shape), _int_list(roi["ijk_max"], 3, shape)
    if any(a > b for a, b in zip(lo, hi)):
        raise InvalidRequest(f"ROI box is empty: min {lo}, max {hi}.")
    return {"ijk_min": lo, "ijk_max": hi}


def _check_params(params: Any) -> None:
    """Method parameters are flat name → scalar; numbers finite (NaN passes every range check)."""
    if not isinstance(params, dict):
        raise InvalidRequest(f"'params' must be an object of parameter values; got {describe(params)}.")
    for name, value in params.items():
        if not isinstance(name, str):
            raise InvalidRequest(f"Parameter names must be text; got {describe(name)}.")
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise InvalidParameter(f"Parameter {describe(name, 40)} must be a single value; got {describe(value)}.")
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidParameter(f"Parameter {describe(name, 40)} must be a finite number; got {value}.")


def _check_text(value: Any, where: str) -> None:
    """Every string must be encodable text: a lone surrogate (valid JSON "\\ud800") would
    otherwise fail deep inside a tokenizer or when the event is written."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidRequest(f"{where} is not valid text: it holds an unpaired surrogate "
                                 f"({describe(value, 40)}).", hint="Pass plain UTF-8 text.") from None
        if "\0" in value:   # no path or prompt holds one; a file system call would fail on it
            raise InvalidRequest(f"{where} holds a NUL character ({describe(value, 40)}).",
                                 hint="Pass plain text without control characters.")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, where)
            _check_text(item, f"'{key}'" if where == "request" else f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_text(item, where)


def _depth(value: Any) -> int:
    """Nesting depth, iteratively (a crafted request must not exhaust the recursion limit);
    stops counting past MAX_NESTING."""
    deepest, stack = 0, [(value, 1)]
    while stack and deepest <= MAX_NESTING:
        item, level = stack.pop()
        deepest = max(deepest, level)
        children = item.values() if isinstance(item, dict) else item if isinstance(item, (list, tuple)) else ()
        stack.extend((child, level + 1) for child in children)
    return deepest
