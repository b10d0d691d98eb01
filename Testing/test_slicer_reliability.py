"""Slicer-side reliability and security (issue 9, points 4-8) on slicer-core: isolated workers,
the worker Python as a per-user setting, temporary folders on every ending, the worker ending
with its parent, malformed events, honest crash messages, RGBA like the CLI."""

import ast
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import SimpleITK as sitk
from DiffusionSegSlicerLib import JobSettings, SegmentationJob  # noqa: E402
from DiffusionSegSlicerLib.Logic import DiffusionSegLogic  # noqa: E402
from DiffusionSegSlicerLib.TempFolders import (  # noqa: E402
    OWNER_FILE,
    cleanupAllJobs,
    createWorkDir,
    removeOrphanedWorkDirs,
)
from DiffusionSegSlicerLib.Worker import WorkerLauncher  # noqa: E402
from DiffusionSegSlicerLib.WorkerJob import crashHint  # noqa: E402
from DiffusionSegSlicerLib.WorkerSettings import (  # noqa: E402
    DictSettings,
    WorkerPythonNotApproved,
    WorkerPythonSettings,
)
from slicer_test_utils import (
    MODULE_DIR,
    FakeWorkerLauncher,
    addVolume,
    listFiles,
    newScene,
)

TESTING = Path(__file__).resolve().parent


def smallVolume(scene, slices=3, name="Input"):
    k, j, i = np.mgrid[0:slices, 0:16, 0:20]
    array = np.where(((i - 9) / 6.0) ** 2 + ((j - 7) / 5.0) ** 2 < 1, 100, 0).astype(np.int16)
    return addVolume(scene, array, spacing=(0.7, 0.9, 2.5), name=name)


def runFakeJob(tmp_path, params, launcher=None):
    scene = newScene()
    job = SegmentationJob(scene, JobSettings(method="fake", prompt="liver", params=params), smallVolume(scene),
                          launcher=launcher or FakeWorkerLauncher(), temporaryRoot=str(tmp_path))
    logs = []
    job.log.connect(lambda level, message: logs.append((level, message)))
    job.start()
    workDir = job.workDir
    job.waitForFinished(timeout=120)
    return job, logs, workDir


def test_worker_runs_in_its_own_temporary_folder(tmp_path):
    job, logs, workDir = runFakeJob(tmp_path, {"threshold": 50})
    assert job.state == job.SUCCEEDED, job.error
    cwd = next(m.split(" cwd ", 1)[1] for _, m in logs if " cwd " in m)
    assert os.path.realpath(cwd) == os.path.realpath(workDir)
    assert listFiles(tmp_path) == []


PLANTED = textwrap.dedent("""
    import os
    open(os.path.join({markers!r}, __name__ + ".ran"), "w").close()
    raise ImportError("planted module")
""")


def test_modules_planted_in_slicers_working_directory_are_never_run(tmp_path, monkeypatch):
    """Issue 9 point 4: `python -m` put Slicer's cwd first on the path and a planted psutil.py ran."""
    planted, markers = tmp_path / "planted", tmp_path / "markers"
    planted.mkdir(), markers.mkdir()
    for name in ("numpy", "SimpleITK", "psutil", "torch", "DiffusionSegLib"):
        (planted / f"{name}.py").write_text(PLANTED.format(markers=str(markers)))
    monkeypatch.chdir(planted)
    scene = newScene()
    settings = JobSettings(method="adzus", prompt="liver", model=str(tmp_path / "no-such-model"), device="cpu")
    job = SegmentationJob(scene, settings, smallVolume(scene), launcher=WorkerLauncher(sys.executable),
                          temporaryRoot=str(tmp_path / "jobs"))
    (tmp_path / "jobs").mkdir()
    job.start()
    job.waitForFinished(timeout=300)
    assert job.state == job.FAILED and job.error.code == "model_not_found", job.error   # the real worker ran
    assert WorkerLauncher(sys.executable).runCode("import numpy, SimpleITK; print('ok')").stdout.strip() == "ok"
    assert list(markers.iterdir()) == []
    assert listFiles(tmp_path / "jobs") == []


