"""Result bundle files -> volume nodes beside the segmentation, displayed so they can be read.

The worker writes each map on the input's grid (docs/evidence.md). Here every map becomes a
scalar volume node read through Slicer's storage node (so its geometry is the file's, exactly),
placed under the input's transform and in the input's subject-hierarchy folder, with a window
that fits what the map means and, for the evidence, a colour legend. The proposals and the
selection scores (what re-selection needs) become a hidden labelmap node and a text node
referenced from the segmentation node, so re-selection still works after the scene is saved and
loaded again.
"""

from __future__ import annotations

import json

import numpy as np
import slicer
from vtk.util import numpy_support

from .SegmentationImport import placeBesideInSubjectHierarchy
from .VolumeIO import readVolumeFile

MAP_NAMES = ("evidence", "uncertainty", "anomaly", "pseudo_healthy")
PROPOSALS_ROLE = "DiffusionSeg.proposals"
SCORES_ROLE = "DiffusionSeg.scores"
EVIDENCE_ROLE = "DiffusionSeg.evidence"
SEGMENT_ATTRIBUTE = "DiffusionSeg.resultSegmentId"
METHOD_ATTRIBUTE = "DiffusionSeg.method"
# Colour tables in order of preference: perceptually ordered ones first (present in the
# Slicer application), then ones every MRML scene has.
SEQUENTIAL_COLORS = ("vtkMRMLColorTableNodeFileInferno.txt", "vtkMRMLColorTableNodeFileViridis.txt",
                     "vtkMRMLPETProceduralColorNodePET-Heat", "vtkMRMLColorTableNodeIron")
DIVERGING_COLORS = ("vtkMRMLColorTableNodeFileDivergingBlueRed.txt", "vtkMRMLColorTableNodeFileColdToHotRainbow.txt",
                    "vtkMRMLColorTableNodeRainbow")
TITLES = {  # (method or "*", map) -> legend/node label
    ("adzus", "evidence"): "prompt evidence (× volume reference)",
    ("adzus", "uncertainty"): "vote margin",
    ("sdseg", "evidence"): "foreground probability",
    ("sdseg", "uncertainty"): "probability std over seeds",
    ("diffugts", "evidence"): "residual R",
    ("diffugts", "anomaly"): "anomaly map",
    ("*", "pseudo_healthy"): "pseudo-healthy",
}


def mapTitle(method: str, name: str) -> str:
    return TITLES.get((method, name)) or TITLES.get(("*", name)) or name.replace("_", " ")


def volumeArray(volumeNode) -> np.ndarray:
    """The node's voxels as a (K, J, I) numpy view (the worker's array order)."""
    image = volumeNode.GetImageData()
    dims = image.GetDimensions()
    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(dims[2], dims[1], dims[0])


