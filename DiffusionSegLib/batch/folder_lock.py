"""One batch run per output folder at a time.

Two runs writing one folder would replace each other's finished outputs (each runs its jobs
with overwrite on) and each would rewrite the summary with its own rows only. A run therefore
claims the folder the way a job claims its output file (io/output_files.py: a claim file made
with O_EXCL, naming the process and host; a claim whose process no longer runs is taken over,
so a killed run's successor simply starts). The parts of one sharded run (`--num-parts N
--part-id k`) are meant to share a folder: each claims its own part, and only parts of the same
N with different ids may run side by side; a whole run and any part exclude each other.
"""

from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path
from typing import Iterator

from ..contract.errors import OutputBusy
from ..io.output_files import CLAIM_SUFFIX, claim_output, claim_path, live_claim_owner

_PART = re.compile(r"^\.batch\.part(?P<id>\d+)of(?P<parts>\d+)" + re.escape(CLAIM_SUFFIX) + "$")


def _target(folder: Path, label: str) -> Path:
    return folder / f"batch{label}"


def _compatible(name: str, num_parts: int, part_id: int) -> bool:
    """Whether a run holding claim file `name` may share the folder with this part."""
    match = _PART.match(name)
    return (match is not None and num_parts > 1 and int(match["parts"]) == num_parts
            and int(match["id"]) != part_id)


def _busy(folder: Path, owner: dict | None, claim: Path) -> OutputBusy:
    owner = owner or {}
    since = owner.get("since")
    started = f", started {time.strftime('%Y-%m-%d %H:%M', time.localtime(since))}" if isinstance(since, (int, float)) \
        else ""
    return OutputBusy(f"Another batch run (process {owner.get('pid', '?')} on {owner.get('host', 'this machine')}"
                      f"{started}) is writing into {folder}.",
                      hint=f"Wait for it to finish, or use another --output-dir. If that run is gone (its machine "
                           f"crashed), delete {claim}.")


@contextlib.contextmanager
def hold_output_folder(folder: Path, label: str, num_parts: int = 1, part_id: int = 0) -> Iterator[None]:
    """Hold `folder` for this run (or this part of a run) until the block ends, however it ends."""
    target = _target(folder, label)
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(claim_output(target))
        except OutputBusy:
            raise _busy(folder, live_claim_owner(target), claim_path(target)) from None
        mine = claim_path(target).name
        for other in sorted(folder.glob(f".batch*{CLAIM_SUFFIX}")):
            if other.name == mine or _compatible(other.name, num_parts, part_id):
                continue
            owner = live_claim_owner(folder / other.name[1:-len(CLAIM_SUFFIX)])
            if owner is not None:
                raise _busy(folder, owner, other)
        yield
