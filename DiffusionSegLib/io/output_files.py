"""The one way DiffusionSeg puts a file where the user asked for it.

Why each step exists:
- the output is checked before any work (not the input itself, not something the user made
  unless `overwrite`, not a folder or a FIFO), so a long job never ends in a refusal;
- a claim file made with O_EXCL next to the output lets exactly one job write it; a second job
  fails at once instead of both reporting success while one silently replaces the other;
- the data goes to a temporary file in the same folder, is flushed to disk (fsync: a full disk
  often shows only there) and read back before it is renamed into place, so a short write
  (SimpleITK does not raise on a full disk) never lands at the output path;
- the rename happens under the job's commit guard, so a cancel either comes first (nothing
  written) or after the result is complete;
- the file gets the mode the user's umask gives new files (mkstemp's 0600 would otherwise
  survive the rename and hide results from colleagues on a shared server).

Temporary and claim files in flight are listed in `_PENDING`, so the cancel watchdog can remove
them before it ends the process. A process killed outright (kill -9, power cut) cannot clean up:
its temporaries carry its host and process id in their names (`.<name>.dstmp-<host>-<pid>-…`)
and its claims hold them, so the next write to that folder recognises and removes what a
process that no longer runs left behind. A full disk (ENOSPC, a quota, a file-size limit) at
any step is `write_failed` with nothing left behind, the claim included: an empty claim file
would make every retry fail `output_busy`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import socket
import stat
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

from ..contract.errors import InvalidRequest, OutputBusy, OutputExists, WriteFailed

DISK_HINT = "Check the free space and quota of the output folder, then run the job again."
OVERWRITE_HINT = ("Choose another output path, or pass --overwrite (request field \"overwrite\": true) "
                  "to replace it.")

_PENDING: set[str] = set()
_PENDING_LOCK = threading.Lock()
CLAIM_SUFFIX = ".diffusionseg-lock"
TEMP_MARK = ".dstmp-"
_HOST_TAG = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]
_TEMP_NAME = re.compile(r"^\..*\.dstmp-(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-")
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _track(path: str) -> None:
    with _PENDING_LOCK:
        _PENDING.add(path)


def _untrack(path: str) -> None:
    with _PENDING_LOCK:
        _PENDING.discard(path)


def discard_pending() -> None:
    """Remove every temporary and claim file still in flight (the cancel watchdog calls this
    right before it ends the process)."""
    with _PENDING_LOCK:
        paths = list(_PENDING)
        _PENDING.clear()
    for path in paths:
        with contextlib.suppress(OSError):
            os.remove(path)


def current_umask() -> int:
    """The process umask without changing it (Linux); elsewhere set-and-restore."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def same_file(a: str | Path, b: str | Path) -> bool:
    """True when both paths name one file: the same path, a symlink to it or a hard link."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist: compare where the paths point
        return os.path.realpath(a) == os.path.realpath(b)


def check_output_target(path: str | Path, *, inputs: tuple[str | Path, ...] = (), overwrite: bool = False,
                        what: str = "output") -> Path:
    """Refuse, before any work, an output that would destroy an input or replace something the
    user made without `overwrite`, or that cannot be a regular file."""
    path = Path(path).expanduser()
    for source in inputs:
        if source and same_file(path, source):
            raise InvalidRequest(f"The {what} {path} is the input {source} (the same file); writing it would "
                                 "destroy the input.", hint="Choose another output path.")
    if os.path.lexists(path):
        mode = os.lstat(path).st_mode
        if stat.S_ISLNK(mode):
            mode = os.stat(path).st_mode if os.path.exists(path) else stat.S_IFREG
        if stat.S_ISDIR(mode):
            raise InvalidRequest(f"The {what} {path} is a folder; give a file name.")
        if not stat.S_ISREG(mode):
            raise InvalidRequest(f"The {what} {path} exists and is not a regular file (a FIFO, socket or device).")
        if not overwrite:
            raise OutputExists(f"The {what} {path} already exists.", hint=OVERWRITE_HINT)
    return path


def claim_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(f".{path.name}{CLAIM_SUFFIX}")


def temp_prefix(path: str | Path) -> str:
    """The start of a temporary's name beside `path`: hidden, and naming this host and process,
    so a later writer can tell a killed writer's leftovers from a live writer's file."""
    return f".{Path(path).name}{TEMP_MARK}{_HOST_TAG}-{os.getpid()}-"


def remove_stale_files(folder: str | Path) -> list[str]:
    """Remove the temporaries and claims that processes which no longer run (on this host) left
    in `folder`; returns their names. A live writer's files, another host's and anything whose
    owner cannot be told are kept."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        if not name.startswith("."):
            continue
        if TEMP_MARK in name:
            match = _TEMP_NAME.match(name)
            stale = match is not None and match["host"] == _HOST_TAG and not _pid_alive(int(match["pid"]))
        elif name.endswith(CLAIM_SUFFIX):
            owner = _claim_owner(Path(entry.path))
            stale = owner is not None and not _owner_alive(owner)
        else:
            continue
        if stale:
            with contextlib.suppress(OSError):
                os.remove(entry.path)
                removed.append(name)
    return removed


