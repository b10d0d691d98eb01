"""Helpers for the Slicer-side tests on slicer-core's real MRML scene (no Qt, no app)."""

import math
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MODULE_DIR = ROOT / "DiffusionSeg"
FAKE_WORKER = Path(__file__).resolve().parent / "slicer_fake_worker.py"
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))

import slicer  # noqa: E402
import vtk  # noqa: E402
from DiffusionSegSlicerLib.Worker import WorkerLauncher  # noqa: E402
from vtk.util import numpy_support  # noqa: E402


class FakeWorkerLauncher(WorkerLauncher):
    """Runs Testing/slicer_fake_worker.py instead of the real backend."""

    def command(self, *arguments):
        return [sys.executable, str(FAKE_WORKER), *arguments]


def newScene():
    scene = slicer.vtkMRMLScene()
    slicer.mrmlScene = scene
    return scene


def rotation(axis, degrees):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    x, y, z = axis
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    C = 1 - c
    return np.array([[c + x * x * C, x * y * C - z * s, x * z * C + y * s],
                     [y * x * C + z * s, c + y * y * C, y * z * C - x * s],
                     [z * x * C - y * s, z * y * C + x * s, c + z * z * C]])


def addVolume(scene, array, spacing=(1, 1, 1), origin=(0, 0, 0), directions=np.eye(3), name="Input"):
    """array is indexed [k, j, i] (scalar) or [k, j, i, c] (vector), as in slicer.util."""
    vector = array.ndim == 4
    node = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode" if vector else "vtkMRMLScalarVolumeNode")
    node.SetName(name)
    image = vtk.vtkImageData()
    image.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    flat = np.ascontiguousarray(array).reshape(-1, array.shape[3]) if vector else np.ascontiguousarray(array).ravel()
    vtkArray = numpy_support.numpy_to_vtk(flat, deep=True)
    image.GetPointData().SetScalars(vtkArray)
    node.SetAndObserveImageData(image)
    node.SetSpacing(*spacing)
    node.SetOrigin(*origin)
    node.SetIJKToRASDirections([list(row) for row in np.asarray(directions)])
    node.CreateDefaultDisplayNodes()
    return node


def ijkToRasMatrix(volumeNode):
    m = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(m)
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def voxelCentersRas(volumeNode, mask_kji):
    """RAS positions of the voxels where mask[k, j, i] is true."""
    k, j, i = np.nonzero(mask_kji)
    ijk1 = np.stack([i, j, k, np.ones_like(i)]).astype(float)
    return (ijkToRasMatrix(volumeNode) @ ijk1)[:3].T


def segmentVoxelsRas(segmentationNode, segmentId):
    """RAS positions of the voxels of one segment's binary labelmap (its own oriented grid)."""
    segmentation = segmentationNode.GetSegmentation()
    segment = segmentation.GetSegment(segmentId)
    image = segment.GetRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName())
    dims = image.GetDimensions()
    extent = image.GetExtent()
    values = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(dims[2], dims[1], dims[0])
    k, j, i = np.nonzero(values == segment.GetLabelValue())
    m = vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(m)
    M = np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])
    ijk1 = np.stack([i + extent[0], j + extent[2], k + extent[4], np.ones_like(i)]).astype(float)
    return (M @ ijk1)[:3].T


def sameRasPointSets(a, b, tolerance=1e-3):
    if len(a) != len(b):
        return False
    if len(a) == 0:
        return True
    from scipy.spatial import cKDTree

    distances, indices = cKDTree(b).query(a)
    return bool(distances.max() < tolerance and len(set(indices.tolist())) == len(b))


def listFiles(folder):
    return sorted(str(p) for p in Path(folder).rglob("*")) if os.path.isdir(folder) else []
