"""Errors a job can end with, each with a stable code (for the error event) and exit status.

The codes and exit statuses are part of the job contract: the Slicer module and scripts branch
on them, so change them only together with the table in docs/cli.md.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BAD_REQUEST = 2
EXIT_BAD_INPUT = 3
EXIT_MODEL = 4
EXIT_DEVICE = 5
EXIT_WRITE_FAILED = 6
EXIT_CANCELLED = 130
EXIT_CASES_FAILED = 7  # `batch`: the run finished, but some cases failed (see its summary)
EXIT_TRAINING_FELL_SHORT = 8  # `train`: the run finished, but a stage fell short (training/quality.py)

# What each exit status means: `--help` prints it and docs/cli.md's table is generated from it
# (python -m DiffusionSegLib.tools.docs_tables), with the error codes of each status.
EXIT_MEANINGS = {
    EXIT_OK: "success: the output is complete",
    EXIT_INTERNAL: "a bug: the stderr log has the traceback",
    EXIT_BAD_REQUEST: "the request or the arguments are wrong; or the output exists (pass --overwrite, or "
                      "--resume for train) or another job is writing it",
    EXIT_BAD_INPUT: "the image (or training/evaluation data) cannot be used: missing, 4D, empty, NaN, too "
                    "small, unreadable, a DICOM folder refused by its checks; or, for batch --dicomweb, the "
                    "server was unreachable, refused the credentials or did not store the SEG",
    EXIT_MODEL: "the model cannot be found or loaded (the message says where it looked)",
    EXIT_DEVICE: "the requested device is missing, or it ran out of memory (slice batches are halved first, "
                 "down to one)",
    EXIT_WRITE_FAILED: "the output could not be written completely (disk full, quota): nothing was written",
    EXIT_CASES_FAILED: "batch finished but some cases failed; each one is in its summary",
    EXIT_TRAINING_FELL_SHORT: "train finished but a stage fell short of its floor (no better than a trivial "
                              "answer): the checkpoint is written and flagged; the message says what to do, "
                              "--resume extends that stage",
    EXIT_CANCELLED: "cancelled (Ctrl+C, SIGTERM, or the parent process gone): stopped at a safe point, nothing "
                    "written",
}

OUT_OF_MEMORY_HINT = ("Close other GPU programs, lower the batch size or the model resolution, "
                      "or choose device 'cpu'.")


class DiffusionSegError(Exception):
    """Base class: a failure with a message meant for the user, not a stack trace."""

    code = "internal"
    exit_code = EXIT_INTERNAL

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}" if self.hint else self.message


class InvalidRequest(DiffusionSegError):
    code = "invalid_request"
    exit_code = EXIT_BAD_REQUEST


class UnknownMethod(InvalidRequest):
    code = "unknown_method"


class InvalidParameter(InvalidRequest):
    code = "invalid_parameter"


class OutputExists(InvalidRequest):
    """The output path holds something and the caller did not ask to replace it."""

    code = "output_exists"


class OutputBusy(InvalidRequest):
    """Another job is writing the same output right now."""

    code = "output_busy"


class WriteFailed(DiffusionSegError):
    """The output could not be written completely (disk full, quota, I/O error); nothing was put
    at the output path."""

    code = "write_failed"
    exit_code = EXIT_WRITE_FAILED


class InputNotFound(DiffusionSegError):
    code = "input_not_found"
    exit_code = EXIT_BAD_INPUT


class InvalidImage(DiffusionSegError):
    """The image exists but cannot be segmented (4D, empty, NaN, unsupported pixel type…)."""

    code = "invalid_image"
    exit_code = EXIT_BAD_INPUT


class InvalidData(DiffusionSegError):
    """Training or evaluation data that cannot be used (no masks, size mismatch…)."""

    code = "invalid_data"
    exit_code = EXIT_BAD_INPUT


class RemoteFailed(DiffusionSegError):
    """A DICOMweb server could not be reached, refused the credentials, does not know the study
    or series, or would not store the result (`batch --dicomweb`)."""

    code = "dicomweb_failed"
    exit_code = EXIT_BAD_INPUT


class StoreFailed(RemoteFailed):
    """The result was written here but the DICOMweb server did not store it (STOW-RS); a rerun
    of the batch stores it."""

    code = "store_failed"


class ModelNotFound(DiffusionSegError):
    code = "model_not_found"
    exit_code = EXIT_MODEL


class ModelLoadFailed(DiffusionSegError):
    code = "model_load_failed"
    exit_code = EXIT_MODEL


class DeviceUnavailable(DiffusionSegError):
    code = "device_unavailable"
    exit_code = EXIT_DEVICE


class OutOfMemory(DiffusionSegError):
    code = "out_of_memory"
    exit_code = EXIT_DEVICE


class CasesFailed(DiffusionSegError):
    """A batch ran to the end but some of its cases failed; each is in the summary."""

    code = "cases_failed"
    exit_code = EXIT_CASES_FAILED


class TrainingFellShort(DiffusionSegError):
    """A training run ended, but what it made is no better than a trivial answer (all background
    or all foreground) by the floor of training/quality.py; the checkpoint stays, flagged."""

    code = "training_fell_short"
    exit_code = EXIT_TRAINING_FELL_SHORT


class JobCancelled(DiffusionSegError):
    code = "cancelled"
    exit_code = EXIT_CANCELLED

    def __init__(self, message: str = "The job was cancelled; nothing was written."):
        super().__init__(message)


def describe(value: object, limit: int = 80) -> str:
    """repr() of a value for an error message, cut to `limit` characters: a 5 MB prompt must not
    come back as a 10 MB error line."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = f"{len(value)} characters" if isinstance(value, str) else f"{len(text)} characters as text"
    return f"{text[:limit]}… ({size})"


def error_codes() -> dict[int, list[str]]:
    """Exit status → the error codes that end with it, read from the error classes of this module
    (the command line's; `serve`'s HTTP-only errors subclass them elsewhere and would otherwise
    appear once serve is imported)."""
    codes: dict[int, list[str]] = {}
    pending = list(DiffusionSegError.__subclasses__())
    while pending:
        cls = pending.pop(0)
        pending.extend(cls.__subclasses__())
        if cls.__module__ != __name__:
            continue
        codes.setdefault(cls.exit_code, [])
        if cls.code not in codes[cls.exit_code]:
            codes[cls.exit_code].append(cls.code)
    codes.setdefault(EXIT_INTERNAL, []).insert(0, "internal")
    return codes
