"""Reliability round 3 (issue 23), the Slicer panel on its warm server (the default worker): a
Cancel while the server still loads the model ends the job at once, scene untouched, the
server kept — it used to wait for the whole load."""

import time

import pytest
from slicer_test_utils import newScene

pytest.importorskip("torch")

from DiffusionSegSlicerLib.ServiceJob import ServiceSegmentationJob  # noqa: E402
from DiffusionSegSlicerLib.ServiceManager import ServiceSettings  # noqa: E402
from slicer_worker_methods import RealWorkerLauncher  # noqa: E402
from test_slicer_service import manager  # noqa: E402,F401  (fixture: a ServiceManager whose folder ends empty)
from test_slicer_worker_roundtrip import obliqueSphere, settingsFor  # noqa: E402


def test_cancel_while_the_server_loads_the_model_ends_the_job_at_once(manager):
    scene = newScene()
    volume, _ = obliqueSphere(scene)
    nodesBefore = scene.GetNumberOfNodes()
    settings = settingsFor("slow-load", params={"threshold": 0.5, "size": 20, "load_seconds": 30.0})
    job = ServiceSegmentationJob(scene, settings, volume, launcher=RealWorkerLauncher(),
                                 temporaryRoot=manager.temporaryRoot, serviceManager=manager,
                                 serviceSettings=ServiceSettings("local"))
    job.start()
    deadline = time.monotonic() + 300
    while job.processEvents() and time.monotonic() < deadline:   # until the server runs it (loading)
        if job.process._jobId and manager.health() and manager.health().get("running"):
            break
        time.sleep(0.05)
    started = time.monotonic()
    job.cancel()
    assert job.waitForFinished(timeout=120) == job.CANCELLED
    seconds = time.monotonic() - started
    health = manager.health()
    assert health["models"] == [] and health["running"] is None and health["busy"], health   # still loading
    assert scene.GetNumberOfNodes() == nodesBefore and manager.isRunning
    print(f"the panel's Cancel during a 30 s model load ended the job in {seconds:.2f} s")
