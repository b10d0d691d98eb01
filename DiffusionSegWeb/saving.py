"""Save the segmentation as Slicer's `.seg.nrrd` and hand it to the browser.

Written by Slicer's own segmentation storage node, so names, colours and terminology tags travel
with the labels and Slicer opens the file as it wrote it; not cropped to the segments' extent, so
the labels lie on the input volume's grid (same size, spacing, origin and direction). DICOM SEG is
not offered: slicer-core has no DICOM SEG writer (Slicer writes it through the QuantitativeReporting
extension's dcmqi, which is not part of slicer-core).
"""

from __future__ import annotations

import logging
from pathlib import Path

import slicer

log = logging.getLogger(__name__)


def writeSegNrrd(segmentationNode, path: str | Path) -> Path:
    path = Path(path)
    storage = slicer.vtkMRMLSegmentationStorageNode()
    storage.SetFileName(str(path))
    storage.SetCropToMinimumExtent(False)
    storage.SetUseCompression(True)
    if not storage.WriteData(segmentationNode) or not path.is_file():
        raise OSError(f"Slicer could not write the segmentation to {path.name}.")
    return path


class SegmentationSaver:
    def __init__(self, app):
        self.app = app
        self.saved: Path | None = None

    def save(self) -> None:
        """Write the segmentation under the name the page shows for Save and Download alike
        (`ds_save_name`: the volume's name with .seg.nrrd)."""
        state, status = self.app.state, self.app.status.model
        node = self.app.segmentationNode
        if node is None or node.GetSegmentation().GetNumberOfSegments() == 0:
            status.note("There is no segment to save.")
            return
        name = Path(state.ds_save_name or "segmentation.seg.nrrd").name
        try:
            self.saved = writeSegNrrd(node, self.app.workspace.newFolder("saved") / name)
        except OSError as exc:
            status.note(str(exc))
            return
        status.note(f"Saved {name}; press Download to get it.")
        state.ds_download_ready = True

    def downloadBytes(self):
        """The saved file for the browser (a trame attachment: binary, not JSON-encoded)."""
        if self.saved is None or not self.saved.is_file():
            return None
        return self.app.server.protocol.addAttachment(self.saved.read_bytes())
