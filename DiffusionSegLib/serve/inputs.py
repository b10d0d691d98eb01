"""Where a served job's input comes from and where its output goes.

- Input: a path on the server, accepted only inside an --allow-root folder (after resolving
  symbolic links, so `..` or a link cannot reach further), or an uploaded file saved in the
  job's own folder under a fixed name with the upload's image suffix.
- Output: always written in the job's folder on the server (clients download it); the request's
  `output`, when given, only chooses the format by its suffix. A served job therefore never
  writes outside the server's work folder, whatever a request says.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import BinaryIO

from ..contract.errors import InvalidRequest
from ..io.images import OUTPUT_SUFFIXES

UPLOAD_SUFFIXES = (".nrrd", ".nii", ".nii.gz", ".mha", ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
CHUNK = 1 << 20


class PathNotAllowed(InvalidRequest):
    """A server-side path outside every --allow-root folder (HTTP 403)."""

    code = "path_not_allowed"


class UploadTooLarge(InvalidRequest):
    code = "upload_too_large"


def suffix_of(name: str) -> str:
    lowered = name.lower()
    return ".nii.gz" if lowered.endswith(".nii.gz") else Path(lowered).suffix


def confined_input(path: str, roots: list[Path]) -> str:
    """The resolved path when it lies inside one of `roots`; otherwise PathNotAllowed."""
    if not roots:
        raise PathNotAllowed("This server accepts no server-side input paths; upload the image instead.",
                             hint="Start `serve` with --allow-root FOLDER to allow paths inside FOLDER.")
    resolved = Path(path).expanduser().resolve()
    for root in roots:
        if resolved == root or root in resolved.parents:
            return str(resolved)
    raise PathNotAllowed(f"Input path {path} is outside the folders this server may read.",
                         hint="Upload the image, or start `serve` with --allow-root naming its folder.")


def save_upload(stream: BinaryIO, filename: str, folder: Path, max_bytes: int) -> str:
    """Copy an uploaded image into `folder` as `input<suffix>`; the client's file name is used
    for its suffix only (never as a path)."""
    suffix = suffix_of(filename or "")
    if suffix not in UPLOAD_SUFFIXES:
        raise InvalidRequest(f"Uploaded file {filename!r} is not a supported single-file image.",
                             hint=f"Upload one of {', '.join(UPLOAD_SUFFIXES)} (a DICOM series: convert it to "
                                  ".nrrd or .nii.gz first).")
    target = folder / f"input{suffix}"
    written = 0
    with open(target, "wb") as out:
        while True:
            chunk = stream.read(CHUNK)
            if not chunk:
                break
            written += len(chunk)
            if written > max_bytes:
                out.close()
                target.unlink(missing_ok=True)
                raise UploadTooLarge(f"The upload is larger than this server's limit of {max_bytes} bytes.",
                                     hint="Crop the volume (ROI) or ask the server's owner to raise --max-upload-mb.")
            out.write(chunk)
    if written == 0:
        target.unlink(missing_ok=True)
        raise InvalidRequest(f"The uploaded file {filename!r} is empty.")
    return str(target)


def job_output(requested: str | None, folder: Path) -> str:
    """`<job folder>/labelmap<suffix>`, the suffix taken from the requested output (default .nrrd;
    .dcm: a DICOM SEG, for a DICOM series on the server)."""
    suffix = suffix_of(requested or "") or ".nrrd"
    if suffix not in OUTPUT_SUFFIXES:
        raise InvalidRequest(f"Unsupported output format {suffix!r}.", hint=f"Use one of {', '.join(OUTPUT_SUFFIXES)}.")
    return str(folder / f"labelmap{suffix}")


def remove_folder(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
