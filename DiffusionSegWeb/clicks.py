"""Left clicks in the slice views as world RAS points, for the selection's click mode.

trame-slicer feeds the browser's mouse events to each slice view's VTK interactor, where Slicer's
own `vtkMRMLSliceViewInteractorStyle` turns them into `vtkMRMLInteractionEventData` (display
position and the world RAS point under it, through the slice node's XY-to-RAS matrix) and offers
them to the displayable managers. trame-slicer's Segment Editor effects take their clicks as
pipelines of the Layer Displayable Manager (slicer-layer-dm); so does this: one pipeline per slice
view, created for a hidden anchor node while it is in the scene. While click mode is on it claims
every left button press ahead of the other pipelines and managers (so a click does not also paint
or change the window/level) and hands the world point to the callback; while it is off it claims
nothing and the views behave as usual.
"""

from __future__ import annotations

import sys

import slicer
import vtk
from LayerDMLib import vtkMRMLLayerDMScriptedPipeline

ANCHOR_NAME = "DiffusionSegClickMode"
# The interaction logic ranks equal-state pipelines by render order, then by the smallest
# distance; the lowest possible distance puts a click-mode press ahead of the Segment Editor's
# effects (distance 0) and of the other displayable managers.
CLAIM_DISTANCE2 = -sys.float_info.max


class SliceClickPipeline(vtkMRMLLayerDMScriptedPipeline):
    def __init__(self, clicks: SliceClicks):
        super().__init__()
        self._clicks = clicks

    def CanProcessInteractionEvent(self, eventData) -> tuple[bool, float]:
        if (self._clicks.enabled and eventData.GetType() == vtk.vtkCommand.LeftButtonPressEvent
                and eventData.IsWorldPositionValid()):
            return True, CLAIM_DISTANCE2
        return False, sys.float_info.max

    def ProcessInteractionEvent(self, eventData) -> bool:
        self._clicks.onClick(tuple(eventData.GetWorldPosition()))
        return True


class SliceClicks:
    """Calls `onClick(ras)` for each left click in a slice view while `enabled`."""

    def __init__(self, scene, onClick):
        self.scene = scene
        self.onClick = onClick
        self.enabled = False
        self.anchor = slicer.vtkMRMLScriptedModuleNode()
        self.anchor.SetName(ANCHOR_NAME)
        self.anchor.SetHideFromEditors(True)
        self.anchor.SetSaveWithScene(False)
        self._creator = slicer.vtkMRMLLayerDMPipelineScriptedCreator()
        self._creator.SetPythonCallback(self._createPipeline)
        slicer.vtkMRMLLayerDMPipelineFactory.GetInstance().AddPipelineCreator(self._creator)

    def _createPipeline(self, viewNode, node):
        if node is self.anchor and viewNode is not None and viewNode.IsA("vtkMRMLSliceNode"):
            return SliceClickPipeline(self)
        return None

    def setEnabled(self, enabled: bool) -> None:
        """Adding the anchor (again after a scene clear) creates the pipelines of every slice view."""
        self.enabled = bool(enabled)
        if self.enabled and self.scene.GetNodeByID(self.anchor.GetID() or "") is not self.anchor:
            self.scene.AddNode(self.anchor)