def test_worker_python_comes_from_user_settings_and_others_are_confirmed(tmp_path):
    asked = []
    settings = WorkerPythonSettings(DictSettings(), confirm=lambda path: asked.append(path) or False)
    settings.choosePython(sys.executable)
    assert settings.resolve("") == sys.executable and settings.resolve(sys.executable) == sys.executable
    assert asked == []   # the user's own choice runs without a question
    logic = DiffusionSegLogic(newScene(), temporaryRoot=str(tmp_path), workerSettings=settings)
    with pytest.raises(WorkerPythonNotApproved):
        logic.launcher(JobSettings(pythonInterpreter="/tmp/evil/python"))
    assert asked == ["/tmp/evil/python"] and listFiles(tmp_path) == []
    settings.confirm = lambda path: asked.append(path) or True
    assert logic.launcher(JobSettings(pythonInterpreter="/tmp/other/python")).python == "/tmp/other/python"
    assert logic.launcher(JobSettings(pythonInterpreter="/tmp/other/python")).python == "/tmp/other/python"
    assert asked == ["/tmp/evil/python", "/tmp/other/python"]   # confirmed once, then remembered


def test_the_scene_cannot_name_an_executable():
    """Issue 9 point 5: the parameter node (saved in scenes) has no interpreter field any more."""
    tree = ast.parse((MODULE_DIR / "DiffusionSegSlicerLib" / "ParameterNode.py").read_text())
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "DiffusionSegParameterNode")
    fields = {n.target.id for n in node.body if isinstance(n, ast.AnnAssign)}
    assert "inputVolume" in fields and not any("python" in f.lower() or "interpreter" in f.lower() for f in fields)


def writeOwner(folder, pid):
    Path(folder, OWNER_FILE).write_text(json.dumps({"pid": pid, "started": None}))


