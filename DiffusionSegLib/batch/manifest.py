"""Cases of a cohort run, from a manifest (CSV or JSON lines) or an image folder.

Every case becomes a complete job request dictionary before anything is run, so a bad row
(unknown column, unknown method, bad parameter, two cases writing one file, an output that is
another row's input, outside --output-dir or in no labelmap format: checks.py) stops the run
with a message naming the file and line before any model is loaded. Paths in a manifest are
relative to the manifest's folder; outputs are relative to `--output-dir` and stay inside it.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..contract.errors import DiffusionSegError, InvalidRequest
from ..contract.request import JobRequest
from ..io.datasets import file_stem, list_cases
from .checks import confined_output, inputs_that_are_outputs

COLUMNS = ("case", "image", "study", "method", "model", "prompt", "params", "output")
PROMPT_SEPARATOR = ";"
MAX_LISTED_ERRORS = 8


@dataclass(frozen=True)
class Defaults:
    """Run-wide values (from the command line) that a manifest row may override."""

    method: str | None = None
    model: str | None = None
    prompts: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    request: dict[str, Any] = field(default_factory=dict)  # device, pipeline, seed, roi …
    output_dir: Path = Path(".")
    output_suffix: str = ".nrrd"


@dataclass(frozen=True)
class Case:
    """One case: its id in the summary, its job request (transport-free, so it can travel to a
    Ray actor), where it came from (for messages) and its output's name inside the output folder
    (how a resumed run recognises it, even when the folder was moved or mounted elsewhere)."""

    case: str
    request: dict[str, Any]
    source: str
    output_name: str = ""
    remote: dict[str, Any] | None = None   # a DICOMweb series (batch/dicomweb.py): server, study, series

    @property
    def output(self) -> Path:
        return Path(self.request["output"])

    @property
    def fingerprint(self) -> str:
        """What the result depends on. The device is left out on purpose (resuming on another
        machine must not redo finished cases), and so is the output path (see `output_name`)."""
        relevant = {k: v for k, v in self.request.items() if k not in ("device", "overwrite", "output")}
        return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()[:16]


def split_prompts(value: Any) -> list[str]:
    """A manifest prompt: 'liver; spleen' or a JSON list → ['liver', 'spleen']."""
    if value is None:
        return []
    items = value if isinstance(value, list) else str(value).split(PROMPT_SEPARATOR)
    return [str(p).strip() for p in items if str(p).strip()]


def read_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(source "file:line", row) for each non-empty row of a CSV or JSONL manifest."""
    if not path.is_file():
        raise InvalidRequest(f"Manifest not found: {path}", hint="Pass a .csv or .jsonl file with --manifest.")
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8-sig")  # Excel writes a byte-order mark
    if suffix in (".jsonl", ".ndjson"):
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InvalidRequest(f"{path.name}:{number} is not valid JSON ({exc.msg}).") from None
                if not isinstance(row, dict):
                    raise InvalidRequest(f"{path.name}:{number} must be a JSON object, one case per line.")
                yield f"{path.name}:{number}", row
    elif suffix in (".csv", ".tsv"):
        reader = csv.DictReader(text.splitlines(), delimiter="\t" if suffix == ".tsv" else ",")
        for row in reader:
            cleaned = {k.strip(): (v.strip() if isinstance(v, str) else v) for k, v in row.items() if k}
            if any(cleaned.values()):
                yield f"{path.name}:{reader.line_num}", {k: v for k, v in cleaned.items() if v not in ("", None)}
    else:
        raise InvalidRequest(f"Unsupported manifest type {path.suffix or path.name!r}.",
                             hint="Use a .csv (or .tsv) with a header row, or a .jsonl file (one JSON object a line).")


def _params(value: Any, source: str) -> dict[str, Any]:
    if value in (None, ""):
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise InvalidRequest(f"{source}: 'params' must be a JSON object, e.g. "
                                 '{"latent_mode": "clean"}; got ' + repr(value)) from None
    if not isinstance(value, dict):
        raise InvalidRequest(f"{source}: 'params' must be a JSON object; got {value!r}.")
    return value


def _local_path(value: str, base: Path) -> str:
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def local_model(value: str | None, base: Path) -> str | None:
    """A model that names a folder next to the manifest (or, on the command line, in the working
    folder) becomes an absolute path, so a worker started elsewhere (a Ray actor) finds it;
    anything else (a hub repo id like 'CompVis/stable-diffusion-v1-4') is passed on unchanged."""
    if not value:
        return None
    candidate = base / Path(value).expanduser()
    if value.startswith((".", "~", "/")) or candidate.exists():
        return _local_path(value, base)
    return value


