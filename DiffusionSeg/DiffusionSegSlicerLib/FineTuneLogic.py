"""Learning from corrections: fine-tune an SDSeg checkpoint on a volume and the segmentation a
user corrected in the scene, without Qt.

start(): check the inputs (SDSeg checkpoint, non-empty segmentation, empty or new output
folder), export the volume and the segments (as a labelmap on the volume's grid) through storage
nodes into a temporary images/ + masks/ pair, and start
`python -m DiffusionSegLib train sdseg --init-from CKPT ...` as a worker process.
processEvents(): called by the panel's QTimer (or a test loop); forwards progress and log events
and, once the worker has exited, moves the new checkpoint from the temporary folder into the
output folder (so an interrupted run never leaves a partial checkpoint there). A run that ends
with `training_fell_short` (exit 8: the checkpoint is written but no better than a trivial
answer) keeps its checkpoint too, flagged in its model card, and says so as a warning.
The temporary folder is removed in every outcome; the scene is never changed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field

import slicer
import vtk

from DiffusionSegLib.api import EXIT_TRAINING_FELL_SHORT

from .SegmentationImport import removeNodeAndDisplay
from .VolumeIO import checkInputVolume, exportVolume
from .Worker import WorkerLauncher
from .WorkerJob import JobFailed, WorkerJob
from .WorkerSettings import WorkerPythonSettings

SDSEG_FORMAT = "diffusionseg.sdseg"   # DiffusionSegLib.methods.sdseg.checkpoint.FORMAT (that module imports torch)
CHECKPOINT_FOLDER = "checkpoint"
MODEL_CARD = "README.md"


@dataclass
class FineTuneSettings:
    checkpoint: str = ""              # SDSeg checkpoint folder to start from
    output: str = ""                  # new checkpoint folder (must not exist, or be empty)
    minutes: float = 5.0              # wall-time budget of the fine-tune (0: no limit)
    steps: int = 200                  # step limit (whichever of steps/minutes comes first)
    device: str = "auto"
    pythonInterpreter: str = ""
    seed: int = 0
    extraArguments: list[str] = field(default_factory=list)   # more `train sdseg` options

    def trainArguments(self, imagesDir: str, masksDir: str, outputDir: str) -> list[str]:
        steps = max(1, int(self.steps))
        arguments = ["--init-from", self.checkpoint, "--images", imagesDir, "--masks", masksDir,
                     "--output", outputDir, "--mask-map", ">0", "--steps", str(steps),
                     # one corrected case: no held-out case; validate once, at the end
                     "--val-fraction", "0", "--val-every", str(steps),
                     "--warmup-steps", str(min(100, max(1, steps // 10))),
                     "--seed", str(int(self.seed)), "--device", self.device or "auto"]
        if self.minutes and self.minutes > 0:
            arguments += ["--max-minutes", f"{float(self.minutes):g}"]
        return arguments + [str(a) for a in self.extraArguments]


def checkSdsegCheckpoint(folder: str) -> dict:
    """The checkpoint's config; ValueError with a message for the user when `folder` is not an
    SDSeg checkpoint (read from config.json only: no torch here)."""
    if not folder or not folder.strip():
        raise ValueError("Select the SDSeg checkpoint folder to fine-tune.")
    path = os.path.join(os.path.expanduser(folder), "config.json")
    if not os.path.isfile(path):
        raise ValueError(f"'{folder}' is not an SDSeg checkpoint: it has no config.json. "
                         "Select a folder written by `train sdseg` (or a previous fine-tune).")
    try:
        with open(path, encoding="utf-8") as file:
            config = json.load(file)
    except (OSError, ValueError) as exc:
        raise ValueError(f"The checkpoint's config.json cannot be read: {exc}") from None
    if not isinstance(config, dict) or config.get("format") != SDSEG_FORMAT:
        found = config.get("format") if isinstance(config, dict) else None
        raise ValueError(f"'{folder}' is not an SDSeg checkpoint (format {found!r}); learning from "
                         "corrections fine-tunes checkpoints trained with `train sdseg`.")
    if config.get("kind", "sdseg") != "sdseg":
        raise ValueError(f"'{folder}' holds the supervised baseline ({config.get('kind')}), not an SDSeg model.")
    return config


def checkOutputFolder(folder: str, checkpoint: str = "") -> str:
    """The absolute output folder; ValueError when it exists and is not empty (never overwrite)."""
    if not folder or not folder.strip():
        raise ValueError("Select an output folder for the fine-tuned checkpoint.")
    path = os.path.abspath(os.path.expanduser(folder))
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise ValueError(f"The output '{path}' is a file; select a new or empty folder.")
        if os.listdir(path):
            raise ValueError(f"The output folder '{path}' is not empty; select a new or empty folder "
                             "(existing checkpoints are never overwritten).")
    if checkpoint and os.path.abspath(os.path.expanduser(checkpoint)) == path:
        raise ValueError("The output folder must differ from the checkpoint being fine-tuned.")
    return path


def segmentIdsToExport(segmentationNode, segmentIds=None) -> list[str]:
    """The given segment ids, or else every visible segment (all, without a display node)."""
    if segmentationNode is None or not segmentationNode.IsA("vtkMRMLSegmentationNode"):
        raise ValueError("Select the corrected segmentation.")
    segmentation = segmentationNode.GetSegmentation()
    allIds = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]
    if segmentIds:
        unknown = [i for i in segmentIds if i not in allIds]
        if unknown:
            raise ValueError(f"'{segmentationNode.GetName()}' has no segment {', '.join(unknown)}.")
        chosen = list(segmentIds)
    else:
        displayNode = segmentationNode.GetDisplayNode()
        chosen = [i for i in allIds if displayNode is None or displayNode.GetSegmentVisibility(i)]
    if not chosen:
        raise ValueError(f"'{segmentationNode.GetName()}' has no (visible) segment to learn from.")
    return chosen


def exportSegmentsAsLabelmap(scene, segmentationNode, segmentIds: list[str], volumeNode, path: str) -> int:
    """Write the segments as one labelmap on the volume's grid (Slicer's own export resamples
    onto the reference geometry; the storage node writes it). Returns the foreground voxel
    count. Every node the export adds to the scene is removed again."""
    before = {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}
    labelmapNode = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    try:
        ids = vtk.vtkStringArray()
        for segmentId in segmentIds:
            ids.InsertNextValue(segmentId)
        if not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
                segmentationNode, ids, labelmapNode, volumeNode):
            raise RuntimeError(f"Slicer could not export '{segmentationNode.GetName()}' as a labelmap.")
        image = labelmapNode.GetImageData()
        foreground = 0
        if image is not None and image.GetNumberOfPoints():
            accumulate = vtk.vtkImageAccumulate()
            accumulate.SetInputData(image)
            accumulate.IgnoreZeroOn()
            accumulate.Update()
            foreground = int(accumulate.GetVoxelCount())
        if foreground:
            storageNode = slicer.vtkMRMLVolumeArchetypeStorageNode()
            storageNode.SetFileName(str(path))
            storageNode.SetUseCompression(True)
            if not storageNode.WriteData(labelmapNode) or not os.path.isfile(path):
                raise OSError(f"Could not write the corrected segmentation to {path}.")
        return foreground
    finally:
        removeNodeAndDisplay(scene, labelmapNode)
        added = [scene.GetNthNode(i) for i in range(scene.GetNumberOfNodes())]
        for node in [n for n in added if n.GetID() not in before]:
            scene.RemoveNode(node)


def caseName(name: str) -> str:
    """A file stem from a node name (the model card lists training cases by stem)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name or "").strip("._-")
    return stem or "case"


