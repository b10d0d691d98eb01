"""Volume node <-> file, through Slicer's own storage nodes.

The storage node does the RAS<->LPS flip and writes the IJK-to-RAS direction, spacing and origin,
so no image geometry is computed by hand here. The only arithmetic is mapping an ROI box into the
volume's voxel index space, with the volume's own RAS-to-IJK matrix.
"""

from __future__ import annotations

import itertools
import math
import os

import slicer
import vtk

SUPPORTED_COMPONENTS = (1, 3, 4)   # RGBA: the worker drops alpha and says so, as the CLI does


def checkInputVolume(volumeNode) -> None:
    """Raise ValueError, with a message for the user, for volumes the worker cannot read."""
    if volumeNode is None:
        raise ValueError("Select an input volume.")
    if not volumeNode.IsA("vtkMRMLScalarVolumeNode"):
        raise ValueError(f"'{volumeNode.GetName()}' is not a scalar or RGB volume.")
    if volumeNode.IsA("vtkMRMLDiffusionTensorVolumeNode") or volumeNode.IsA("vtkMRMLDiffusionWeightedVolumeNode"):
        raise ValueError(f"'{volumeNode.GetName()}' is a diffusion MRI volume; select a scalar or RGB volume.")
    image = volumeNode.GetImageData()
    if image is None or image.GetNumberOfPoints() == 0:
        raise ValueError(f"'{volumeNode.GetName()}' has no image data.")
    components = image.GetNumberOfScalarComponents()
    if components not in SUPPORTED_COMPONENTS:
        raise ValueError(f"'{volumeNode.GetName()}' has {components} components per voxel; "
                         "DiffusionSeg reads grey-scale, RGB or RGBA images.")


def exportVolume(volumeNode, path: str) -> str:
    """Write the volume (scalar or RGB vector) to `path` (.nrrd or .nii) with its geometry."""
    checkInputVolume(volumeNode)
    storageNode = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storageNode.SetFileName(str(path))
    storageNode.SetUseCompression(False)
    if not storageNode.WriteData(volumeNode) or not os.path.isfile(path):
        raise OSError(f"Could not write '{volumeNode.GetName()}' to {path}.")
    return str(path)


def readLabelmap(path: str, name: str = "DiffusionSeg result"):
    """Read a labelmap file into a labelmap node that is NOT added to the scene."""
    return readVolumeFile(path, name, labelmap=True)


def readVolumeFile(path: str, name: str, labelmap: bool = False):
    """Read a worker's output volume (a labelmap, or a float map of the result bundle) into a
    node that is NOT added to the scene; its geometry is the file's, through the storage node."""
    node = slicer.vtkMRMLLabelMapVolumeNode() if labelmap else slicer.vtkMRMLScalarVolumeNode()
    node.SetName(name)
    storageNode = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storageNode.SetFileName(str(path))
    if not os.path.isfile(path) or not storageNode.ReadData(node) or node.GetImageData() is None:
        raise OSError(f"The worker's output {path} could not be read.")
    return node


def _worldToVolumeMatrix(volumeNode) -> vtk.vtkMatrix4x4:
    """World RAS -> the volume's local RAS (identity unless the volume is under a transform)."""
    matrix = vtk.vtkMatrix4x4()
    parent = volumeNode.GetParentTransformNode()
    if parent is not None:
        if not parent.IsTransformToWorldLinear():
            raise ValueError("The input volume is under a non-linear transform; harden it first.")
        slicer.vtkMRMLTransformNode.GetMatrixTransformBetweenNodes(None, parent, matrix)
    return matrix


def roiToIjkBox(roiNode, volumeNode) -> tuple[list[int], list[int]]:
    """The inclusive IJK box of the voxels whose centres lie in the (possibly rotated) ROI.

    Raises ValueError when the ROI does not overlap the volume."""
    size = roiNode.GetSize()
    objectToWorld = roiNode.GetObjectToWorldMatrix()
    worldToLocal = _worldToVolumeMatrix(volumeNode)
    rasToIjk = vtk.vtkMatrix4x4()
    volumeNode.GetRASToIJKMatrix(rasToIjk)
    objectToIjk = vtk.vtkMatrix4x4()
    vtk.vtkMatrix4x4.Multiply4x4(worldToLocal, objectToWorld, objectToIjk)
    vtk.vtkMatrix4x4.Multiply4x4(rasToIjk, objectToIjk, objectToIjk)
    corners = []
    for signs in itertools.product((-0.5, 0.5), repeat=3):
        point = [signs[axis] * size[axis] for axis in range(3)] + [1.0]
        corners.append(objectToIjk.MultiplyPoint(point)[:3])
    dims = volumeNode.GetImageData().GetDimensions()
    lo = [max(0, math.ceil(min(c[a] for c in corners) - 1e-6)) for a in range(3)]
    hi = [min(dims[a] - 1, math.floor(max(c[a] for c in corners) + 1e-6)) for a in range(3)]
    if any(l > h for l, h in zip(lo, hi)):
        raise ValueError(f"The ROI '{roiNode.GetName()}' does not overlap '{volumeNode.GetName()}'.")
    return lo, hi
