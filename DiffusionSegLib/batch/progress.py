"""What a person watching sees: a tqdm bar on stderr (cases done, failures, ETA), only when
stderr is a terminal, so logs and pipes never fill with carriage returns. Machines read the
`progress` events on stdout instead."""

from __future__ import annotations

import sys
from typing import Any


class CaseProgress:
    def __init__(self, total: int, skipped: int, stream: Any = None):
        stream = stream or sys.stderr
        self.failed = 0
        self.done = 0
        self.bar = None
        if total and hasattr(stream, "isatty") and stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, file=stream, unit="case", dynamic_ncols=True,
                            desc=f"cases ({skipped} already done)" if skipped else "cases")
            self.bar.set_postfix(failed=0)

    def update(self, row: dict) -> None:
        self.done += 1
        self.failed += row["status"] == "failed"
        if self.bar is not None:
            self.bar.set_postfix(failed=self.failed, last=row["case"][-24:], refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
