"""The work folder of a `serve` instance: who owns it, and what a killed server left behind.

Uploads (patient images) and results live in one folder per job under the work folder. A server
that ends normally removes them; one killed outright (kill -9, out of memory, power cut) cannot.
So the work folder names its owner (process id, host and the process's start time, which tells
a reused pid from the original), and a starting server removes what dead servers left: the
temporary work folders (`diffusionseg-serve-*`) whose owner no longer runs, and in a --work-dir
of its own the job folders left there. Two live servers never share a --work-dir. Temporary
folders without an owner file (made by an older DiffusionSeg) are removed after a day.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path

from ..contract.errors import InvalidRequest

PREFIX = "diffusionseg-serve-"
OWNER_FILE = ".diffusionseg-serve.json"
JOB_FOLDER = re.compile(r"^[0-9a-f]{16}$")
UNOWNED_AGE_S = 24 * 3600


def _started(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def owner_record() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": _started(os.getpid())}


def read_owner(folder: Path) -> dict | None:
    try:
        owner = json.loads((folder / OWNER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def owner_alive(owner: dict) -> bool:
    """Whether the server named in an owner record runs (another host's: assumed to)."""
    if owner.get("host") != socket.gethostname():
        return True
    pid, started = owner.get("pid"), owner.get("started")
    if not isinstance(pid, int):
        return False
    now = _started(pid)
    return now is not None and (not isinstance(started, (int, float)) or abs(now - started) < 1.0)


def _write_owner(folder: Path) -> None:
    temp = folder / f"{OWNER_FILE}.{os.getpid()}"
    temp.write_text(json.dumps(owner_record()), encoding="utf-8")
    os.replace(temp, folder / OWNER_FILE)


def sweep_dead_servers(parent: Path) -> list[Path]:
    """Remove the temporary work folders of servers that no longer run; returns them."""
    removed = []
    for folder in parent.glob(PREFIX + "*"):
        if not folder.is_dir() or folder.is_symlink():
            continue
        owner = read_owner(folder)
        if owner is None:
            try:
                stale = time.time() - folder.stat().st_mtime > UNOWNED_AGE_S
            except OSError:
                continue
        else:
            stale = not owner_alive(owner)
        if stale:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def prepare_work_dir(work_dir: str | None) -> tuple[Path, bool, list[Path]]:
    """(the work folder, whether this server made it and removes it on exit, what was swept)."""
    if not work_dir:
        swept = sweep_dead_servers(Path(tempfile.gettempdir()))
        folder = Path(tempfile.mkdtemp(prefix=PREFIX))
        _write_owner(folder)
        return folder, True, swept
    folder = Path(work_dir).expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    owner = read_owner(folder)
    if owner is not None and owner.get("pid") != os.getpid() and owner_alive(owner):
        raise InvalidRequest(f"Another DiffusionSeg server (process {owner.get('pid')} on {owner.get('host')}) uses "
                             f"the work folder {folder}.", hint="Give each server its own --work-dir.")
    swept = [path for path in folder.iterdir() if path.is_dir() and JOB_FOLDER.match(path.name)]
    for path in swept:   # job folders of a server that was killed: nobody can download them any more
        shutil.rmtree(path, ignore_errors=True)
    _write_owner(folder)
    return folder, False, swept


def release_work_dir(folder: Path, owned: bool) -> None:
    if owned:
        shutil.rmtree(folder, ignore_errors=True)
    elif (read_owner(folder) or {}).get("pid") == os.getpid():
        (folder / OWNER_FILE).unlink(missing_ok=True)