def case_from_row(row: dict[str, Any], source: str, base: Path, defaults: Defaults) -> Case:
    unknown = sorted(set(row) - set(COLUMNS))
    if unknown:
        raise InvalidRequest(f"{source}: unknown column(s) {', '.join(unknown)}; the columns are {', '.join(COLUMNS)}.")
    if row.get("study"):
        raise InvalidRequest(f"{source}: a 'study' row names a study on a DICOMweb server; pass --dicomweb URL.")
    if not row.get("image"):
        raise InvalidRequest(f"{source}: the case has no 'image'.")
    image = _local_path(str(row["image"]), base)
    prompts = split_prompts(row["prompt"]) if "prompt" in row else list(defaults.prompts)
    case_id = str(row.get("case") or "").strip()
    output = row.get("output")
    if output:
        output_path = Path(str(output)).expanduser()
        output_path = output_path if output_path.is_absolute() else defaults.output_dir / output_path
    else:
        output_path = defaults.output_dir / f"{case_id or file_stem(Path(image))}{defaults.output_suffix}"
    output_path = confined_output(output_path, defaults.output_dir, source)
    request = {**defaults.request, "input": image, "output": str(output_path),
               "method": row.get("method") or defaults.method,
               "model": local_model(row.get("model"), base) or defaults.model,
               "params": {**defaults.params, **_params(row.get("params"), source)},
               **prompt_fields(prompts)}
    if not request["method"]:
        raise InvalidRequest(f"{source}: no method; add a 'method' column or pass --method.")
    name = output_path.relative_to(defaults.output_dir.resolve()).as_posix()
    return Case(case=case_id or file_stem(output_path), request=request, source=source, output_name=name)


def prompt_fields(prompts: list[str]) -> dict[str, Any]:
    """One prompt → `prompt`; several → `prompts` (one named segment each, segmented in one job
    that shares the prompt-independent work)."""
    if len(prompts) <= 1:
        return {"prompt": prompts[0] if prompts else None}
    return {"prompt": None, "prompts": prompts}


def read_manifest(path: str | Path, defaults: Defaults, study_rows: list | None = None) -> list[Case]:
    """The manifest's cases. `study_rows`: rows naming a DICOMweb 'study' are collected there
    as (row, source) (batch/dicomweb.py expands them) instead of being refused."""
    path = Path(path).expanduser().resolve()
    rows = [(row, source) for source, row in read_rows(path)]
    if study_rows is not None:
        study_rows.extend((row, source) for row, source in rows if row.get("study"))
        rows = [(row, source) for row, source in rows if not row.get("study")]
        if not rows:
            return []
    return _build(rows, path.parent, defaults)


def cases_from_folder(folder: str | Path, defaults: Defaults) -> list[Case]:
    """`--images DIR`: every image file (or case sub-folder, e.g. a DICOM series) is a case."""
    folder = Path(folder).expanduser().resolve()
    try:
        found = list_cases(folder)
    except DiffusionSegError as exc:
        raise InvalidRequest(exc.message) from None
    if not found:
        raise InvalidRequest(f"No images in {folder}.", hint="Supported: NRRD, NIfTI, MHA, PNG/JPG/BMP/TIFF, "
                             "one folder per DICOM series.")
    rows = [({"case": stem, "image": str(image)}, f"{folder.name}/{image.name}") for stem, image in found.items()]
    return _build(rows, folder, defaults)


def _build(rows: list[tuple[dict, str]], base: Path, defaults: Defaults) -> list[Case]:
    """All rows to cases, every problem of the manifest reported at once (up to a few)."""
    cases, errors = [], []
    for row, source in rows:
        try:
            case = case_from_row(row, source, base, defaults)
            validate_case(case)
            cases.append(case)
        except InvalidRequest as exc:
            errors.append(str(exc) if str(exc).startswith(source) else f"{source}: {exc}")
    errors += _duplicates(cases) + inputs_that_are_outputs(cases)
    if errors:
        more = f" (and {len(errors) - MAX_LISTED_ERRORS} more)" if len(errors) > MAX_LISTED_ERRORS else ""
        raise InvalidRequest(f"{len(errors)} problem(s) in the cases: " + " | ".join(errors[:MAX_LISTED_ERRORS]) + more)
    if not cases:
        raise InvalidRequest("The manifest lists no cases.")
    return cases


def validate_case(case: Case) -> None:
    """The same checks a job makes before it loads anything (request fields, method, parameters,
    prompts), made for every case before the first model load of the run."""
    from ..contract.events import JobContext
    from ..jobs.job import create_method

    request = JobRequest.from_dict(case.request)
    methods = [create_method(request.method, request.params, prompt, request.model, JobContext())
               for prompt in request.prompt_list()]
    if len(methods) > 1:
        from ..volume.several_prompts import check_several_prompts

        check_several_prompts(methods)


def _duplicates(cases: list[Case]) -> list[str]:
    errors = []
    for what, key in (("case id", lambda c: c.case), ("output", lambda c: str(c.output))):
        seen: dict[str, str] = {}
        for case in cases:
            if key(case) in seen:
                errors.append(f"{case.source}: {what} {key(case)!r} is also used by {seen[key(case)]}; "
                              "give each case its own 'case' or 'output'")
            seen.setdefault(key(case), case.source)
    return errors
