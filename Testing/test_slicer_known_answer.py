"""The Slicer-side logic on a known answer: a real `serve` started by ServiceManager runs ADZUS and
DiffuGTS on the planted model at the shipped defaults for an oblique, anisotropic CT volume in a
slicer-core scene; the segments land on the volume in patient space and hold the bright lesion."""

import numpy as np
import pytest
from slicer_test_utils import (
    addVolume,
    newScene,
    rotation,
    segmentVoxelsRas,
    voxelCentersRas,
)

pytest.importorskip("torch")

from DiffusionSegSlicerLib.JobSettings import JobSettings  # noqa: E402
from DiffusionSegSlicerLib.ServiceJob import ServiceSegmentationJob  # noqa: E402
from DiffusionSegSlicerLib.ServiceManager import ServiceSettings  # noqa: E402
from slicer_worker_methods import RealWorkerLauncher  # noqa: E402
from test_slicer_service import manager  # noqa: E402,F401  (fixture: a ServiceManager whose folder ends empty)


def lesionVolume(scene):
    """CT in HU on an oblique grid of 0.8 × 0.8 × 3 mm voxels: tissue with a bright lesion on the
    middle slices. Under the soft-tissue window the lesion is the planted model's answer."""
    k, j, i = np.mgrid[0:6, 0:40, 0:40]
    body = ((i - 19.5) / 17) ** 2 + ((j - 19.5) / 15) ** 2 < 1
    lesion = ((i - 23.0) / 5) ** 2 + ((j - 17.0) / 5) ** 2 + ((k - 2.5) / 1.6) ** 2 < 1
    noise = np.random.default_rng(0).normal(0, 8, body.shape)
    array = (np.where(lesion, 200.0, np.where(body, 40.0, -1000.0)) + noise).astype(np.int16)
    volume = addVolume(scene, array, spacing=(0.8, 0.8, 3.0), origin=(-20.0, 15.0, 40.0),
                       directions=rotation((1, 1, 2), 25), name="CT")
    return volume, lesion


def diceOfPointSets(a, b, tolerance=1e-3):
    from scipy.spatial import cKDTree

    if not len(a) or not len(b):
        return 0.0
    matched = int((cKDTree(b).query(a)[0] < tolerance).sum())
    return 2 * matched / (len(a) + len(b))


@pytest.mark.parametrize("method, prompt", [("adzus", "lesion"), ("diffugts", "liver tumour")])
def test_a_zero_shot_job_from_the_panel_logic_finds_the_lesion(manager, method, prompt):
    scene = newScene()
    volume, lesion = lesionVolume(scene)
    settings = JobSettings(method=method, prompt=prompt, model="planted", device="cpu", intensity="ct-soft-tissue")
    job = ServiceSegmentationJob(scene, settings, volume, launcher=RealWorkerLauncher(),
                                 temporaryRoot=manager.temporaryRoot, serviceManager=manager,
                                 serviceSettings=ServiceSettings("local"))
    logs = []
    job.log.connect(lambda *a: logs.append(a))
    job.start()
    assert job.waitForFinished(timeout=600) == job.SUCCEEDED, (job.error, logs[-5:])
    (segmentId,) = job.segmentIds
    assert job.segmentationNode.GetSegmentation().GetSegment(segmentId).GetName() == prompt
    found = segmentVoxelsRas(job.segmentationNode, segmentId)
    assert len(found) > 0
    assert diceOfPointSets(found, voxelCentersRas(volume, lesion)) >= 0.85