def test_left_overs_of_a_killed_slicer_are_removed_at_the_next_start(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = tmp_path / "DiffusionSeg-abc"
    orphan.mkdir()
    (orphan / "input.nrrd").write_text("patient data")
    writeOwner(orphan, dead.pid)
    live = createWorkDir(root=str(tmp_path))
    unowned = tmp_path / "DiffusionSeg-new"   # being created right now by another Slicer
    unowned.mkdir()
    other = tmp_path / "SomethingElse-1"
    other.mkdir()
    writeOwner(other, dead.pid)
    DiffusionSegLogic(newScene(), temporaryRoot=str(tmp_path))
    assert not orphan.exists() and os.path.isdir(live) and unowned.exists() and other.exists()
    assert removeOrphanedWorkDirs(str(tmp_path)) == []


def test_closing_slicer_ends_workers_and_removes_their_folders(tmp_path):
    scene = newScene()
    job = SegmentationJob(scene, JobSettings(method="fake", params={"mode": "slow"}), smallVolume(scene),
                          launcher=FakeWorkerLauncher(), temporaryRoot=str(tmp_path))
    progress = []
    job.progress.connect(lambda *args: progress.append(args))
    job.start()
    pid = job.process.pid
    deadline = time.monotonic() + 60
    while not progress and time.monotonic() < deadline:   # the worker is busy
        job.processEvents()
        time.sleep(0.05)
    assert progress
    cleanupAllJobs(timeout=2.0)
    assert job.state == job.CANCELLED and listFiles(tmp_path) == []
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


PARENT = textwrap.dedent("""
    import sys, time
    sys.path[:0] = [{testing!r}]
    from slicer_worker_methods import RealWorkerLauncher
    process = RealWorkerLauncher(sys.executable).runCommand({request!r}, "cpu", {workDir!r})
    process.start()
    print(process.pid, flush=True)
    time.sleep(600)
""")


def test_worker_ends_when_slicer_is_killed_and_its_folder_goes_at_next_start(tmp_path):
    workDir = tmp_path / "DiffusionSeg-killed"
    workDir.mkdir()
    image = sitk.GetImageFromArray(np.random.default_rng(0).integers(0, 200, (40, 24, 24)).astype(np.int16))
    sitk.WriteImage(image, str(workDir / "input.nrrd"))
    request = {"version": 1, "input": str(workDir / "input.nrrd"), "output": str(workDir / "output.nrrd"),
               "method": "slow-bright-threshold", "device": "cpu", "pipeline": {"batch_size": 1}}
    (workDir / "request.json").write_text(json.dumps(request))
    parent = subprocess.Popen([sys.executable, "-c", PARENT.format(testing=str(TESTING), request=str(
        workDir / "request.json"), workDir=str(workDir))], stdout=subprocess.PIPE, text=True, encoding="utf-8")
    writeOwner(workDir, parent.pid)
    worker = psutil.Process(int(parent.stdout.readline()))
    claim = workDir / ".output.nrrd.diffusionseg-lock"
    deadline = time.monotonic() + 120
    while not claim.exists() and time.monotonic() < deadline:   # the job is running
        time.sleep(0.05)
    assert claim.exists()
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    killed = time.monotonic()
    while _running(worker) and time.monotonic() < killed + 30:
        time.sleep(0.005)
    if _running(worker):
        worker.kill()
        pytest.fail("the worker outlived its parent")
    print(f"\nworker exit {time.monotonic() - killed:.2f} s after its parent was killed")
    assert sorted(p.name for p in workDir.iterdir()) == sorted([OWNER_FILE, "input.nrrd", "request.json"])
    DiffusionSegLogic(newScene(), temporaryRoot=str(tmp_path))   # the next start
    assert not workDir.exists()


def _running(process) -> bool:
    """Alive and not a zombie (an orphan's exit status waits for init to collect it)."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_malformed_events_are_skipped_without_losing_the_others(tmp_path):
    job, logs, _ = runFakeJob(tmp_path, {"threshold": 50, "mode": "malformed"})
    assert job.state == job.SUCCEEDED, job.error
    assert job.segmentationNode is not None and len(job.segmentIds) == 1
    warnings = [m for level, m in logs if level == "warning"]
    assert any("malformed event" in m for m in warnings)
    assert sum("malformed segment entry" in m for m in warnings) == 3
    assert listFiles(tmp_path) == []


def test_a_killed_worker_is_not_explained_by_an_unrelated_stderr_line(tmp_path):
    job, _, _ = runFakeJob(tmp_path, {"mode": "killed"})
    assert job.state == job.FAILED and job.error.code == "worker_crashed"
    assert "SIGKILL" in job.error.message and "accelerate" not in (job.error.hint or "")
    assert "memory" in job.error.hint
    trace = "some warning\nTraceback (most recent call last):\n  File x\nRuntimeError: CUDA error\n"
    assert crashHint(1, trace).startswith("Traceback") and "CUDA error" in crashHint(1, trace)
    assert listFiles(tmp_path) == []


def test_rgba_volumes_are_accepted_and_the_worker_drops_alpha(tmp_path):
    from slicer_worker_methods import RealWorkerLauncher

    scene = newScene()
    rgba = np.zeros((1, 24, 32, 4), np.uint8)
    rgba[0, 5:15, 10:20, :3] = 220
    rgba[..., 3] = 255
    volume = addVolume(scene, rgba, name="RGBA photo")
    job = SegmentationJob(scene, JobSettings(method="bright-threshold", device="cpu", params={"threshold": 0.5}),
                          volume, launcher=RealWorkerLauncher(), temporaryRoot=str(tmp_path))
    logs = []
    job.log.connect(lambda level, message: logs.append(message))
    job.start()
    assert job.waitForFinished(timeout=300) == job.SUCCEEDED, (job.error, logs)
    assert any("alpha channel was dropped" in m for m in logs)
    assert listFiles(tmp_path) == []


def test_cancel_during_a_model_load_ends_the_worker_without_the_kill_fallback(tmp_path):
    """Issue 9 point 6 on the Slicer side: SIGTERM during a load that never reaches a safe point
    ends the worker itself with exit 130 (before the 3 s SIGKILL fallback)."""
    from slicer_worker_methods import RealWorkerLauncher

    for _ in range(2):
        scene = newScene()
        job = SegmentationJob(scene, JobSettings(method="slow-load", device="cpu", params={"load_seconds": 60}),
                              smallVolume(scene), launcher=RealWorkerLauncher(), temporaryRoot=str(tmp_path))
        stages = []
        job.progress.connect(lambda stage, *rest: stages.append(stage))
        job.start()
        deadline = time.monotonic() + 120
        while "load" not in stages and time.monotonic() < deadline:
            job.processEvents()
            time.sleep(0.02)
        cancelled = time.monotonic()
        job.cancel()
        assert job.waitForFinished(timeout=60) == job.CANCELLED
        assert job.process.returnCode == 130, job.process.stderrTail()
        print(f"\nSlicer-side load-phase cancel: worker ended after {time.monotonic() - cancelled:.2f} s")
        assert listFiles(tmp_path) == []
