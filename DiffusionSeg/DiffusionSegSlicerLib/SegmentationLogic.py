"""One segmentation job from volume node to segmentation node, without Qt.

start(): export the input through a storage node, write the request, start the worker.
processEvents(): called by the widget's QTimer (or a test loop); forwards progress and log
events, draws the finished slices into a preview labelmap (PartialPreview.py, signal `partial`)
and, once the worker has exited, removes the preview and imports the result or reports the
failure. The temporary folder and the preview are removed in every outcome.
"""

from __future__ import annotations

import os

from .EvidenceImport import SEGMENT_ATTRIBUTE, EvidenceImporter
from .JobSettings import JobSettings, buildJobRequest
from .PartialPreview import PartialPreview
from .SegmentationImport import SegmentationImporter, removeNodeAndDisplay
from .Signal import Signal
from .VolumeIO import checkInputVolume, exportVolume, roiToIjkBox
from .Worker import WorkerLauncher
from .WorkerJob import WorkerJob
from .WorkerSettings import WorkerPythonSettings


class SegmentationJob(WorkerJob):
    cancelledMessage = "Cancelled; the scene was not changed."
    successFailureCode = "import_failed"

    def __init__(self, scene, settings: JobSettings, inputVolumeNode, roiNode=None,
                 targetSegmentationNode=None, launcher: WorkerLauncher | None = None,
                 importer: SegmentationImporter | None = None, methodInfo=None,
                 temporaryRoot: str | None = None):
        super().__init__(temporaryRoot)
        self.scene = scene
        self.settings = settings
        self.inputVolumeNode = inputVolumeNode
        self.roiNode = roiNode
        self.targetSegmentationNode = targetSegmentationNode
        self.launcher = launcher or WorkerLauncher(WorkerPythonSettings().resolve(settings.pythonInterpreter))
        self.importer = importer or SegmentationImporter()
        self.methodInfo = methodInfo
        self.segmentationNode = None
        self.segmentIds: list[str] = []
        self.evidenceNodes: dict = {}     # the result bundle's nodes (EvidenceImport.py)
        self.preview: PartialPreview | None = None   # the finished slices while the job runs
        self.partial = Signal("previewNode", "slicesDone")

    # -- start -----------------------------------------------------------------------------------

    def checkInputs(self):
        """The ROI as an IJK box (or None); raises for an unusable input volume."""
        checkInputVolume(self.inputVolumeNode)
        return roiToIjkBox(self.roiNode, self.inputVolumeNode) if self.roiNode is not None else None

    def _createProcess(self, roiIjk):
        request = self._prepareRequest(roiIjk)
        requestPath = os.path.join(self.workDir, "request.json")
        request.save(requestPath)
        return self.launcher.runCommand(requestPath, self.settings.device, self.workDir)

    def _prepareRequest(self, roiIjk):
        """Export the input volume into the job folder; returns the request that reads it (shared
        with the server-backed job, ServiceJob.py)."""
        inputPath = os.path.join(self.workDir, "input.nrrd")
        outputPath = os.path.join(self.workDir, "output.nrrd")
        request = buildJobRequest(self.settings, inputPath, outputPath, roiIjk, self.methodInfo)
        self.log.emit("info", f"Exporting '{self.inputVolumeNode.GetName()}'.")
        exportVolume(self.inputVolumeNode, inputPath)
        self.log.emit("debug", "Settings: " + self.settings.toJson())
        return request

    def _onPartial(self, event: dict) -> None:
        if self.preview is None:
            label = self.settings.prompt.strip() or self.settings.method
            self.preview = PartialPreview(self.scene, self.inputVolumeNode,
                                          f"{self.inputVolumeNode.GetName()} {label} (preview)")
        self.preview.add(event)
        self.partial.emit(self.preview.node, len(self.preview.slices))

    def _release(self) -> None:
        if self.preview is not None:
            self.preview.remove()

    def _onSuccess(self) -> None:
        outputPath = os.path.join(self.workDir, "output.nrrd")   # ours, whatever the event says
        names = segmentNames(self.result.get("segments"), self.log.emit)
        fallback = self.settings.prompt.strip() or self.settings.method
        names = {label: name or fallback for label, name in names.items()} or {1: fallback}
        nodeName = f"{self.inputVolumeNode.GetName()} {fallback}"
        self.segmentationNode, self.segmentIds = self.importer.importLabelmap(
            self.scene, outputPath, self.inputVolumeNode, names, self.targetSegmentationNode, nodeName)
        self.evidenceNodes = self._importEvidence(outputPath, fallback)
        if not self.segmentIds:   # the worker's own warning says why; the scene is unchanged
            self.log.emit("info", "The result is empty; no segment was added.")
            return
        self.log.emit("info", f"Imported {len(self.segmentIds)} segment(s) into "
                              f"'{self.segmentationNode.GetName()}' in {self.elapsed:.1f} s.")

    def _importEvidence(self, outputPath: str, label: str) -> dict:
        """The bundle files the worker listed (paths derived from ours, not taken from the
        event), as nodes beside the result; the scene is left as it was if this fails.

        The segmentation's steering link (EvidenceImport.py) then names this job's result only:
        an earlier job's proposals can never re-select this job's segment."""
        paths = listedBundlePaths(outputPath, (self.result or {}).get("outputs"))
        paths = {name: path for name, path in paths.items() if os.path.isfile(path)}
        if not self.segmentIds:  # nothing to steer: keep the maps, not the selection data
            paths = {name: path for name, path in paths.items() if name not in ("proposals", "scores")}
        previousLink = EvidenceImporter.linkState(self.segmentationNode) if self.segmentIds else None
        try:
            if self.segmentIds:
                EvidenceImporter.unlink(self.segmentationNode)
            if not paths:
                return {}
            segmentId = self.segmentIds[0] if len(self.segmentIds) == 1 else None
            return EvidenceImporter().importBundle(self.scene, paths, self.inputVolumeNode,
                                                   self.segmentationNode if self.segmentIds else None,
                                                   segmentId, self.settings.method,
                                                   f"{self.inputVolumeNode.GetName()} {label}")
        except Exception:
            if previousLink is not None:
                EvidenceImporter.restoreLink(self.segmentationNode, previousLink)
            self._removeImportedSegments()
            raise

    def hasResult(self) -> bool:
        """Whether this job's segments are still in the scene (what removeResult would remove)."""
        if self.state != self.SUCCEEDED or self.segmentationNode is None or self.segmentationNode.GetScene() is None:
            return False
        segmentation = self.segmentationNode.GetSegmentation()
        return any(segmentation.GetSegment(i) is not None for i in self.segmentIds) or bool(self.evidenceNodes)

    def removeResult(self) -> int:
        """Undo this job: remove the segments it added (the segmentation node too, when the job
        created it and nothing else was added to it since) and the evidence nodes it imported.
        Other segments are never touched. Returns the number of segments removed."""
        segmentation = self.segmentationNode.GetSegmentation() if self.segmentationNode is not None else None
        removed = 0
        if segmentation is not None and self.segmentationNode.GetScene() is self.scene:
            ids = [i for i in self.segmentIds if segmentation.GetSegment(i) is not None]
            others = segmentation.GetNumberOfSegments() - len(ids)
            if EvidenceImporter.linkState(self.segmentationNode)["attributes"].get(SEGMENT_ATTRIBUTE) in ids:
                EvidenceImporter.unlink(self.segmentationNode)
            if self.targetSegmentationNode is None and others == 0:
                removeNodeAndDisplay(self.scene, self.segmentationNode)
            else:
                for segmentId in ids:
                    segmentation.RemoveSegment(segmentId)
            removed = len(ids)
        for node in self.evidenceNodes.values():
            if node.GetScene() is self.scene:
                removeNodeAndDisplay(self.scene, node)
        self.evidenceNodes, self.segmentIds = {}, []
        return removed

    def _removeImportedSegments(self) -> None:
        if self.segmentationNode is None:
            return
        if self.targetSegmentationNode is None:
            removeNodeAndDisplay(self.scene, self.segmentationNode)
        else:
            for segmentId in self.segmentIds:
                self.segmentationNode.GetSegmentation().RemoveSegment(segmentId)
        self.segmentationNode, self.segmentIds = None, []


