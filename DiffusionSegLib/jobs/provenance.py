"""How a result was made: `<stem>.provenance.json` beside every result, and the same facts in a SEG.

A reader of a result months later must be able to say which code, weights, prompt, seed, dtype
and input made it, and to make it again. So the record holds the DiffusionSeg version and git
commit, the method with every parameter's resolved value, the model reference with the SHA-256
of each weights file and its licence where the model states one, the prompts, seed, dtype,
device, threads, library versions, the input's checksum and the timings; and it holds the job
request with every `auto` resolved, so `run --request RESULT.provenance.json --output NEW`
repeats the job (bit for bit on the same machine: same code, weights, dtype, device, threads).
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import subprocess
import threading
import time
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from .. import __version__
from ..contract.request import PROVENANCE_FORMAT, JobRequest
from ..io.bundle import bundle_stem
from ..io.images import Volume

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".onnx", ".msgpack")
LIBRARIES = ("torch", "diffusers", "transformers", "numpy", "SimpleITK", "pydicom", "highdicom")
CHUNK = 1 << 22
_HASHES: dict[tuple[str, int, int], str] = {}   # (path, size, mtime) → sha256: a warm worker hashes once
_HASH_LOCK = threading.Lock()


def provenance_path(output: str | Path) -> Path:
    """`/x/liver.nii.gz` → `/x/liver.provenance.json`."""
    stem = bundle_stem(output)
    return stem.with_name(f"{stem.name}.provenance.json")


def file_sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _HASH_LOCK:
        if key in _HASHES:
            return _HASHES[key]
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    value = digest.hexdigest()
    with _HASH_LOCK:
        _HASHES[key] = value
    return value


@lru_cache(maxsize=1)
def code_version() -> dict[str, Any]:
    """The DiffusionSeg version, and the git commit of a source checkout (None when installed
    from a wheel or git is missing); `dirty` when tracked files differ from that commit."""
    root = Path(__file__).resolve().parents[2]
    facts: dict[str, Any] = {"version": __version__, "commit": None}
    if not (root / ".git").exists():
        return facts
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5)
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return facts
    if commit.returncode == 0:
        facts["commit"] = commit.stdout.strip()
        facts["dirty"] = bool(status.stdout.strip()) if status.returncode == 0 else None
    return facts


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def model_folder(reference: str | None) -> Path | None:
    """The local folder a model reference reads: a path, or the hub cache's snapshot."""
    if not reference:
        return None
    from ..models.references import is_built_in, is_local_reference

    if is_built_in(reference):
        return None
    if is_local_reference(reference):
        path = Path(reference).expanduser().resolve()
        return path if path.exists() else None
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(reference, local_files_only=True))
    except Exception:  # noqa: BLE001 - not in the cache (or no hub library): nothing to hash
        return None


def model_facts(reference: str | None) -> dict[str, Any]:
    """Reference, weights files with SHA-256 and size, and the licence the model states."""
    facts: dict[str, Any] = {"reference": reference, "files": [], "license": None}
    folder = model_folder(reference)
    if folder is None:
        return facts
    files = [folder] if folder.is_file() else sorted(p for p in folder.rglob("*")
                                                      if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    for path in files:
        facts["files"].append({"path": path.name if folder.is_file() else path.relative_to(folder).as_posix(),
                               "bytes": path.stat().st_size, "sha256": _hub_blob_sha(path) or file_sha256(path)})
    facts["license"] = model_license(folder) if folder.is_dir() else None
    return facts


def _hub_blob_sha(path: Path) -> str | None:
    """The hub cache names each large file's blob by its SHA-256 (verified on download)."""
    if not path.is_symlink():
        return None
    name = Path(os.readlink(path)).name
    return name if re.fullmatch(r"[0-9a-f]{64}", name) else None


def model_license(folder: Path) -> str | None:
    """`license:` from a model card's front matter, or a "license" key of a top-level JSON file."""
    card = folder / "README.md"
    if card.is_file():
        text = card.read_text(encoding="utf-8", errors="replace")
        front = re.match(r"---\s*\n(.*?)\n---", text, re.DOTALL)
        if front:
            found = re.search(r"^license:\s*(.+)$", front.group(1), re.MULTILINE)
            if found:
                return found.group(1).strip().strip("'\"")
    import json

    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("license"), str):
            return data["license"]
    return None


def input_facts(volume: Volume) -> dict[str, Any]:
    """The input's checksum: its file, or the DICOM images used in slice order (localizers and
    other series left out), plus what the image is."""
    files = [Path(p) for p in volume.dicom.files] if volume.dicom else _image_files(Path(volume.path))
    digest = hashlib.sha256()
    for path in files:
        digest.update(file_sha256(path).encode())
    facts: dict[str, Any] = {"path": str(Path(volume.path).resolve()), "files": len(files),
                             "sha256": digest.hexdigest() if len(files) > 1 else file_sha256(files[0]),
                             "size": list(volume.reference.GetSize()), "spacing": list(volume.reference.GetSpacing()),
                             "origin": list(volume.reference.GetOrigin()),
                             "direction": list(volume.reference.GetDirection())}
    if volume.dicom:
        facts["dicom"] = {"study_instance_uid": volume.dicom.study, "series_instance_uid": volume.dicom.series,
                          "modality": volume.dicom.modality, "gantry_tilt_degrees": volume.dicom.tilt_degrees}
    return facts


def _image_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return [p for p in sorted(path.iterdir()) if p.is_file() and not p.name.startswith(".")]


def device_name(device: str) -> str:
    """A request device from a resolved one ('cuda:0' → 'cuda')."""
    return device.split(":", 1)[0]


def build_provenance(request: JobRequest, methods: list, volume: Volume, *, device: str, dtype: str,
                     threads: int, timings: dict[str, float], segments: list[dict], outputs: dict[str, str],
                     notes: list[str]) -> dict[str, Any]:
    """The record: facts for a reader, and `request` (every `auto` resolved) for `run --request`."""
    method = methods[0]
    resolved = request.to_dict()
    resolved.update(params=dict(method.params), model=method.model, device=device_name(device), dtype=dtype,
                    threads=threads, input=str(Path(request.input).resolve()),
                    output=str(Path(request.output).resolve()), overwrite=False)
    model = model_facts(method.model)
    return {
        "format": PROVENANCE_FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "diffusionseg": code_version(), "method": method.info.name, "parameters": dict(method.params),
        "prompts": [m.prompt for m in methods if m.prompt], "model": model, "seed": request.seed, "dtype": dtype,
        "device": device, "threads": threads, "libraries": library_versions(), "input": input_facts(volume),
        "input_notes": notes, "outputs": outputs, "segments": segments,
        "timings": {k: round(v, 4) for k, v in timings.items()}, "request": resolved,
    }


def seg_facts(record: dict[str, Any]) -> dict[str, Any]:
    """What a SEG carries of the record (AlgorithmParameters and DerivationDescription)."""
    weights = [f"{f['path']}:{f['sha256'][:16]}" for f in record["model"]["files"]]
    return {"method": record["method"], "model": record["model"]["reference"], "weights_sha256": weights,
            "license": record["model"]["license"], "prompts": record["prompts"], "seed": record["seed"],
            "dtype": record["dtype"], "device": record["device"], "threads": record["threads"],
            "commit": record["diffusionseg"].get("commit"), "parameters": record["parameters"],
            "input_sha256": record["input"]["sha256"]}
