"""The page's "Evidence and selection" part: a finished job's evidence overlay in the slice views,
its legend, and a slider that steers the result without running the model again.

Nothing of the selection is re-implemented: `SelectionLogic.selectionFor` (the same call the
Slicer panel makes) gives the ADZUS `ProposalSelection` (vote threshold) or the SDSeg
`ProbabilityThreshold` of the job's own result, which rewrite only that result's segment and
refuse when the user edited it; `PanelRules.sliderSetup` and `evidenceLegend` are the panel's
slider range and legend text. The overlay starts off (the result is what a reader looks at first)
and its legend shows the colour scale and what it means. Each change runs under the page's busy
state (status.Busy). Click mode (ADZUS results): a left click in a slice view toggles the proposal
under it (`toggleAt`); `clicks.SliceClicks` turns the click into the world RAS point.
"""

from __future__ import annotations

from .clicks import SliceClicks

OVERLAY_OPACITY = 0.5
EMPTY = {"ds_sel_kind": "", "ds_sel_value": 0.0, "ds_sel_min": 0.0, "ds_sel_max": 1.0, "ds_sel_step": 0.01,
         "ds_sel_default": 0.0, "ds_sel_overlay": False, "ds_sel_has_overlay": False, "ds_sel_message": "",
         "ds_sel_can_undo": False, "ds_sel_click": False, "ds_sel_legend": None}
LEGEND_STOPS = 9


def legendOf(evidenceNode, method: str) -> dict | None:
    """The overlay's colour scale as CSS (the colour node sampled across the display window), its
    range and the sentence that says what it shows."""
    from DiffusionSegSlicerLib.EvidenceImport import mapTitle
    from DiffusionSegSlicerLib.PanelRules import evidenceLegend

    display = evidenceNode.GetDisplayNode() if evidenceNode is not None else None
    if display is None:
        return None
    low, high = display.GetWindowLevelMin(), display.GetWindowLevelMax()
    colors = []
    color = display.GetColorNode()
    table = color.GetScalarsToColors() if color is not None else None
    if table is not None:
        start, end = table.GetRange()
        for n in range(LEGEND_STOPS):
            r, g, b = table.GetColor(start + (end - start) * n / (LEGEND_STOPS - 1))
            colors.append(f"rgb({round(255 * r)}, {round(255 * g)}, {round(255 * b)})")
    gradient = f"linear-gradient(to right, {', '.join(colors)})" if colors else "linear-gradient(to right, #000, #fff)"
    return {"title": mapTitle(method, "evidence"), "text": evidenceLegend(method), "gradient": gradient,
            "low": f"{low:.3g}", "high": f"{high:.3g}"}


class SelectionController:
    def __init__(self, state, scene, onChanged=lambda: None, editor=None, busy=None):
        self.state, self.scene = state, scene
        self.onChanged = onChanged   # the page's segment table follows the re-selected segment
        self.busy = busy             # status.Busy (None: run at once, as the tests do)
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

    def _run(self, message: str, work) -> None:
        if self.busy is None:
            work()
        else:
            self.busy.run(message, work)

    def setResult(self, job) -> None:
        """After a successful job: its evidence (overlay off) and, for its own result, the slider."""
        from DiffusionSegSlicerLib.PanelRules import sliderSetup
        from DiffusionSegSlicerLib.SelectionLogic import selectionFor

        self.clear()
        self.logic, self.evidenceNode, message = selectionFor(job)
        update = dict(EMPTY, ds_sel_message=message, ds_sel_has_overlay=self.evidenceNode is not None,
                      ds_sel_legend=legendOf(self.evidenceNode, job.settings.method))
        setup = sliderSetup(self.logic)
        if setup is not None:
            update.update(ds_sel_kind="votes" if setup.clickMode else "probability", ds_sel_value=setup.value,
                          ds_sel_default=setup.value, ds_sel_min=setup.minimum, ds_sel_max=setup.maximum,
                          ds_sel_step=setup.step)
        self.state.update(update)
        self.showOverlay(False)   # also hides the colour bar the import added

    def clear(self) -> None:
        """No result to steer: a job starts, another volume, the result was removed."""
        if self.evidenceNode is not None:
            self.showOverlay(False)
        self.logic = self.evidenceNode = None
        self.clicks.setEnabled(False)
        self.state.update(dict(EMPTY))

    def setValue(self, value) -> None:
        if self.logic is None:
            return
        self._run("Re-selecting…", lambda: self._apply(value))

    def _apply(self, value) -> None:
        from DiffusionSegSlicerLib.SelectionLogic import ProposalSelection, SelectionError

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
        self._run("Undoing…", self._undo)

    def _undo(self) -> None:
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

    def toggleAt(self, ras) -> None:
        """Add or remove the proposal under a world RAS point, in every slice where it carries that
        id (what a click does in click mode)."""
        from DiffusionSegSlicerLib.SelectionLogic import ProposalSelection

        if isinstance(self.logic, ProposalSelection):
            self._run("Re-selecting…", lambda: self._toggle(ras))

    def _toggle(self, ras) -> tuple[int, bool] | None:
        from DiffusionSegSlicerLib.SelectionLogic import SelectionError

        toggled = None
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
        colour bar with it."""
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
