"""A cohort run as a whole: pick this part's cases, skip what is already done, hand the rest to
an engine, record every row as it comes, and report.

Nothing here loads a model: when every case is already done no worker (and no Ray) is started.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..contract.errors import CasesFailed
from ..contract.events import CancelToken, EventCallback
from .folder_lock import hold_output_folder
from .journal import LOG_FOLDER
from .manifest import Case
from .progress import CaseProgress
from .records import (
    Summary,
    failed_row,
    finished_record,
    interrupted_here,
    load_records,
    skipped_row,
    started_row,
)
from .sharding import part_label, select_part


@dataclass(frozen=True)
class BatchOptions:
    output_dir: Path
    overwrite: bool = False
    num_parts: int = 1
    part_id: int = 0
    engine: str = "local"        # "local" or "ray"
    threads: int = 0
    ray: object | None = None    # ray_engine.RayOptions for --engine ray


def triage(part: Sequence[Case], summary: Summary, overwrite: bool) -> list[Case]:
    """Record skipped and refused cases in the summary; return the cases to run."""
    records = {} if overwrite else load_records(summary.json_path.parent)
    todo = []
    for case in part:
        earlier = finished_record(case, records)
        if earlier is not None:
            summary.rows[case.case] = skipped_row(case, earlier)
        elif case.output.exists() and not overwrite and not interrupted_here(case, records):
            summary.rows[case.case] = failed_row(
                case, "output_exists", f"{case.output} exists but is not the recorded result of this case's "
                "request (a changed manifest row, or a file made elsewhere); nothing was replaced. "
                "Pass --overwrite to redo it.")
        else:
            todo.append(case)
    return todo


def run_batch(cases: Sequence[Case], options: BatchOptions, emit: EventCallback, token: CancelToken) -> dict:
    """The run, holding its output folder (folder_lock.py) from the first look at what is done
    to the last summary rewrite: a second live run into the folder is refused at once."""
    label = part_label(options.num_parts, options.part_id)
    with hold_output_folder(options.output_dir, label, options.num_parts, options.part_id):
        return _run_held(cases, options, emit, token, label)


def _run_held(cases: Sequence[Case], options: BatchOptions, emit: EventCallback, token: CancelToken,
              label: str) -> dict:
    started = time.perf_counter()
    part = select_part(cases, [c.case for c in cases], options.num_parts, options.part_id)
    folder = options.output_dir
    summary = Summary(folder, label, [c.case for c in part],
                      {"command": " ".join(sys.argv), "engine": options.engine, "cases_in_manifest": len(cases),
                       "num_parts": options.num_parts, "part_id": options.part_id})
    todo = triage(part, summary, options.overwrite)
    summary.write()
    for case in todo:  # outputs named in the manifest may go to sub-folders
        case.output.parent.mkdir(parents=True, exist_ok=True)
    counts = summary.counts()
    _log(emit, f"Batch: {len(part)} of {len(cases)} case(s) in this part; {counts['skipped']} already done, "
               f"{counts['failed']} refused, {len(todo)} to run; summary {summary.json_path}.")
    progress = CaseProgress(len(todo), summary.counts()["skipped"])

    def on_start(case: Case) -> None:
        summary.record(started_row(case))

    def on_row(row: dict) -> None:
        summary.record(row)
        progress.update(row)
        emit({"event": "progress", "stage": "batch", "done": progress.done, "total": len(todo),
              "case": row["case"], "status": row["status"], "seconds": row["seconds"], "failed": progress.failed})
        if row["status"] == "failed":
            _log(emit, f"Case {row['case']} failed ({row['error_code']}): {row['error_message']}", "error")

    engine = {"engine": options.engine, "workers": 0}
    try:
        if todo:
            engine = _run_engine(todo, on_start, on_row, token, options, emit)
    finally:
        progress.close()
        summary.close()
    counts = summary.counts()
    result = {"event": "result", "output": str(summary.json_path), "csv": str(summary.csv_path),
              "counts": counts, "cases": len(part), "ran": len(todo), **engine,
              "seconds": round(time.perf_counter() - started, 3)}
    emit(result)
    if counts["failed"]:
        raise CasesFailed(f"{counts['failed']} of {len(part)} case(s) failed; see {summary.csv_path}.",
                          hint="Fix them and run the same command again: finished cases are skipped.")
    return result


def _run_engine(todo: list[Case], on_start: Callable[[Case], None], on_row: Callable[[dict], None],
                token: CancelToken, options: BatchOptions, emit: EventCallback) -> dict:
    log_dir = str(options.output_dir / LOG_FOLDER)
    if options.engine == "ray":
        from .ray_engine import run_ray

        return run_ray(todo, on_start, on_row, token, log_dir, options.ray, lambda message: _log(emit, message))
    from .local import run_local

    return run_local(todo, on_start, on_row, token, log_dir, options.threads)


def _log(emit: EventCallback, message: str, level: str = "info") -> None:
    emit({"event": "log", "level": level, "message": message})
