"""The end-to-end scenario of the module's self-test, kept free of Qt so that the project's
pytest run executes exactly the same code on slicer-core (Testing/test_slicer_worker_roundtrip.py).

It builds a tiny random Stable Diffusion model in the worker's interpreter (never in Slicer's
process), generates an oblique, anisotropic volume, runs the real worker through the logic and
checks the result's geometry and the scene.
"""

from __future__ import annotations

import math
import shutil
import tempfile

import numpy as np
import vtk
from vtk.util import numpy_support

from .JobSettings import JobSettings
from .Logic import DiffusionSegLogic

TINY_MODEL_CODE = ("from DiffusionSegLib.testing.models import save_tiny_stable_diffusion; "
                   "save_tiny_stable_diffusion(sys.argv[1])")


def saveTinyModel(launcher, folder: str, timeout: float = 600) -> str:
    """Built by the worker interpreter, isolated like a job (never with Slicer's cwd on the path)."""
    result = launcher.runCode(TINY_MODEL_CODE, folder, timeout=timeout, device="cpu")
    if result.returncode != 0:
        raise RuntimeError("Could not build the tiny test model:\n" + result.stderr[-2000:])
    return folder


def addTestVolume(scene, name: str = "DiffusionSegSelfTest"):
    """3 slices of 48x40 voxels, spacing 0.8 x 0.6 x 3 mm, rotated 20 degrees about S;
    a bright ellipse on a darker textured background."""
    k, j, i = np.mgrid[0:3, 0:40, 0:48]
    rng = np.random.default_rng(0)
    array = (200 + 40 * rng.random((3, 40, 48))).astype(np.int16)
    array[((i - 24) / 12.0) ** 2 + ((j - 20) / 9.0) ** 2 < 1] = 900
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    node.SetName(scene.GenerateUniqueName(name))
    image = vtk.vtkImageData()
    image.SetDimensions(48, 40, 3)
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(array.ravel(), deep=True))
    node.SetAndObserveImageData(image)
    node.SetSpacing(0.8, 0.6, 3.0)
    node.SetOrigin(-20.0, 15.0, 7.5)
    c, s = math.cos(math.radians(20)), math.sin(math.radians(20))
    node.SetIJKToRASDirections([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    node.CreateDefaultDisplayNodes()
    return node


def pickMethod(logic: DiffusionSegLogic, preferred: str | None = None):
    methods = logic.methods
    if preferred:
        return methods[preferred]
    for info in methods.values():
        if not info.needs_checkpoint:
            return info
    raise RuntimeError("No installed method runs without a trained checkpoint.")


def runEndToEndScenario(scene, temporaryRoot: str | None = None, method: str | None = None,
                        log=print, timeout: float = 900, logic: DiffusionSegLogic | None = None):
    """Run one job through the logic with a tiny model; returns the finished job. Raises
    AssertionError (or JobFailed) when anything is wrong."""
    logic = logic or DiffusionSegLogic(scene, temporaryRoot=temporaryRoot)
    info = pickMethod(logic, method)
    modelDir = tempfile.mkdtemp(prefix="DiffusionSeg-tiny-model-", dir=temporaryRoot)
    try:
        settings = JobSettings(method=info.name, prompt=(info.prompt_examples or ("liver",))[0],
                               model=modelDir, device="cpu", seed=1)
        log(f"Building a tiny model in {modelDir}")
        saveTinyModel(logic.launcher(settings), modelDir)
        volume = addTestVolume(scene)
        nodesBefore = scene.GetNumberOfNodes()
        log(f"Running {info.label} on '{volume.GetName()}'")
        job = logic.segment(settings, volume, timeout=timeout)
        assert job.state == job.SUCCEEDED, job.state
        if job.segmentationNode is None:
            assert scene.GetNumberOfNodes() == nodesBefore
            log("The tiny random model found no foreground (allowed); scene unchanged.")
            return job
        seg = job.segmentationNode
        assert seg.GetNodeReferenceID(seg.GetReferenceImageGeometryReferenceRole()) == volume.GetID()
        assert job.segmentIds and all(seg.GetSegmentation().GetSegment(i) for i in job.segmentIds)
        _assertSegmentsInsideVolume(seg, volume)
        log(f"{len(job.segmentIds)} segment(s) in '{seg.GetName()}' after {job.elapsed:.1f} s")
        return job
    finally:
        shutil.rmtree(modelDir, ignore_errors=True)


def _assertSegmentsInsideVolume(segmentationNode, volumeNode):
    """Every segment voxel centre maps (RAS -> volume IJK) onto a voxel of the input grid."""
    import slicer

    rasToIjk = vtk.vtkMatrix4x4()
    volumeNode.GetRASToIJKMatrix(rasToIjk)
    dims = volumeNode.GetImageData().GetDimensions()
    segmentation = segmentationNode.GetSegmentation()
    name = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
    for index in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(index)
        image = segment.GetRepresentation(name)
        extent = image.GetExtent()
        values = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(
            extent[5] - extent[4] + 1, extent[3] - extent[2] + 1, extent[1] - extent[0] + 1)
        kk, jj, ii = np.nonzero(values == segment.GetLabelValue())
        toWorld = vtk.vtkMatrix4x4()
        image.GetImageToWorldMatrix(toWorld)
        toIjk = vtk.vtkMatrix4x4()
        vtk.vtkMatrix4x4.Multiply4x4(rasToIjk, toWorld, toIjk)
        M = np.array([[toIjk.GetElement(r, c) for c in range(4)] for r in range(4)])
        ijk = (M @ np.stack([ii + extent[0], jj + extent[2], kk + extent[4], np.ones_like(ii)]).astype(float))[:3]
        assert np.allclose(ijk, np.round(ijk), atol=1e-3), "segment voxels are off the input grid"
        for axis in range(3):
            assert ijk[axis].min() > -0.5 and ijk[axis].max() < dims[axis] - 0.5, "segment outside the volume"
