"""The "Learn from corrections (SDSeg)" section of the panel: binds its widgets to a
FineTuneJob (FineTuneLogic.py does the work) and shares the panel's progress bar, status and log.

The input volume, device and worker Python are the panel's own settings; one job runs at a time
(segmentation or fine-tune), so each button is disabled while the other kind of job runs. Built
outside the panel and given to it, which then attaches itself (`attach`).
"""

import os

import qt
from slicer.i18n import tr as _

from .FineTuneLogic import FineTuneSettings, checkSdsegCheckpoint
from .PanelRules import fineTuneBlockers

SETTINGS_KEY = "DiffusionSeg/FineTune"
POLL_INTERVAL_MS = 200
SDSEG_METHOD = "sdseg"


class FineTunePanel:
    def __init__(self, ui, logic, messages):
        self.ui = ui
        self.logic = logic        # Interfaces.PanelLogic
        self.messages = messages  # Interfaces.UserMessages
        self.panel = None         # Widget.DiffusionSegPanel (settings, log, install), set by attach()
        self.job = None
        self._pollTimer = qt.QTimer()
        self._pollTimer.setInterval(POLL_INTERVAL_MS)
        self._pollTimer.timeout.connect(self._poll)
        self._setupWidgets()

    def attach(self, panel):
        self.panel = panel
        self.updateButton()

    def _setupWidgets(self):
        ui = self.ui
        remembered = qt.QSettings()
        ui.fineTuneCheckpointPathLineEdit.currentPath = str(remembered.value(SETTINGS_KEY + "/checkpoint", ""))
        ui.fineTuneMinutesSpinBox.value = float(remembered.value(SETTINGS_KEY + "/minutes", 5.0))
        ui.fineTuneStepsSpinBox.value = int(remembered.value(SETTINGS_KEY + "/steps", 200))
        ui.correctedSegmentationSelector.currentNodeChanged.connect(lambda *_args: self.updateButton())
        ui.fineTuneCheckpointPathLineEdit.currentPathChanged.connect(lambda *_args: self.updateButton())
        ui.fineTuneOutputPathLineEdit.currentPathChanged.connect(lambda *_args: self.updateButton())
        ui.fineTuneButton.clicked.connect(self.onFineTuneButton)

    def cleanup(self):
        self.cancelJob()
        self._pollTimer.stop()

    def isRunning(self):
        return self.job is not None and self.job.isRunning()

    # -- button ----------------------------------------------------------------------------------

    def updateButton(self):
        ui, button = self.ui, self.ui.fineTuneButton
        if self.isRunning():
            button.text, button.enabled = _("Cancel fine-tuning"), True
            button.toolTip = _("Stop the training; no checkpoint is written.")
            return
        button.text = _("Fine-tune")
        if self.panel is None:
            button.enabled = False
            return
        node = self.panel.parameterNode()
        reasons = fineTuneBlockers(self.panel.isSegmenting(), node is not None and node.inputVolume is not None,
                                   ui.correctedSegmentationSelector.currentNode() is not None,
                                   ui.fineTuneCheckpointPathLineEdit.currentPath,
                                   ui.fineTuneOutputPathLineEdit.currentPath)
        button.enabled = not reasons
        button.toolTip = " ".join(reasons) or _(
            "Fine-tune the checkpoint on the input volume and the corrected segmentation in a background process.")

    def currentSettings(self):
        ui = self.ui
        segmentation = self.panel.currentSettings()   # device and worker Python of the panel
        return FineTuneSettings(checkpoint=ui.fineTuneCheckpointPathLineEdit.currentPath.strip(),
                                output=ui.fineTuneOutputPathLineEdit.currentPath.strip(),
                                minutes=float(ui.fineTuneMinutesSpinBox.value),
                                steps=int(ui.fineTuneStepsSpinBox.value),
                                device=segmentation.device, pythonInterpreter=segmentation.pythonInterpreter,
                                seed=segmentation.seed)

    def onFineTuneButton(self):
        if self.isRunning():
            self.cancelJob()
            return
        self.job = None
        try:
            with self.messages.errorsShown(_("Fine-tuning could not start."), busy=True):
                self._startJob()
        finally:
            if self.job is None:
                self.ui.progressBar.hide()
                self.ui.statusLabel.text = ""
            self.updateButton()
            self.panel.updateApplyButton()

    def _startJob(self):
        settings = self.currentSettings()
        self.panel.ensureDependencies(settings.pythonInterpreter)
        job = self.logic.createFineTuneJob(settings, self.panel.parameterNode().inputVolume,
                                           self.ui.correctedSegmentationSelector.currentNode())
        job.progress.connect(self.onJobProgress)
        job.log.connect(self.panel.onJobLog)
        job.finished.connect(self.onJobFinished)
        self.panel.clearResultState()   # the last segmentation's messages and overlays
        self.ui.progressBar.setRange(0, 0)
        self.ui.progressBar.show()
        self.ui.statusLabel.text = _("Exporting the corrected segmentation…")
        job.start()
        self.job = job
        remembered = qt.QSettings()
        remembered.setValue(SETTINGS_KEY + "/checkpoint", settings.checkpoint)
        remembered.setValue(SETTINGS_KEY + "/minutes", settings.minutes)
        remembered.setValue(SETTINGS_KEY + "/steps", settings.steps)
        self.panel.setInputsEnabled(False)
        self._setFieldsEnabled(False)
        self.ui.statusLabel.text = _("Fine-tuning: starting the worker…")
        self._pollTimer.start()

    def cancelJob(self):
        if self.isRunning():
            self.job.cancel()
            self.ui.statusLabel.text = _("Cancelling…")

    def _poll(self):
        if self.job is None:
            self._pollTimer.stop()
            return
        try:
            running = self.job.processEvents()
        except Exception as exc:  # never let an exception escape a timer slot
            running = False
            self.job.cancel()
            self.job = None
            self.ui.progressBar.hide()
            self.messages.showError(_("Fine-tuning failed: {error}").format(error=exc))
        if not running:
            self._pollTimer.stop()
            self.panel.setInputsEnabled(True)
            self._setFieldsEnabled(True)
            self.updateButton()
            self.panel.updateApplyButton()

    def _setFieldsEnabled(self, enabled):
        for name in ("correctedSegmentationSelector", "fineTuneCheckpointPathLineEdit", "fineTuneOutputPathLineEdit",
                     "fineTuneMinutesSpinBox", "fineTuneStepsSpinBox"):
            getattr(self.ui, name).enabled = enabled

    # -- job signals -----------------------------------------------------------------------------

    def onJobProgress(self, stage, done, total, elapsed):
        self.ui.progressBar.setRange(0, max(total, 1))
        self.ui.progressBar.setValue(min(done, max(total, 1)))
        self.ui.statusLabel.text = _("Fine-tuning {stage}: {done}/{total}").format(stage=stage, done=done, total=total)

    def onJobFinished(self, job):
        self.ui.progressBar.hide()
        if job.state == job.SUCCEEDED:
            self.ui.statusLabel.text = _("Fine-tuned checkpoint written to {path}.").format(path=job.outputPath)
            self.ui.fineTuneOutputPathLineEdit.currentPath = ""   # the next run needs a new folder
            warned = "".join("\n\n" + warning for warning in job.warnings)   # e.g. the run fell short of its check
            if self.messages.askYesNo(
                    _("The fine-tuned checkpoint was written to {path}.").format(path=job.outputPath) + warned
                    + "\n\n" + _("Use it as the SDSeg model now?")):
                self.useAsSdsegModel(job.outputPath)
        elif job.state == job.CANCELLED:
            self.ui.statusLabel.text = _("Fine-tuning cancelled; no checkpoint was written.")
        else:
            self.ui.statusLabel.text = _("Fine-tuning failed.")
            self.messages.showError(_("Fine-tuning failed: {message}").format(message=job.error.message),
                                    job.error.hint or "")

    def useAsSdsegModel(self, path):
        """Select SDSeg with the new checkpoint as its model (and as the next starting point)."""
        checkSdsegCheckpoint(path)
        self.ui.fineTuneCheckpointPathLineEdit.currentPath = path
        self.panel.selectMethodAndModel(SDSEG_METHOD, os.path.abspath(path))
