"""What a served job may read and where its output goes.

- Input: a path on the server, accepted only inside an --allow-root folder (after resolving
  symbolic links, so `..` or a link cannot reach further), or an uploaded file saved in the
  job's own folder under a fixed name with the upload's image suffix (uploads.py).
- Model: a Hugging Face repo id, a built-in reference (`random:…`), or a folder inside an
  --allow-model-root folder (resolved the same way). Anything else gets one message, whether
  it exists or not, so the answers never map the server's file system.
- Output: always written in the job's folder on the server (clients download it); the request's
  `output`, when given, only chooses the format by its suffix. A served job therefore never
  writes outside the server's work folder, whatever a request says.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from ..contract.errors import InvalidRequest, describe
from ..io.images import OUTPUT_SUFFIXES
from ..models.references import is_built_in, is_local_reference
from .errors import ModelNotAllowed, PathNotAllowed

UPLOAD_SUFFIXES = (".nrrd", ".nii", ".nii.gz", ".mha", ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
# owner/name as the hub spells repo ids: no path syntax (no leading dot, no '..', one slash)
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}(/[A-Za-z0-9][A-Za-z0-9_.-]{0,95})?$")


def suffix_of(name: str) -> str:
    lowered = name.lower()
    return ".nii.gz" if lowered.endswith(".nii.gz") else Path(lowered).suffix


def _inside(path: str, roots: list[Path]) -> str | None:
    """`path` resolved when it lies inside one of `roots` (None otherwise, or when it is no path)."""
    try:
        resolved = Path(path).expanduser().resolve()
    except (OSError, ValueError, RuntimeError):   # a NUL byte, a symlink loop: no path at all
        return None
    return str(resolved) if any(resolved == root or root in resolved.parents for root in roots) else None


def confined_input(path: str, roots: list[Path]) -> str:
    """The resolved path when it lies inside one of `roots`; otherwise PathNotAllowed."""
    if not roots:
        raise PathNotAllowed("This server accepts no server-side input paths; upload the image instead.",
                             hint="Start `serve` with --allow-root FOLDER to allow paths inside FOLDER.")
    resolved = _inside(path, roots)
    if resolved is None:
        raise PathNotAllowed(f"Input path {describe(path)} is outside the folders this server may read.",
                             hint="Upload the image, or start `serve` with --allow-root naming its folder.")
    return resolved


def confined_model(reference: Any, roots: list[Path]) -> Any:
    """The model reference a served job may use (a folder resolved), or ModelNotAllowed.
    Anything that is not text is left to the request validator's message."""
    if not isinstance(reference, str) or not reference.strip():
        return reference
    if is_built_in(reference):
        return reference
    if HUB_ID.match(reference) and ".." not in reference and not is_local_reference(reference):
        return reference
    resolved = _inside(reference, roots) if roots else None
    if resolved is None:
        raise ModelNotAllowed(f"This server does not load the model {describe(reference)}.",
                              hint="Give a Hugging Face repo id (owner/name), a built-in reference (random:…), or "
                                   "a folder inside one of the server's --allow-model-root folders.")
    return resolved


def job_output(requested: Any, folder: Path) -> str:
    """`<job folder>/labelmap<suffix>`, the suffix taken from the requested output (default .nrrd;
    .dcm: a DICOM SEG, for a DICOM series on the server)."""
    if requested is not None and not isinstance(requested, str):
        raise InvalidRequest(f"'output' must be text (a file name whose suffix picks the format); "
                             f"got {describe(requested)}.")
    suffix = suffix_of(requested or "") or ".nrrd"
    if suffix not in OUTPUT_SUFFIXES:
        raise InvalidRequest(f"Unsupported output format {describe(suffix)}.",
                             hint=f"Use one of {', '.join(OUTPUT_SUFFIXES)}.")
    return str(folder / f"labelmap{suffix}")


def remove_folder(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
