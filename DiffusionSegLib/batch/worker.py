"""One batch worker: a warm Runner that takes case after case and turns each into a summary row.

The local engine holds one in its own process; the Ray engine holds one per actor. Either way
the model loading, caching and cancellation are the Runner's (one runner, several front doors);
this class only adds what a cohort needs around a job: a per-case event log, the voxel count of
each segment read back from the written file, and a failure that becomes a row instead of
stopping the run.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import sys
import time
import traceback
from pathlib import Path

from .. import __version__
from ..contract.errors import OUT_OF_MEMORY_HINT, DiffusionSegError, JobCancelled
from ..contract.events import CancelToken, JsonLinesWriter
from ..contract.request import JobRequest
from ..io.output_files import DISK_HINT, is_disk_full
from .dicomweb import case_request, record_source, store_seg
from .digests import array_sha256, file_sha256
from .manifest import Case
from .records import case_fields, failed_row, now


def log_name(case_id: str) -> str:
    """A file name for a case id that may hold path separators or odd characters (a short hash
    keeps two ids that clean up alike apart)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", case_id).strip(".") or "case"
    if cleaned != case_id:
        cleaned += "-" + hashlib.sha256(case_id.encode()).hexdigest()[:8]
    return cleaned + ".jsonl"


def label_statistics(path: str | Path, segments: list[dict]) -> tuple[list[dict], int, str]:
    """Voxels per segment, total foreground and a hash of the label array, from the file as
    written, so the summary describes what is on disk (and equal hashes mean equal volumes)."""
    import numpy as np
    import SimpleITK as sitk

    if str(path).lower().endswith(".dcm"):  # a DICOM SEG: its segment numbers are the labels
        from ..io.dicom_seg import read_seg_labels

        labels = read_seg_labels(path)[0]
    else:
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    counts = np.bincount(labels.ravel().astype(np.int64), minlength=1)
    digest = array_sha256(labels)
    named = [{**s, "voxels": int(counts[s["label"]]) if s["label"] < len(counts) else 0} for s in segments]
    return named, int(counts[1:].sum()), digest


def remote_result(case: Case, outputs: dict[str, str], written: bool) -> dict:
    """For a DICOMweb case: the record names the series' address, and with --store the SEG goes
    back into its study. Fields for the summary row ({} for a local case)."""
    if not case.remote:
        return {}
    if "provenance" in outputs:
        record_source(outputs["provenance"], case)
    if not (case.remote.get("store") and written):
        return {"stored": "", "stored_before": False}
    return store_seg(case.remote, outputs["labelmap"])


class CaseWorker:
    """Runs cases one at a time on one Runner; one instance lives as long as its worker."""

    def __init__(self, log_dir: str | None = None, threads: int = 0):
        from ..jobs.runner import Runner

        if threads:
            import torch

            torch.set_num_threads(threads)
        self.runner = Runner()
        self.log_dir = Path(log_dir) if log_dir else None
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def version(self) -> str:
        """The DiffusionSegLib this worker runs (a cluster node may have another installed)."""
        return __version__

    def run_case(self, case: Case, cancel_token: CancelToken | None = None) -> dict:
        start = time.perf_counter()
        log = self._open_log(case)
        emit = JsonLinesWriter(log) if log else (lambda event: None)
        try:
            with case_request(case) as request:  # a DICOMweb series: retrieved for this case only
                result = self.runner.run(JobRequest.from_dict(request), emit, cancel_token)
                written = "labelmap" in result.outputs  # an empty result writes no DICOM SEG
                stored = remote_result(case, result.outputs, written)
            segments, voxels, digest = label_statistics(result.output, result.segments) if written else ([], 0, None)
            return {**case_fields(case), "status": "ok", "seconds": round(time.perf_counter() - start, 3),
                    "segments": segments, "voxels": voxels, "labels_sha256": digest, "empty": not written, **stored,
                    "output_bytes": os.path.getsize(result.output) if written else None,
                    "output_sha256": file_sha256(result.output) if written else None,
                    "error_code": "", "error_message": "",
                    "timings": {k: round(v, 4) for k, v in result.timings.items()},
                    "worker": self.name, "finished": now()}
        except JobCancelled:
            raise
        except DiffusionSegError as error:
            return self._failed(case, error.code, str(error), start, emit)
        except Exception as error:  # noqa: BLE001 - one broken case must not stop the cohort
            if is_disk_full(error):   # a log or a read-back on a full disk: the same code as the output's
                return self._failed(case, "write_failed", f"{error.strerror}: {error.filename or 'a file'}. "
                                    f"{DISK_HINT}", start, emit)
            if "out of memory" in str(error).lower():
                return self._failed(case, "out_of_memory", f"The device ran out of memory. {OUT_OF_MEMORY_HINT}",
                                    start, emit)
            traceback.print_exc(file=log or sys.stderr)
            return self._failed(case, "internal", f"Unexpected error: {type(error).__name__}: {error}", start, emit)
        finally:
            if log:
                log.close()

    def _failed(self, case: Case, code: str, message: str, start: float, emit) -> dict:
        emit({"event": "error", "code": code, "message": message})
        return failed_row(case, code, message, time.perf_counter() - start, self.name)

    def _open_log(self, case: Case):
        if self.log_dir is None:
            return None
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return open(self.log_dir / log_name(case.case), "w", encoding="utf-8")