def is_disk_full(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS


@contextlib.contextmanager
def claim_output(path: str | Path) -> Iterator[Path]:
    """Hold `path` for this job: one claim file, created with O_EXCL, beside it. A claim left by a
    process that no longer runs (killed) is taken over; a live one makes this job fail clearly."""
    claim = claim_path(path)
    remove_stale_files(claim.parent)
    for _attempt in range(2):
        try:
            fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _claim_owner(claim)
            if owner is None or _owner_alive(owner):
                pid = owner.get("pid", "?") if owner else "?"
                raise OutputBusy(f"Another DiffusionSeg job (process {pid}) is writing {path}.",
                                 hint="Wait for it to finish, or choose another output path.") from None
            with contextlib.suppress(OSError):
                os.remove(claim)   # stale: its owner was killed
            continue
        except OSError as exc:
            raise WriteFailed(f"Cannot create files next to {path}: {exc.strerror}.", hint=DISK_HINT) from None
        _track(str(claim))
        try:
            with os.fdopen(fd, "w") as handle:   # a full disk shows when the buffer is flushed
                json.dump({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}, handle)
        except OSError as exc:
            _untrack(str(claim))
            with contextlib.suppress(OSError):
                os.remove(claim)
            raise WriteFailed(f"Cannot create files next to {path}: {exc.strerror}.", hint=DISK_HINT) from None
        try:
            yield claim
        finally:
            _untrack(str(claim))
            with contextlib.suppress(OSError):
                os.remove(claim)
        return
    raise OutputBusy(f"Could not claim {path}: another job keeps claiming it.")


def live_claim_owner(path: str | Path) -> dict | None:
    """Who holds `path`'s claim ({"pid", "host", "since"}, {} when unreadable) while that
    process runs; None when nobody does."""
    claim = claim_path(path)
    if not claim.exists():
        return None
    owner = _claim_owner(claim)
    if owner is None:
        return {}   # being written this instant: a live claim
    return owner if _owner_alive(owner) else None


def _claim_owner(claim: Path) -> dict | None:
    try:
        owner = json.loads(claim.read_text(encoding="utf-8"))
        return owner if isinstance(owner, dict) else None
    except (OSError, ValueError):
        # being written this instant, or unreadable: treat as live unless it is old
        try:
            return None if time.time() - claim.stat().st_mtime < 60 else {}
        except OSError:
            return {}


def _owner_alive(owner: dict) -> bool:
    """Whether the process named in a claim still runs ({}: an old unreadable claim, stale)."""
    if not owner:
        return False
    if owner.get("host") != socket.gethostname() or not isinstance(owner.get("pid"), int):
        return True   # another machine (shared folder): cannot check, so respect the claim
    return _pid_alive(owner["pid"])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but is not ours
        return True
    return True


class StagedFile:
    """A complete, verified temporary file waiting to be renamed into place."""

    def __init__(self, temp: str, path: Path):
        self.temp, self.path = temp, path

    def commit(self) -> Path:
        try:
            os.replace(self.temp, self.path)
        except OSError as exc:
            raise WriteFailed(f"Putting {self.path} in place failed: {exc.strerror or exc}.", hint=DISK_HINT) from None
        _untrack(self.temp)
        return self.path

    def discard(self) -> None:
        _untrack(self.temp)
        with contextlib.suppress(OSError):
            os.remove(self.temp)


def stage_file(path: str | Path, write: Callable[[str], None], verify: Callable[[str], None],
               suffix: str = "") -> StagedFile:
    """Write through `write(temp_path)`, fsync, check the size and `verify(temp_path)` (read it back);
    any failure → WriteFailed with nothing left behind."""
    path = Path(path)
    remove_stale_files(path.parent)
    try:
        handle, temp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=suffix, dir=path.parent)
    except OSError as exc:
        raise WriteFailed(f"Cannot create a file in {path.parent}: {exc.strerror}.", hint=DISK_HINT) from None
    os.close(handle)
    _track(temp)
    staged = StagedFile(temp, path)
    try:
        try:
            write(temp)
            with open(temp, "rb+") as written:
                os.fsync(written.fileno())
        except (OSError, RuntimeError) as exc:
            raise WriteFailed(f"Writing {path} failed: {str(exc).strip().splitlines()[-1][:200]}",
                              hint=DISK_HINT) from None
        if os.path.getsize(temp) == 0:
            raise WriteFailed(f"Writing {path} produced an empty file (is the disk full?).", hint=DISK_HINT)
        try:
            verify(temp)
        except WriteFailed:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the reader says, the file is not usable
            raise WriteFailed(f"{path} was written incompletely: reading it back failed "
                              f"({str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else type(exc).__name__}).",
                              hint=DISK_HINT) from None
        os.chmod(temp, 0o666 & ~current_umask())
    except OSError as exc:   # anything else of the file system (chmod, getsize) on a failing disk
        staged.discard()
        raise WriteFailed(f"Writing {path} failed: {exc.strerror or exc}.", hint=DISK_HINT) from None
    except BaseException:
        staged.discard()
        raise
    return staged