def listedBundlePaths(outputPath: str, outputs) -> dict[str, str]:
    """name -> where that bundle file of the labelmap `outputPath` lives locally, for each
    evidence output the result event lists (`outputs`); the worker's or server's own paths are
    never used. Shared by the import and by the server job, which downloads these files."""
    from DiffusionSegLib.api import OUTPUT_NAMES, bundle_path

    listed = outputs if isinstance(outputs, dict) else {}
    return {name: str(bundle_path(outputPath, name)) for name in OUTPUT_NAMES[1:] if name in listed}


def segmentNames(segments, log=lambda level, message: None) -> dict[int, str]:
    """label -> name from the result event's `segments`; entries that are not
    {"label": whole number >= 1, "name": text} are logged and skipped, never fatal."""
    names = {}
    if segments is None:
        return names
    if not isinstance(segments, list):
        log("warning", f"Ignored the worker's segment list: expected a list, got {type(segments).__name__}.")
        return names
    for entry in segments:
        label = entry.get("label") if isinstance(entry, dict) else None
        name = entry.get("name") if isinstance(entry, dict) else None
        if isinstance(label, bool) or not isinstance(label, int) or label < 1 or \
                not (name is None or isinstance(name, str)):
            log("warning", f"Ignored a malformed segment entry from the worker: {str(entry)[:200]}")
            continue
        names[label] = (name or "").strip()
    return names
