"""The run's journal: every summary row is appended to `logs/journal<part>.jsonl` and flushed
to disk the moment it is recorded.

Rewriting summary.csv/summary.json costs time in proportion to the cohort (about 0.2 s for
1,000 cases, 1.5 s for 10,000 on a busy CPU). Doing that after every case would make the driver
the bottleneck of a cluster run. So the summary is rewritten at most every few seconds and at the
end, and the journal, which costs the same for every row, is what makes resuming exact after a
crash. A torn last line (a crash mid-append) is ignored when the journal is read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Iterator

LOG_FOLDER = "logs"


def journal_path(folder: Path, label: str) -> Path:
    return folder / LOG_FOLDER / f"journal{label}.jsonl"


class Journal:
    def __init__(self, path: Path):
        self.path = path
        self._stream: IO[str] | None = None

    def append(self, row: dict) -> None:
        if self._stream is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._stream = open(self.path, "a", encoding="utf-8")
        self._stream.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        self._stream.flush()
        os.fsync(self._stream.fileno())

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None


def read_journals(folder: Path) -> Iterator[dict]:
    """Every row of every journal in the output folder (all parts), oldest first per file and
    the most recently appended file last."""
    for path in sorted((folder / LOG_FOLDER).glob("journal*.jsonl"), key=_modified):
        yield from read_journal(path)


def _modified(path: Path) -> tuple[int, str]:
    try:
        return path.stat().st_mtime_ns, path.name
    except OSError:
        return 0, path.name


def read_journal(path: Path) -> Iterator[dict]:
    """The rows of one journal, oldest first; a torn or damaged line is skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and "case" in row:
            yield row
