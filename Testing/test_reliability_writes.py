"""Reliability round 3 (issue 23), writes: a full disk at any step is write_failed with nothing
left behind (the claim included), a killed writer's temporaries are removed by the next write to
that folder, booleans are not numbers, and `reselect` refuses another grid and non-finite
thresholds."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import SimpleITK as sitk
from evidence_methods import GreyProposals
from fake_methods import fake_cli_command
from helpers import ct_like_volume

import DiffusionSegLib.methods as registry
from DiffusionSegLib.cli.commands.reselect import reselect_files
from DiffusionSegLib.contract.errors import EXIT_WRITE_FAILED, InvalidParameter, InvalidRequest
from DiffusionSegLib.contract.events import JobContext
from DiffusionSegLib.contract.request import JobRequest
from DiffusionSegLib.io.bundle import bundle_path
from DiffusionSegLib.io.output_files import claim_path
from DiffusionSegLib.jobs.job import create_method, run_job

ROOT = Path(__file__).resolve().parents[1]


def volume_file(folder: Path, name: str = "ct.nrrd") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    sitk.WriteImage(ct_like_volume(size=(24, 20, 3)), str(path))
    return path


def segment(source: Path, output: Path, preexec_fn=None, prefix: list[str] | None = None) -> tuple[int, list[dict], str]:
    command = [*(prefix or []), *fake_cli_command("segment", "--method", "bright-threshold", "--input", source,
                                                   "--output", output, "--device", "cpu", "--param", "threshold=0.3")]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, encoding="utf-8", timeout=300,
                          preexec_fn=preexec_fn)
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")], \
        done.stderr


def _no_room():
    """A disk with no room left as the process sees it: every write of a byte fails (EFBIG, the
    file-size limit's ENOSPC); creating an empty file still works, as on a full disk."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))


def test_no_room_at_all_is_write_failed_and_leaves_no_claim(tmp_path):
    source = volume_file(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    rc, events, stderr = segment(source, out / "seg.nrrd", preexec_fn=_no_room)
    assert rc == EXIT_WRITE_FAILED, stderr[-2000:]
    assert events[-1]["event"] == "error" and events[-1]["code"] == "write_failed"
    assert list(out.iterdir()) == []   # no output, no temporary, no 0-byte claim
    rc, events, stderr = segment(source, out / "seg.nrrd")   # the retry is not `output_busy`
    assert rc == 0, (events, stderr[-2000:])
    assert sitk.ReadImage(str(out / "seg.nrrd")).GetSize() == (24, 20, 3)


FULL_DISK = """
mount -t tmpfs -o size=64k tmpfs "$DISK" || exit 99
dd if=/dev/zero of="$DISK/filler" bs=4k 2>/dev/null
"$@"; rc=$?
ls -A "$DISK"
exit $rc
"""


def _can_mount_tmpfs() -> bool:
    import tempfile

    if not shutil.which("unshare"):
        return False
    with tempfile.TemporaryDirectory() as folder:
        probe = subprocess.run(["unshare", "-rm", "sh", "-c", FULL_DISK, "sh", "true"], capture_output=True,
                               env={**os.environ, "DISK": folder})
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs `unshare -rm` to mount a small tmpfs (a really full disk)")
def test_a_really_full_disk_is_write_failed_with_nothing_left(tmp_path):
    """A 64 kB tmpfs filled to the last byte, in a mount namespace of its own: ENOSPC itself."""
    source = volume_file(tmp_path / "in")
    disk = tmp_path / "disk"
    disk.mkdir()
    command = fake_cli_command("segment", "--method", "bright-threshold", "--input", source, "--output",
                               disk / "seg.nrrd", "--device", "cpu", "--param", "threshold=0.3")
    done = subprocess.run(["unshare", "-rm", "sh", "-c", FULL_DISK, "sh", *map(str, command)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "DISK": str(disk)})
    lines = done.stdout.splitlines()
    events = [json.loads(line) for line in lines if line.startswith("{")]
    assert done.returncode == EXIT_WRITE_FAILED, done.stderr[-2000:]
    assert events[-1]["code"] == "write_failed", events[-1]
    assert lines[-1] == "filler" and lines[-2].startswith("{")   # no output, no temporary, no claim


def test_a_killed_writers_temporary_is_removed_by_the_next_write(tmp_path):
    """kill -9 in the middle of a write leaves a hidden temporary; the next write to that folder
    recognises it (its process no longer runs) and removes it. A live writer's is kept."""
    out = tmp_path / "out"
    out.mkdir()
    writer = ("import sys, time; from DiffusionSegLib.io.output_files import stage_file\n"
              "def write(temp):\n"
              "    open(temp, 'wb').write(b'half a labelmap'); print('writing', flush=True); time.sleep(600)\n"
              "stage_file(sys.argv[1], write, lambda temp: None, '.nrrd')\n")
    killed = subprocess.Popen([sys.executable, "-c", writer, str(out / "a.nrrd")], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    live = subprocess.Popen([sys.executable, "-c", writer, str(out / "b.nrrd")], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert killed.stdout.readline().strip() == "writing" and live.stdout.readline().strip() == "writing"
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        leftovers = sorted(p.name for p in out.iterdir())
        assert len(leftovers) == 2 and all(name.startswith((".a.nrrd.", ".b.nrrd.")) for name in leftovers)
        dead_claim = claim_path(out / "c.nrrd")
        dead_claim.write_text(json.dumps({"pid": killed.pid, "host": os.uname().nodename, "since": 0}))
        rc, events, stderr = segment(volume_file(tmp_path / "in"), out / "seg.nrrd")
        assert rc == 0, stderr[-2000:]
        remaining = sorted(p.name for p in out.iterdir())
        assert remaining == sorted(["seg.nrrd", "seg.provenance.json", *(n for n in leftovers if n.startswith(".b.nrrd."))])
    finally:
        for process in (killed, live):
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.mark.parametrize("name,value", [("timestep", True), ("inversion_steps", False), ("vote_threshold", True)])
def test_booleans_are_not_numbers(name, value):
    info = registry.get_method("adzus").info
    assert info.param(name).type in ("int", "float")
    with pytest.raises(InvalidParameter, match="true/false is not a number"):
        info.resolve_params({name: value})
    with pytest.raises(InvalidParameter):
        create_method("adzus", {name: value}, "liver", None, JobContext())
    assert info.resolve_params({name: 1})[name] == 1   # the number itself is fine


@pytest.fixture()
def bundle(tmp_path, monkeypatch):
    table = dict(registry.available_methods())
    table["grey-proposals"] = GreyProposals
    monkeypatch.setattr(registry, "_REGISTRY", table)
    source = tmp_path / "ct.nrrd"
    sitk.WriteImage(ct_like_volume(), str(source))
    events: list[dict] = []
    run_job(JobRequest.from_dict({"version": 2, "input": str(source), "output": str(tmp_path / "seg.nrrd"),
                                  "method": "grey-proposals", "device": "cpu", "evidence": True,
                                  "pipeline": {"skip_empty_slices": False}}), events.append)
    seg = events[-1]["outputs"]["labelmap"]
    assert sitk.GetArrayFromImage(sitk.ReadImage(seg)).any()   # a real result to re-select from
    return Path(seg)


@pytest.mark.parametrize("change", ["spacing", "origin", "direction"])
def test_reselect_refuses_proposals_on_another_grid(bundle, tmp_path, change):
    proposals = sitk.ReadImage(str(bundle_path(bundle, "proposals")))
    if change == "spacing":
        proposals.SetSpacing([s * 1.5 for s in proposals.GetSpacing()])
    elif change == "origin":
        proposals.SetOrigin([o + 10.0 for o in proposals.GetOrigin()])
    else:
        proposals.SetDirection((0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    sitk.WriteImage(proposals, str(bundle_path(bundle, "proposals")))
    assert proposals.GetSize() == sitk.ReadImage(str(bundle)).GetSize()   # same size: only the grid differs
    with pytest.raises(InvalidRequest, match=f"not on the same grid: {change}"):
        reselect_files(bundle, tmp_path / "new.nrrd")
    assert not (tmp_path / "new.nrrd").exists()


@pytest.mark.parametrize("threshold", [float("nan"), float("inf"), -1.0])
def test_reselect_refuses_thresholds_that_are_not_finite(bundle, tmp_path, threshold):
    for kwargs in ({"vote_threshold": threshold}, {"seed_threshold": threshold}):
        with pytest.raises(InvalidRequest, match="finite number of 0 or more"):
            reselect_files(bundle, tmp_path / "new.nrrd", **kwargs)
    assert not (tmp_path / "new.nrrd").exists()
    done = subprocess.run([sys.executable, "-m", "DiffusionSegLib", "reselect", "--result", str(bundle), "--output",
                           str(tmp_path / "cli.nrrd"), "--vote-threshold", str(threshold)],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2 and json.loads(done.stdout.splitlines()[-1])["code"] == "invalid_request"
    assert not (tmp_path / "cli.nrrd").exists()