def displayWindow(method: str, name: str, values: np.ndarray, selection: dict | None = None) -> tuple[float, float]:
    """(low, high) of a window that shows what the map means: probabilities on [0, 1], the
    vote margin symmetric around its decision (0), others from 0 to their 99.5th percentile."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    if name == "evidence" and method == "sdseg":
        return 0.0, 1.0
    if name == "uncertainty" and method != "sdseg":
        reach = float(np.percentile(np.abs(finite), 99.5)) or 1.0
        return -reach, reach
    if name == "pseudo_healthy":
        low, high = np.percentile(finite, [0.5, 99.5])
        return float(low), float(max(high, low + 1e-6))
    high = float(np.percentile(finite, 99.5))
    if name == "evidence" and selection:  # keep the seed threshold visible on the colour scale
        high = max(high, 1.25 * float(selection.get("seed_threshold") or 0.0))
    return 0.0, high if high > 0 else 1.0


def _firstColor(scene, candidates) -> str | None:
    for nodeId in candidates:
        if scene.GetNodeByID(nodeId) is not None:
            return nodeId
    return None


class EvidenceImporter:
    def importBundle(self, scene, outputs: dict, inputVolumeNode, segmentationNode, segmentId: str | None,
                     method: str, baseName: str) -> dict:
        """Add the bundle's maps (and the selection data) to the scene; returns name -> node.

        On failure every node added here is removed again and the error raised."""
        added = []
        nodes = {}
        try:
            selection = None
            if outputs.get("scores"):
                with open(outputs["scores"], encoding="utf-8") as stream:
                    scoresText = stream.read()
                selection = (json.loads(scoresText) or {}).get("selection")
                textNode = scene.AddNewNodeByClass("vtkMRMLTextNode", scene.GenerateUniqueName(f"{baseName} scores"))
                textNode.SetText(scoresText)
                textNode.SetHideFromEditors(True)
                added.append(textNode)
                nodes["scores"] = textNode
            if outputs.get("proposals"):
                proposals = readVolumeFile(outputs["proposals"], scene.GenerateUniqueName(f"{baseName} proposals"),
                                           labelmap=True)
                self._addBeside(scene, proposals, inputVolumeNode, added)
                proposals.GetDisplayNode().SetVisibility(False)
                nodes["proposals"] = proposals
            for name in MAP_NAMES:
                if not outputs.get(name):
                    continue
                node = readVolumeFile(outputs[name], scene.GenerateUniqueName(f"{baseName} {mapTitle(method, name)}"))
                self._addBeside(scene, node, inputVolumeNode, added)
                self._styleMap(scene, node, method, name, selection, added)
                nodes[name] = node
            if segmentationNode is not None:
                self._link(segmentationNode, nodes, segmentId, method)
        except Exception:
            for node in reversed(added):
                if node.GetScene() is scene:
                    scene.RemoveNode(node)
            raise
        return nodes

    def _addBeside(self, scene, node, inputVolumeNode, added) -> None:
        scene.AddNode(node)
        added.append(node)
        node.CreateDefaultDisplayNodes()
        added.append(node.GetDisplayNode())
        # The files are in the input's local space: the same transform keeps them in place.
        node.SetAndObserveTransformNodeID(inputVolumeNode.GetTransformNodeID())
        placeBesideInSubjectHierarchy(scene, node, inputVolumeNode)

    def _styleMap(self, scene, node, method: str, name: str, selection, added) -> None:
        display = node.GetDisplayNode()
        low, high = displayWindow(method, name, volumeArray(node), selection)
        display.AutoWindowLevelOff()
        display.SetWindowLevelMinMax(low, high)
        if name == "pseudo_healthy":
            return  # an image to compare with the input: grey, like it
        diverging = name == "uncertainty" and method != "sdseg"
        colorId = _firstColor(scene, DIVERGING_COLORS if diverging else SEQUENTIAL_COLORS)
        if colorId:
            display.SetAndObserveColorNodeID(colorId)
        if not diverging:
            # As an overlay, voxels without evidence are transparent and the image shows through.
            display.SetApplyThreshold(True)
            display.SetLowerThreshold(low + 0.02 * (high - low))
            display.SetUpperThreshold(float(np.finfo(np.float32).max))
        if name == "evidence":
            legend = slicer.vtkMRMLColorLegendDisplayNode()
            scene.AddNode(legend)
            added.append(legend)
            legend.SetTitleText(mapTitle(method, name))
            legend.SetAndObservePrimaryDisplayNode(display)
            node.AddAndObserveDisplayNodeID(legend.GetID())

    @staticmethod
    def linkState(segmentationNode) -> dict:
        """The steering link as it is now (to put back when an import fails)."""
        return {"references": {role: segmentationNode.GetNodeReferenceID(role)
                               for role in (PROPOSALS_ROLE, SCORES_ROLE, EVIDENCE_ROLE)},
                "attributes": {name: segmentationNode.GetAttribute(name) for name in (SEGMENT_ATTRIBUTE, METHOD_ATTRIBUTE)}}

    @staticmethod
    def restoreLink(segmentationNode, state: dict) -> None:
        EvidenceImporter.unlink(segmentationNode)
        for role, nodeId in state["references"].items():
            if nodeId:
                segmentationNode.SetNodeReferenceID(role, nodeId)
        for name, value in state["attributes"].items():
            if value is not None:
                segmentationNode.SetAttribute(name, value)

    @staticmethod
    def unlink(segmentationNode) -> None:
        """Forget which result of this segmentation can be steered (a newer job replaced it)."""
        for role in (PROPOSALS_ROLE, SCORES_ROLE, EVIDENCE_ROLE):
            segmentationNode.RemoveNodeReferenceIDs(role)
        for attribute in (SEGMENT_ATTRIBUTE, METHOD_ATTRIBUTE):
            segmentationNode.RemoveAttribute(attribute)

    @staticmethod
    def _link(segmentationNode, nodes: dict, segmentId: str | None, method: str) -> None:
        """Node references survive saving the scene; the selection logic finds its data here.
        Only the newest result is linked: whatever an earlier job linked is removed first, so
        its proposals can never steer this job's segment."""
        EvidenceImporter.unlink(segmentationNode)
        for role, key in ((PROPOSALS_ROLE, "proposals"), (SCORES_ROLE, "scores"), (EVIDENCE_ROLE, "evidence")):
            if key in nodes:
                segmentationNode.SetNodeReferenceID(role, nodes[key].GetID())
        if segmentId:
            segmentationNode.SetAttribute(SEGMENT_ATTRIBUTE, segmentId)
        segmentationNode.SetAttribute(METHOD_ATTRIBUTE, method)
