"""Temporary job folders: they hold a copy of the patient volume, so none may outlive its job.

Each folder is made with the job prefix and an owner file naming the Slicer process that made it.
The job removes its folder when it ends (result, error, cancel, worker crash); `cleanupAllJobs`
(registered with atexit, and called on Slicer's aboutToQuit) ends running workers and removes
their folders when Slicer closes; `removeOrphanedWorkDirs` (at the next start) removes what a
killed Slicer left: folders whose owner process no longer runs.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import tempfile
import time
import weakref

WORKDIR_PREFIX = "DiffusionSeg-"
OWNER_FILE = "owner.json"
UNOWNED_MAX_AGE_S = 24 * 3600   # a folder without owner file (older versions, or mid-creation)

_liveJobs: "weakref.WeakSet" = weakref.WeakSet()


def createWorkDir(prefix: str = WORKDIR_PREFIX, root: str | None = None) -> str:
    """A new private folder (mode 0700 from mkdtemp) with the owner file written first."""
    folder = tempfile.mkdtemp(prefix=prefix, dir=root)
    try:
        with open(os.path.join(folder, OWNER_FILE), "w", encoding="utf-8") as handle:
            json.dump({"pid": os.getpid(), "started": _processStartTime(os.getpid()), "created": time.time()}, handle)
    except OSError:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder


def removeWorkDir(folder: str | None) -> None:
    if folder and os.path.isdir(folder):
        shutil.rmtree(folder, ignore_errors=True)


def removeOrphanedWorkDirs(root: str | None = None, prefix: str = WORKDIR_PREFIX) -> list[str]:
    """Remove job folders under `root` whose owner process is gone; returns the removed paths."""
    root = root or tempfile.gettempdir()
    removed = []
    try:
        names = os.listdir(root)
    except OSError:
        return removed
    for name in names:
        folder = os.path.join(root, name)
        if not name.startswith(prefix) or not os.path.isdir(folder) or os.path.islink(folder):
            continue
        if _isOrphan(folder):
            shutil.rmtree(folder, ignore_errors=True)
            if not os.path.exists(folder):
                removed.append(folder)
    if removed:
        logging.info(f"DiffusionSeg: removed {len(removed)} temporary folder(s) left by an earlier session.")
    return removed


def _isOrphan(folder: str) -> bool:
    try:
        with open(os.path.join(folder, OWNER_FILE), encoding="utf-8") as handle:
            owner = json.load(handle)
    except FileNotFoundError:
        try:
            return time.time() - os.stat(folder).st_mtime > UNOWNED_MAX_AGE_S
        except OSError:
            return False
    except (OSError, ValueError):
        return True   # a damaged owner file: nobody can claim the folder
    pid = owner.get("pid") if isinstance(owner, dict) else None
    if not isinstance(pid, int) or pid == os.getpid():
        return not isinstance(pid, int)
    if not _processRuns(pid):
        return True
    started = owner.get("started")   # a reused pid runs another program: compare start times
    current = _processStartTime(pid)
    return started is not None and current is not None and abs(current - started) > 1.0


def _processRuns(pid: int) -> bool:
    try:
        import psutil

        return psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except ImportError:
        pass
    except Exception:  # NoSuchProcess between the two calls, AccessDenied
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _processStartTime(pid: int) -> float | None:
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:
        return None


def registerJob(job) -> None:
    _liveJobs.add(job)


def cleanupAllJobs(timeout: float = 2.0) -> None:
    """Slicer is closing: end every running worker (SIGTERM, then kill) and remove every job
    folder, so no patient data and no orphaned worker outlive the application."""
    jobs = list(_liveJobs)
    for job in jobs:
        job.abandon(timeout)


atexit.register(cleanupAllJobs)
