"""The "Evidence and selection" section of the panel: shows a result's evidence overlay and
steers the result without running the model again (SelectionLogic.py does the work).

ADZUS-style results: a vote-threshold slider that re-selects at once, a "click to add or remove a
region" mode (a click in a slice view toggles the proposal under it) and Undo. SDSeg results: a
probability-threshold slider. The section is built in code and shown only for a result that
carries its evidence. The slice views (overlay, clicks) are reached through the SliceViewer it is
given (Interfaces.py); what the slider does is PanelRules.sliderSetup.
"""

import ctk
import qt
from slicer.i18n import tr as _

from .PanelRules import evidenceLegend, sliderSetup
from .SelectionLogic import ProposalSelection, SelectionError, selectionFor

DEBOUNCE_MS = 60
OVERLAY_OPACITY = 0.5


class SelectionPanel:
    def __init__(self, ui, views, messages):
        self.ui = ui
        self.views = views         # Interfaces.SliceViewer
        self.messages = messages   # Interfaces.UserMessages (the busy cursor)
        self.logic = None          # ProposalSelection or ProbabilityThreshold of the last result
        self.evidenceNode = None
        self._clickObservations = []
        self._pendingValue = None
        self._timer = qt.QTimer()
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self._applyPending)
        self._build()

    # -- construction ------------------------------------------------------------------------------

    def _build(self):
        self.section = ctk.ctkCollapsibleButton()
        self.section.text = _("Evidence and selection")
        self.section.objectName = "selectionCollapsibleButton"
        form = qt.QFormLayout(self.section)
        self.overlayCheckBox = qt.QCheckBox(_("Show the evidence over the image"))
        self.overlayCheckBox.toolTip = _("Colour overlay of why each pixel was chosen, with its colour bar in the "
                                         "views.")
        self.overlayCheckBox.toggled.connect(self.showOverlay)
        form.addRow(self.overlayCheckBox)
        self.legendLabel = qt.QLabel("")
        self.legendLabel.wordWrap = True
        form.addRow(self.legendLabel)
        self.slider = ctk.ctkSliderWidget()
        self.slider.singleStep = 0.05
        self.slider.decimals = 2
        self.slider.valueChanged.connect(self._onSliderChanged)
        self.sliderLabel = qt.QLabel(_("Vote threshold:"))
        form.addRow(self.sliderLabel, self.slider)
        self.clickButton = qt.QPushButton(_("Click to add or remove a region"))
        self.clickButton.checkable = True
        self.clickButton.toolTip = _("While pressed, a click in a slice view adds the region under it to the "
                                     "result, or removes it, in every slice where it continues.")
        self.clickButton.toggled.connect(self.setClickMode)
        self.undoButton = qt.QPushButton(_("Undo"))
        self.undoButton.clicked.connect(self.undo)
        buttons = qt.QHBoxLayout()
        buttons.addWidget(self.clickButton)
        buttons.addWidget(self.undoButton)
        form.addRow(buttons)
        self.statusLabel = qt.QLabel("")
        self.statusLabel.wordWrap = True
        form.addRow(self.statusLabel)
        anchor = self.ui.outputsCollapsibleButton
        layout = anchor.parentWidget().layout()
        layout.insertWidget(layout.indexOf(anchor) + 1, self.section)
        self.section.visible = False

    def attach(self, panel):
        """The section needs nothing of the panel; the panel calls setResult after each job."""

    def cleanup(self):
        self.setClickMode(False)
        self._timer.stop()

    # -- a new result ------------------------------------------------------------------------------

    def setResult(self, job):
        """Called when a job succeeded: steer its result if it carries its evidence. The overlay
        starts off (the result is what a reader looks at first); the legend says what it shows."""
        self.clear()
        self.logic, self.evidenceNode, message = selectionFor(job)
        self.statusLabel.text = message
        self.section.visible = self.logic is not None or self.evidenceNode is not None
        self._configureSlider()
        self.overlayCheckBox.enabled = self.evidenceNode is not None
        self.legendLabel.text = evidenceLegend(job.settings.method) if self.evidenceNode is not None else ""
        self.showOverlay(False)   # also hides the colour bar the import added
        self._updateButtons()

    def clear(self):
        """No result to steer (a job starts, another volume, the result was removed)."""
        self.setClickMode(False)
        self._timer.stop()
        self._pendingValue = None
        if self.overlayCheckBox.checked:
            self.overlayCheckBox.checked = False     # takes the overlay out of the views
        self.logic = self.evidenceNode = None
        self.statusLabel.text = ""
        self.section.visible = False

    def _configureSlider(self):
        setup = sliderSetup(self.logic)
        self.slider.blockSignals(True)
        if setup is not None:
            self.sliderLabel.text = setup.label
            self.slider.toolTip = setup.toolTip
            self.slider.minimum, self.slider.maximum = setup.minimum, setup.maximum
            self.slider.singleStep = setup.step
            self.slider.value = setup.value
        self.slider.blockSignals(False)
        self.slider.enabled = setup is not None
        self.clickButton.visible = setup is not None and setup.clickMode

    def _updateButtons(self):
        self.undoButton.enabled = self.logic is not None and self.logic.canUndo()

    # -- overlay -----------------------------------------------------------------------------------

    def showOverlay(self, show):
        if self.evidenceNode is None or self.evidenceNode.GetScene() is None:
            return
        self.views.showForeground(self.evidenceNode if show else None, OVERLAY_OPACITY)
        for index in range(self.evidenceNode.GetNumberOfDisplayNodes()):
            display = self.evidenceNode.GetNthDisplayNode(index)
            if display is not None and display.IsA("vtkMRMLColorLegendDisplayNode"):
                display.SetVisibility(bool(show))

    # -- changes -----------------------------------------------------------------------------------

    def _onSliderChanged(self, value):
        # Dragging emits many values; apply the latest once the slider rests for a moment.
        self._pendingValue = float(value)
        self._timer.start()

    def _applyPending(self):
        if self.logic is None or self._pendingValue is None:
            return
        value, self._pendingValue = self._pendingValue, None
        if isinstance(self.logic, ProposalSelection):
            self._run(lambda: self.logic.setVoteThreshold(value))
        else:
            self._run(lambda: self.logic.setThreshold(value))

    def _run(self, change):
        self.statusLabel.text = _("Re-selecting…")
        try:
            with self.messages.busy(self.statusLabel.text):
                changed = change()
            self.statusLabel.text = _("{count} voxel(s) changed.").format(count=changed)
        except SelectionError as error:
            self.statusLabel.text = str(error)
            self._syncSlider()
        self._updateButtons()

    def _syncSlider(self):
        self.slider.blockSignals(True)
        self.slider.value = (self.logic.voteThreshold if isinstance(self.logic, ProposalSelection)
                             else self.logic.threshold)
        self.slider.blockSignals(False)

    def undo(self):
        if self.logic is None:
            return
        try:
            if self.logic.undo():
                self.statusLabel.text = _("Undone.")
        except SelectionError as error:
            self.statusLabel.text = str(error)
        self._syncSlider()
        self._updateButtons()

    def toggleAt(self, ras):
        """Toggle the proposal under a world RAS point (what a click does)."""
        if not isinstance(self.logic, ProposalSelection):
            return None
        self.statusLabel.text = _("Re-selecting…")
        try:
            with self.messages.busy(self.statusLabel.text):
                toggled = self.logic.toggleAtRas(ras)
        except SelectionError as error:
            self.statusLabel.text = str(error)
            return None
        if toggled is None:
            self.statusLabel.text = _("No region under that point.")
        else:
            pid, added = toggled
            message = (_("Region {id} added: {count} voxel(s) changed.") if added
                       else _("Region {id} removed: {count} voxel(s) changed."))
            self.statusLabel.text = message.format(id=pid, count=self.logic.lastChangedVoxels)
        self._updateButtons()
        return toggled

    # -- click mode ---------------------------------------------------------------------------------

    def setClickMode(self, enabled):
        for remove in self._clickObservations:
            remove()
        self._clickObservations = []
        if enabled and isinstance(self.logic, ProposalSelection):
            self._clickObservations = list(self.views.observeLeftClicks(self.toggleAt))
        if self.clickButton.checked != bool(self._clickObservations):
            self.clickButton.blockSignals(True)
            self.clickButton.checked = bool(self._clickObservations)
            self.clickButton.blockSignals(False)
