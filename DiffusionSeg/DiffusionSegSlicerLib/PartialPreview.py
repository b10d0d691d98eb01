"""The slices a running job has finished, shown before the job ends (no Qt).

The worker sends the foreground of each finished batch of slices (`partial` events,
DiffusionSegLib/contract/partial.py). They are written into one labelmap volume node on exactly
the input's grid (same IJK-to-RAS matrix, same parent transform) that the front end shows as the
slice views' label layer; updating it costs a slice copy, not a segmentation rebuild. The node is
a preview: never saved with the scene, hidden from node selectors, and removed when the job ends
in every outcome — a cancelled or failed job leaves nothing, a finished one is replaced by its
imported result.
"""

from __future__ import annotations

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from DiffusionSegLib.api import apply_partial

PREVIEW_ATTRIBUTE = "DiffusionSeg.preview"


class PartialPreview:
    def __init__(self, scene, inputVolumeNode, name: str):
        self.scene = scene
        self.inputVolumeNode = inputVolumeNode
        self.name = name
        self.node = None
        self.slices: set[tuple[int, int]] = set()   # (label, slice index) reported so far
        self._array: np.ndarray | None = None

    def add(self, event: dict) -> int:
        """Write one `partial` event; returns its foreground voxels. A malformed event raises
        ValueError and changes nothing."""
        array = self._ensureNode()
        voxels = apply_partial(event, array)
        self.slices.update((int(event.get("label", 1)), int(index)) for index in event["slices"])
        self.node.GetImageData().GetPointData().GetScalars().Modified()
        self.node.GetImageData().Modified()
        self.node.Modified()
        return voxels

    def voxels(self) -> int:
        return 0 if self._array is None else int(np.count_nonzero(self._array))

    def _ensureNode(self) -> np.ndarray:
        if self.node is not None and self.node.GetScene() is self.scene:
            return self._array
        dims = self.inputVolumeNode.GetImageData().GetDimensions()
        image = vtk.vtkImageData()
        image.SetDimensions(dims)
        scalars = numpy_support.numpy_to_vtk(np.zeros(dims[0] * dims[1] * dims[2], np.uint8), deep=True,
                                             array_type=vtk.VTK_UNSIGNED_CHAR)
        image.GetPointData().SetScalars(scalars)
        node = slicer.vtkMRMLLabelMapVolumeNode()
        node.SetName(self.scene.GenerateUniqueName(self.name))
        node.SetHideFromEditors(True)
        node.SetSaveWithScene(False)
        node.SetAttribute(PREVIEW_ATTRIBUTE, "1")
        matrix = vtk.vtkMatrix4x4()
        self.inputVolumeNode.GetIJKToRASMatrix(matrix)
        node.SetIJKToRASMatrix(matrix)
        node.SetAndObserveImageData(image)
        self.scene.AddNode(node)
        node.SetAndObserveTransformNodeID(self.inputVolumeNode.GetTransformNodeID())
        node.CreateDefaultDisplayNodes()
        self.node = node
        # a (K, J, I) view of the node's voxels: apply_partial writes the node directly
        self._array = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(dims[2], dims[1], dims[0])
        return self._array

    def remove(self) -> None:
        """Gone from the scene (with its display and storage nodes), whatever happened."""
        node, self.node, self._array = self.node, None, None
        if node is None or node.GetScene() is None:
            return
        scene = node.GetScene()
        for index in reversed(range(node.GetNumberOfDisplayNodes())):
            display = node.GetNthDisplayNode(index)
            if display is not None and display.GetScene() is scene:
                scene.RemoveNode(display)
        scene.RemoveNode(node)