class FineTuneJob(WorkerJob):
    cancelledMessage = "Cancelled; no checkpoint was written."
    workDirPrefix = "DiffusionSeg-finetune-"

    def __init__(self, scene, settings: FineTuneSettings, volumeNode, segmentationNode, segmentIds=None,
                 launcher: WorkerLauncher | None = None, temporaryRoot: str | None = None):
        super().__init__(temporaryRoot)
        self.scene = scene
        self.settings = settings
        self.volumeNode = volumeNode
        self.segmentationNode = segmentationNode
        self.segmentIds = list(segmentIds or [])
        self.launcher = launcher or WorkerLauncher(WorkerPythonSettings().resolve(settings.pythonInterpreter))
        self.outputPath: str | None = None      # the new checkpoint, once SUCCEEDED
        self._fellShort: dict | None = None     # the `training_fell_short` event, said as a warning at the end

    # -- start -----------------------------------------------------------------------------------

    def checkInputs(self) -> tuple[list[str], str]:
        """(segment ids, output folder); ValueError for inputs that cannot work."""
        checkInputVolume(self.volumeNode)
        checkSdsegCheckpoint(self.settings.checkpoint)
        segmentIds = segmentIdsToExport(self.segmentationNode, self.segmentIds)
        output = checkOutputFolder(self.settings.output, self.settings.checkpoint)
        if self.settings.steps < 1:
            raise ValueError("The number of fine-tuning steps must be at least 1.")
        return segmentIds, output

    def _createProcess(self, checked):
        segmentIds, output = checked
        stem = caseName(self.volumeNode.GetName())
        imagesDir, masksDir = os.path.join(self.workDir, "images"), os.path.join(self.workDir, "masks")
        os.makedirs(imagesDir)
        os.makedirs(masksDir)
        self.log.emit("info", f"Exporting '{self.volumeNode.GetName()}' and "
                              f"{len(segmentIds)} segment(s) of '{self.segmentationNode.GetName()}'.")
        exportVolume(self.volumeNode, os.path.join(imagesDir, stem + ".nrrd"))
        voxels = exportSegmentsAsLabelmap(self.scene, self.segmentationNode, segmentIds, self.volumeNode,
                                          os.path.join(masksDir, stem + ".nrrd"))
        if not voxels:
            raise ValueError(f"The segments of '{self.segmentationNode.GetName()}' are empty inside "
                             f"'{self.volumeNode.GetName()}': nothing to learn from.")
        self._segmentNames = [self.segmentationNode.GetSegmentation().GetSegment(i).GetName()
                              for i in segmentIds]
        self._output = output
        arguments = self.settings.trainArguments(imagesDir, masksDir, os.path.join(self.workDir, CHECKPOINT_FOLDER))
        return self.launcher.trainCommand("sdseg", arguments, self.settings.device, self.workDir)

    def _handleEvent(self, event: dict) -> None:
        if event.get("event") == "error" and event.get("code") == "training_fell_short":
            self._fellShort = event   # not a failure: the checkpoint is there, flagged
            return
        super()._handleEvent(event)

    def _finish(self, returnCode: int | None) -> None:
        if returnCode == EXIT_TRAINING_FELL_SHORT and self.result is not None and self._fellShort is not None:
            failed = [c for c in self.result.get("checks") or [] if not c.get("passed", True)]
            stages = ", ".join(f"{c['label']} {c['measure']} {c['score']:.3f} (floor {c['floor']:.2f})" for c in failed)
            message = (f"Fine-tuning fell short: {stages or self._fellShort.get('message', '')}, no better than a "
                       f"trivial answer. The checkpoint is kept and its model card says so. "
                       f"{self._fellShort.get('hint', '')}").strip()
            self.warnings.append(message)
            self.log.emit("warning", message)
            returnCode = 0
        super()._finish(returnCode)

    def _onSuccess(self) -> None:
        """Move the staged checkpoint into the output folder (only now: never a partial one)."""
        staged = os.path.join(self.workDir, CHECKPOINT_FOLDER)
        if not os.path.isfile(os.path.join(staged, "config.json")):
            raise JobFailed("no_result", "The worker finished without writing a checkpoint.")
        self._appendModelCard(os.path.join(staged, MODEL_CARD))
        output = checkOutputFolder(self._output)   # still new or empty (it may have changed meanwhile)
        if os.path.isdir(output):
            os.rmdir(output)
        shutil.move(staged, output)
        self.outputPath = output
        best = (self.result or {}).get("best") or {}
        dice = best.get("val_dice")
        self.log.emit("info", f"Fine-tuned checkpoint written to {output} ({self.result.get('steps', '?')} steps"
                              + (f", Dice on the corrected slices {dice:.3f}" if isinstance(dice, (int, float)) else "")
                              + f") in {self.elapsed:.1f} s.")

    def _appendModelCard(self, path: str) -> None:
        """Name the scene data in the model card: the exported files were temporary."""
        lines = ["", "## Learning from corrections (3D Slicer)", "",
                 f"- volume: {self.volumeNode.GetName()}",
                 f"- corrected segmentation: {self.segmentationNode.GetName()}",
                 f"- segments (foreground): {', '.join(self._segmentNames)}",
                 f"- initial checkpoint: {os.path.abspath(os.path.expanduser(self.settings.checkpoint))}",
                 "- the volume and segmentation were exported to a temporary folder, removed after training", ""]
        with open(path, "a", encoding="utf-8") as file:
            file.write("\n".join(lines))
