"""The page's "Evidence and selection" part: a finished job's evidence overlay in the slice views
and a slider that steers the result without running the model again.

Nothing of the selection is re-implemented: `SelectionLogic.selectionFor` (the same call the
Slicer panel makes) gives the ADZUS `ProposalSelection` (vote threshold) or the SDSeg
`ProbabilityThreshold` of the result, which rewrite only the result segment and refuse when the
user edited it. The slider applies its value when released (`setValue`); the overlay is the
evidence map as the foreground layer of every slice view, as Slicer's panel shows it. Click mode
(ADZUS results): a left click in a slice view toggles the proposal under it (`toggleAt`, the
Slicer panel's `toggleAtRas`); `clicks.SliceClicks` turns the click into the world RAS point.
"""

from __future__ import annotations

from .clicks import SliceClicks

OVERLAY_OPACITY = 0.5
EMPTY = {"ds_sel_kind": "", "ds_sel_value": 0.0, "ds_sel_min": 0.0, "ds_sel_max": 1.0, "ds_sel_step": 0.01,
         "ds_sel_default": 0.0, "ds_sel_overlay": False, "ds_sel_has_overlay": False, "ds_sel_message": "",
         "ds_sel_can_undo": False, "ds_sel_click": False}


class SelectionController:
    def __init__(self, state, scene, onChanged=lambda: None, editor=None):
        self.state, self.scene = state, scene
        self.onChanged = onChanged   # the page's segment table follows the re-selected segment
        self.logic = None
        self.evidenceNode = None
        self.clicks = SliceClicks(scene, self.toggleAt)
        # trame-slicer's SegmentationEditor: click mode and a Segment Editor tool take turns with
        # the left button, so the click does one thing and the highlighted tool says which.
        self.editor = editor
        if editor is not None:
            editor.active_effect_name_changed.connect(self._onEffectChanged)
        for key, value in EMPTY.items():
            state.setdefault(key, value)

    def setResult(self, job) -> None:
        """After a successful job: steer its result if it carries its evidence."""
        from DiffusionSegSlicerLib.SelectionLogic import ProposalSelection, selectionFor

        self.showOverlay(False)
        self.clicks.setEnabled(False)
        self.logic, self.evidenceNode, message = selectionFor(job)
        update = dict(EMPTY, ds_sel_message=message, ds_sel_has_overlay=self.evidenceNode is not None)
        if isinstance(self.logic, ProposalSelection):
            default = self.logic.defaultVoteThreshold
            update.update(ds_sel_kind="votes", ds_sel_value=default, ds_sel_default=default,
                          ds_sel_max=max(5.0, 2.0 * default))
        elif self.logic is not None:
            update.update(ds_sel_kind="probability", ds_sel_value=self.logic.threshold,
                          ds_sel_default=self.logic.threshold)
        self.state.update(update)
        self.showOverlay(self.evidenceNode is not None)

    def clear(self) -> None:
        """A new volume: the last result's selection no longer applies."""
        self.logic = self.evidenceNode = None
        self.clicks.setEnabled(False)
        self.state.update(dict(EMPTY))

    def setValue(self, value) -> None:
        if self.logic is None:
            return
        from DiffusionSegSlicerLib.SelectionLogic import (
            ProposalSelection,
            SelectionError,
        )

        try:
            value = float(value)
            if isinstance(self.logic, ProposalSelection):
                changed = self.logic.setVoteThreshold(value)
            else:
                changed = self.logic.setThreshold(value)
            self.state.ds_sel_message = f"{changed} voxel(s) changed."
        except (SelectionError, TypeError, ValueError) as error:
            self.state.ds_sel_message = str(error)
        self._sync()
        self.onChanged()

    def undo(self) -> None:
        if self.logic is None:
            return
        from DiffusionSegSlicerLib.SelectionLogic import SelectionError

        try:
            if self.logic.undo():
                self.state.ds_sel_message = "Undone."
        except SelectionError as error:
            self.state.ds_sel_message = str(error)
        self._sync()
        self.onChanged()

    def setClickMode(self, enabled) -> None:
        """While on, a left click in a slice view toggles the proposal under it (ADZUS results only);
        while off, clicks are the views' own."""
        from DiffusionSegSlicerLib.SelectionLogic import ProposalSelection

        enabled = bool(enabled) and isinstance(self.logic, ProposalSelection)
        if enabled and self.editor is not None:
            self.editor.deactivate_effect()
        self.clicks.setEnabled(enabled)
        self.state.ds_sel_click = enabled

    def _onEffectChanged(self, name: str) -> None:
        from trame_slicer.segmentation import SegmentationEffectNoTool

        if self.clicks.enabled and name and name != SegmentationEffectNoTool.get_effect_name():
            self.setClickMode(False)

    def toggleAt(self, ras) -> tuple[int, bool] | None:
        """Add or remove the proposal under a world RAS point, in every slice where it carries that
        id (what a click does in click mode); returns (proposal id, now included) or None."""
        from DiffusionSegSlicerLib.SelectionLogic import (
            ProposalSelection,
            SelectionError,
        )

        if not isinstance(self.logic, ProposalSelection):
            return None
        toggled = None
        with self.state:   # a click arrives from the view's event stream, not from a trame callback
            try:
                toggled = self.logic.toggleAtRas(ras)
                if toggled is None:
                    self.state.ds_sel_message = "No region under that point."
                else:
                    pid, added = toggled
                    self.state.ds_sel_message = (f"Region {pid} {'added' if added else 'removed'}: "
                                                 f"{self.logic.lastChangedVoxels} voxel(s) changed.")
            except SelectionError as error:
                self.state.ds_sel_message = str(error)
            self._sync()
            self.onChanged()
        return toggled

    def _sync(self) -> None:
        """The slider and Undo show the selection's state (also after a refused change)."""
        value = getattr(self.logic, "voteThreshold", None)
        self.state.ds_sel_value = value if value is not None else self.logic.threshold
        self.state.ds_sel_can_undo = self.logic.canUndo()

    def showOverlay(self, show) -> None:
        """The evidence map as the foreground of every slice view (or no foreground), and its
        colour legend with it."""
        node = self.evidenceNode
        if node is None or node.GetScene() is None:
            return
        show = bool(show)
        composites = self.scene.GetNodesByClass("vtkMRMLSliceCompositeNode")
        for index in range(composites.GetNumberOfItems()):
            composite = composites.GetItemAsObject(index)
            composite.SetForegroundVolumeID(node.GetID() if show else None)
            composite.SetForegroundOpacity(OVERLAY_OPACITY if show else 0.0)
        for index in range(node.GetNumberOfDisplayNodes()):
            display = node.GetNthDisplayNode(index)
            if display is not None and display.IsA("vtkMRMLColorLegendDisplayNode"):
                display.SetVisibility(show)
        self.state.ds_sel_overlay = show
