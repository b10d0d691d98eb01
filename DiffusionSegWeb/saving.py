"""Save the segmentation as Slicer's `.seg.nrrd` and hand it to the browser.

Written by Slicer's own segmentation storage node, so names, colours and terminology tags travel
with the labels and Slicer opens the file as it wrote it; not cropped to the segments' extent, so
the labels lie on the input volume's grid (same size, spacing, origin and direction).

A volume opened from DICOM files also gets a DICOM SEG of its series, for the PACS: slicer-core has
no SEG writer (Slicer's is dcmqi, in the QuantitativeReporting extension), so the backend's
highdicom writer turns the saved `.seg.nrrd` into one (DiffusionSegLib `write_seg_for_series`),
referencing the uploaded images and marked SEMIAUTOMATIC, since the person may have edited it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import slicer
from DiffusionSegLib.api import SegInfo, __version__, is_dicom_file, write_seg_for_series

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


def dicomFolderOf(paths: list[str]) -> Path | None:
    """The folder of the DICOM series a volume was opened from (all its files DICOM, in one folder)."""
    folders = {Path(p).parent for p in paths}
    if not paths or len(folders) != 1 or not all(is_dicom_file(p) for p in paths):
        return None
    return folders.pop()


def dicomSegName(saveName: str) -> str:
    return (saveName[:-len(".seg.nrrd")] if saveName.endswith(".seg.nrrd") else Path(saveName).stem) + ".seg.dcm"


class SegmentationSaver:
    def __init__(self, app):
        self.app = app
        self.saved: Path | None = None
        self.savedDicom: Path | None = None

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
        state.ds_download_ready = True
        if self.app.dicomFolder is None:
            status.note(f"Saved {name}; press Download to get it.")
            return
        dicomName = dicomSegName(name)
        try:
            written = write_seg_for_series(self.saved, self.app.dicomFolder, self.saved.with_name(dicomName),
                                           self._segInfo())
        except Exception as exc:  # the .seg.nrrd is saved; the SEG's problem is the user's to read
            log.exception("Writing the DICOM SEG failed")
            status.note(f"Saved {name}. The DICOM SEG could not be written: {exc}")
            return
        self.savedDicom = Path(written["path"])
        state.update({"ds_dicom_ready": True, "ds_dicom_name": dicomName})
        leftOut = f" ({', '.join(written['left_out'])} left out: no voxel on the series)" if written["left_out"] else ""
        status.note(f"Saved {name} and the DICOM SEG {dicomName}{leftOut}; press Download to get them.")

    def _segInfo(self) -> SegInfo:
        """What made the segmentation: the last job's method, model and prompts."""
        made = self.app.jobs.madeWith or {}
        method, model, prompts = made.get("method") or "Segment Editor", made.get("model"), made.get("prompt") or ""
        return SegInfo(method=method, model=model or None, version=__version__,
                       parameters={"prompts": prompts} if prompts else {},
                       derivation=f"{method} in the DiffusionSeg web app, then reviewed (and possibly edited) in "
                                  "its Segment Editor before export",
                       identity=f"web|{method}|{model}|{prompts}", algorithm_type="SEMIAUTOMATIC")

    def downloadBytes(self):
        """The saved file for the browser (a trame attachment: binary, not JSON-encoded)."""
        if self.saved is None or not self.saved.is_file():
            return None
        return self.app.server.protocol.addAttachment(self.saved.read_bytes())

    def dicomBytes(self):
        if self.savedDicom is None or not self.savedDicom.is_file():
            return None
        return self.app.server.protocol.addAttachment(self.savedDicom.read_bytes())
