"""The segments of a segmentation node as rows for the page: id, name, colour, voxel count.

Counts come from the binary labelmap representation that the Segment Editor edits (segments may
share one labelmap layer, told apart by their label value), so a paint stroke or an undo shows up
in the count at once.
"""

from __future__ import annotations

import numpy as np
from vtkmodules.util.numpy_support import vtk_to_numpy

LABELMAP = "Binary labelmap"


def segmentVoxels(segment) -> int:
    image = segment.GetRepresentation(LABELMAP)
    if image is None or image.GetPointData().GetScalars() is None:
        return 0
    extent = image.GetExtent()
    if extent[1] < extent[0] or extent[3] < extent[2] or extent[5] < extent[4]:
        return 0
    values = vtk_to_numpy(image.GetPointData().GetScalars())
    return int(np.count_nonzero(values == segment.GetLabelValue()))


def segmentRows(segmentationNode) -> list[dict]:
    if segmentationNode is None:
        return []
    segmentation = segmentationNode.GetSegmentation()
    rows = []
    for index in range(segmentation.GetNumberOfSegments()):
        segmentId = segmentation.GetNthSegmentID(index)
        segment = segmentation.GetSegment(segmentId)
        r, g, b = (int(round(255 * c)) for c in segment.GetColor())
        rows.append({"id": segmentId, "name": segment.GetName(), "color": f"#{r:02x}{g:02x}{b:02x}",
                     "voxels": segmentVoxels(segment)})
    return rows
