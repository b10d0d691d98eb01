"""summary.csv and summary.json: one row per case, rewritten atomically.

A crash at any moment leaves the previous complete summary in place (temporary file in the same
folder, flushed to disk, then renamed over the old one). Every row is also appended to the
run's journal at once (journal.py), so what the last few seconds recorded survives a crash too.
A part of a sharded run writes its own files (summary.part1of4.json …), so several machines can
share one output folder; resuming reads them all.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Iterable

from ..io.output_files import remove_stale_files, temp_prefix
from .digests import file_sha256, labels_sha256
from .journal import Journal, journal_path, read_journal, read_journals
from .manifest import Case

DONE = ("ok", "skipped")
WRITE_INTERVAL_S = 2.0  # the summary files are rewritten at most this often (and at the end)
RUNNING = "running"  # recorded when a case starts; a summary left by a crash may still say so
CSV_FIELDS = ("case", "status", "seconds", "segments", "voxels", "segment_voxels", "error_code", "error_message",
              "image", "output", "method", "model", "prompt", "worker", "finished", "stored")


def write_atomic(path: Path, text: str) -> None:
    remove_stale_files(path.parent)   # a killed run's temporaries (their names say whose they are)
    handle, temp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.remove(temp)


def load_records(folder: Path) -> dict[str, list[dict]]:
    """Every row of every summary*.json and journal in the folder, by case id, oldest first: the
    summaries (rewritten every few seconds) before the journals (appended at once), the journal
    appended to last at the end (a damaged file is ignored: its cases are simply run again)."""
    records: dict[str, list[dict]] = {}
    for path in sorted(folder.glob("summary*.json")):
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))["cases"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        for row in rows if isinstance(rows, list) else []:
            if isinstance(row, dict) and "case" in row:
                records.setdefault(str(row["case"]), []).append(row)
    for row in read_journals(folder):
        records.setdefault(str(row["case"]), []).append(row)
    return records


def finished_record(case: Case, records: dict[str, list[dict]]) -> dict | None:
    """The earlier row that lets this case be skipped: recorded ok for the same request, and its
    output still there with the checksum recorded (a file replaced, even by one of the same
    size, or truncated since is not skipped)."""
    for row in records.get(case.case, []):
        if row.get("status") in DONE and row.get("fingerprint") == case.fingerprint \
                and row.get("output_name") == case.output_name and _intact(case.output, row) \
                and not _store_pending(case, row):
            return row
    return None


def _store_pending(case: Case, row: dict) -> bool:
    """A DICOMweb case run with --store whose earlier row did not store its SEG (a run without
    --store, or a store that failed): not finished until it is in the study."""
    return bool(case.remote and case.remote.get("store")) and not row.get("stored") and not row.get("empty")


def interrupted_here(case: Case, records: dict[str, list[dict]]) -> bool:
    """Whether this case's job was started by an earlier run that stopped before recording how
    it ended (the case's last row says `running`), or whose SEG is still to be stored (a store
    that failed, or a finished case run again with --store). Its output (if any) is then that
    job's own, complete (outputs are written atomically, and an existing file is refused before
    a job starts), so it may be redone without --overwrite. A case recorded as finished or failed
    after it started is not: a file at its output now was put there by someone else."""
    rows = records.get(case.case, [])
    if not rows:
        return False
    last = rows[-1]
    if last.get("fingerprint") != case.fingerprint or last.get("output_name") != case.output_name:
        return False
    return last.get("status") == RUNNING or last.get("error_code") == "store_failed" \
        or (last.get("status") in DONE and _store_pending(case, last))


def _intact(path: Path, row: dict) -> bool:
    """Whether `path` is the file `row` recorded: the size first (cheap), then the checksum of
    its bytes; a row of an older run without one is checked by its label array's hash. An empty
    result that wrote no file (a DICOM SEG) is intact while nothing is there."""
    if row.get("output_bytes") is None and row.get("empty"):
        return not path.exists()
    try:
        if not path.is_file() or path.stat().st_size != row.get("output_bytes"):
            return False
        if row.get("output_sha256"):
            return file_sha256(path) == row["output_sha256"]
        if row.get("labels_sha256"):
            return labels_sha256(path) == row["labels_sha256"]
    except (OSError, RuntimeError):   # unreadable (SimpleITK raises RuntimeError): not intact
        return False
    return False


def skipped_row(case: Case, earlier: dict) -> dict:
    """A skipped case keeps what its earlier run found (segments, voxel counts) and says so."""
    return {**earlier, **case_fields(case), "status": "skipped", "seconds": 0.0,
            "seconds_when_done": earlier.get("seconds_when_done", earlier.get("seconds"))}


def started_row(case: Case, worker: str = "") -> dict:
    return {**case_fields(case), "status": RUNNING, "seconds": 0.0, "segments": [], "voxels": 0,
            "error_code": "", "error_message": "", "worker": worker, "finished": ""}


def failed_row(case: Case, code: str, message: str, seconds: float = 0.0, worker: str = "") -> dict:
    return {**case_fields(case), "status": "failed", "seconds": round(seconds, 3), "segments": [],
            "voxels": 0, "error_code": code, "error_message": message, "worker": worker, "finished": now()}


def case_fields(case: Case) -> dict:
    request = case.request
    prompts = request.get("prompts") or ([request["prompt"]] if request.get("prompt") else [])
    return {"case": case.case, "image": request["input"], "output": request["output"], "method": request["method"],
            "model": request.get("model"), "prompt": "; ".join(prompts), "fingerprint": case.fingerprint,
            "output_name": case.output_name}


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Summary:
    """The rows of this run (or this part of a run), in the cohort's case order, then every case
    an earlier run into this folder finished that this run does not list (read from the
    journal): rewriting the summary never drops a finished case."""

    def __init__(self, folder: Path, label: str, order: Iterable[str], run_info: dict):
        self.json_path = folder / f"summary{label}.json"
        self.csv_path = folder / f"summary{label}.csv"
        self.order = {case: n for n, case in enumerate(order)}
        self.run_info = run_info
        self.rows: dict[str, dict] = {}
        self.journal = Journal(journal_path(folder, label))
        self.earlier = self._earlier_finished()
        self._written = float("-inf")

    def _earlier_finished(self) -> dict[str, dict]:
        """The last journal row of each case outside this run, when it finished and its output is
        still there (a file deleted since is no longer a result)."""
        latest: dict[str, dict] = {}
        for row in read_journal(self.journal.path):
            latest.pop(str(row["case"]), None)   # keep journal order of each case's last row
            latest[str(row["case"])] = row
        return {case: row for case, row in latest.items()
                if case not in self.order and row.get("status") in DONE and Path(str(row.get("output"))).is_file()}

    def record(self, row: dict) -> None:
        self.journal.append(row)
        self.rows[row["case"]] = row
        if time.monotonic() - self._written >= WRITE_INTERVAL_S:
            self.write()

    def close(self) -> None:
        """The final rewrite, whatever the interval (also after a cancel)."""
        self.write()
        self.journal.close()

    def counts(self) -> dict[str, int]:
        counts = {"ok": 0, "failed": 0, "skipped": 0}
        for row in self.rows.values():
            counts[row["status"]] = counts.get(row["status"], 0) + 1
        return counts

    def ordered(self) -> list[dict]:
        mine = sorted(self.rows.values(), key=lambda r: self.order.get(r["case"], len(self.order)))
        return mine + [row for case, row in self.earlier.items() if case not in self.rows]

    def write(self) -> None:
        rows = self.ordered()
        data = {"run": {**self.run_info, "updated": now(), "counts": self.counts(),
                        "earlier_cases": len(rows) - len(self.rows)}, "cases": rows}
        write_atomic(self.json_path, json.dumps(data, indent=1, ensure_ascii=False, default=str) + "\n")
        write_atomic(self.csv_path, _csv_text(rows))
        self._written = time.monotonic()


def _csv_text(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        flat = dict(row)
        segments = row.get("segments") or []
        flat["segments"] = len(segments)
        voxels = {s["name"]: s["voxels"] for s in segments}
        if len(voxels) < len(segments):  # names repeat: key by label too
            voxels = {f'{s["label"]}:{s["name"]}': s["voxels"] for s in segments}
        flat["segment_voxels"] = json.dumps(voxels, ensure_ascii=False) if segments else ""
        writer.writerow(flat)
    return buffer.getvalue()
