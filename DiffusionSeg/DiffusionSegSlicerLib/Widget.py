"""The panel: binds the .ui widgets to the parameter node and drives one job at a time.

No computation here: settings come from the parameter node (SettingsMapping.py), what buttons
and labels say comes from PanelRules.py, work is done by the logic, and a QTimer polls the running
job (its worker is another process, so the GUI never blocks).

Everything the panel works with is given to it (SlicerNNUnet's widget/logic style): the logic,
the install logic, the message boxes and slice views (Interfaces.py) and its sections — "Learn
from corrections", the server rows, "Evidence and selection" — built by the module file
(DiffusionSeg.py) or by a test with stand-ins (Testing/test_slicer_panel.py).
"""

import qt
import vtk
from slicer.i18n import tr as _

from .JobSettings import DEVICES, DTYPES, SLICE_AXES, JobSettings, storedParameterValue
from .PanelRules import applyBlockers, formatSeconds, promptHints
from .ParameterWidgets import createParameterWidget
from .SettingsMapping import (
    applySettingsToParameterNode,
    settingsFromParameterNode,
    storedMethodParams,
    withMethodParams,
)

SETTINGS_KEY = "DiffusionSeg/LastSettings"
POLL_INTERVAL_MS = 100


class DiffusionSegPanel:
    def __init__(self, ui, logic, installLogic, messages, views, fineTune=None, service=None, selection=None):
        self.ui = ui
        self.logic = logic                # Interfaces.PanelLogic (Logic.DiffusionSegLogic)
        self.installLogic = installLogic  # InstallLogic.InstallLogic
        self.messages = messages          # Interfaces.UserMessages
        self.views = views                # Interfaces.SliceViewer
        self.job = None
        self._parameterNode = None
        self._guiConnection = None
        self._observerTag = None
        self._paramGetters = {}
        self._stageText = ""
        self.fineTune = fineTune          # the "Learn from corrections" section (FineTuneWidget.py)
        self.service = service            # the server rows of Advanced (ServiceWidget.py)
        self.selection = selection        # the "Evidence and selection" section (SelectionWidget.py)
        self._pollTimer = qt.QTimer()
        self._pollTimer.setInterval(POLL_INTERVAL_MS)
        self._pollTimer.timeout.connect(self._poll)
        self._setupWidgets()
        for section in (fineTune, service, selection):
            if section is not None:
                section.attach(self)

    # -- construction (no installs, no downloads, no worker here) ---------------------------------

    def _setupWidgets(self):
        ui = self.ui
        for device in DEVICES:
            ui.deviceComboBox.addItem(device)
        for dtype in DTYPES:
            ui.dtypeComboBox.addItem(dtype)
        for axis in SLICE_AXES:
            ui.axisComboBox.addItem(axis)
        for name, label in self.logic.intensityPresets().items():
            ui.intensityComboBox.addItem(label, name)
        ui.intensityComboBox.currentIndexChanged.connect(
            lambda *_args: self._setField("intensity", ui.intensityComboBox.currentData or "auto"))
        for name, info in self.logic.methods.items():
            ui.methodComboBox.addItem(info.label, name)
        if not self.logic.methods:
            ui.methodComboBox.addItem(_("No method found: check the DiffusionSegLib installation"), "")
        ui.methodComboBox.currentIndexChanged.connect(self.onMethodChanged)
        ui.modelPathLineEdit.currentPathChanged.connect(lambda path: self._setField("model", path))
        # the worker Python is a per-user setting, never stored in the scene (WorkerSettings.py)
        ui.pythonInterpreterPathLineEdit.currentPath = self.logic.workerSettings.chosenPython()
        ui.pythonInterpreterPathLineEdit.currentPathChanged.connect(self.logic.workerSettings.choosePython)
        ui.applyButton.clicked.connect(self.onApplyButton)
        # Slicer's QTextEdit connector binds the plain text to `prompt`; one segment per line
        # (as VoxTell's panel), ';' also separates (JobSettings.splitPrompts).
        ui.promptTextEdit.toolTip = _("What to segment, one prompt per line (or separated by ';'): each prompt "
                                      "becomes one segment; where they overlap, the first listed wins.")
        ui.checkInterpreterButton.clicked.connect(self.onCheckInterpreter)
        ui.progressBar.hide()

    def cleanup(self):
        self.cancelJob()
        for section in (self.fineTune, self.service, self.selection):
            if section is not None:
                section.cleanup()
        self._pollTimer.stop()
        self.setParameterNode(None)

    # -- parameter node ------------------------------------------------------------------------

    def setParameterNode(self, parameterNode):
        if self._parameterNode is not None:
            if self._guiConnection is not None:
                self._parameterNode.disconnectGui(self._guiConnection)
            self._parameterNode.RemoveObserver(self._observerTag)
            self._guiConnection = self._observerTag = None
        self._parameterNode = parameterNode
        if parameterNode is None:
            return
        if not parameterNode.method:
            applySettingsToParameterNode(self._rememberedSettings(), parameterNode)
        if parameterNode.method not in self.logic.methods and self.logic.methods:
            parameterNode.method = next(iter(self.logic.methods))
        self._guiConnection = parameterNode.connectGui(self.ui)
        self._observerTag = parameterNode.AddObserver(
            vtk.vtkCommand.ModifiedEvent, lambda caller, event: self.updateApplyButton())
        index = self.ui.methodComboBox.findData(parameterNode.method)
        self.ui.methodComboBox.setCurrentIndex(max(index, 0))
        self.ui.intensityComboBox.setCurrentIndex(max(self.ui.intensityComboBox.findData(parameterNode.intensity), 0))
        self.ui.modelPathLineEdit.currentPath = parameterNode.model
        self.onMethodChanged()

    def parameterNode(self):
        return self._parameterNode

    def _setField(self, name, value):
        if self._parameterNode is not None:
            setattr(self._parameterNode, name, value)

    @staticmethod
    def _rememberedSettings():
        return JobSettings.fromJson(str(qt.QSettings().value(SETTINGS_KEY, "{}")))

    # -- method and its parameters -------------------------------------------------------------

    def currentMethodInfo(self):
        return self.logic.methods.get(self.ui.methodComboBox.currentData or "")

    def onMethodChanged(self, *_args):
        info = self.currentMethodInfo()
        if self._parameterNode is not None and info is not None:
            self._parameterNode.method = info.name
        ui = self.ui
        ui.methodDescriptionLabel.text = info.description if info else ""
        hints = promptHints(info, self.logic.importer.terminology.names())
        ui.promptTextEdit.enabled = hints.enabled
        ui.promptExamplesLabel.text = hints.examples
        ui.promptExamplesLabel.toolTip = hints.terms
        if info is not None:
            ui.modelPathLineEdit.comboBox().lineEdit().placeholderText = hints.modelPlaceholder
        self._rebuildParameterWidgets(info)
        self.updateApplyButton()

    def _rebuildParameterWidgets(self, info):
        layout = self.ui.methodParametersGroupBox.layout()
        while layout.count():
            item = layout.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        self._paramGetters = {}
        stored = self._storedMethodParams().get(info.name, {}) if info else {}
        for param in (p.to_dict() for p in (info.params if info else ())):
            widget, getter = createParameterWidget(param, storedParameterValue(param, stored), self._saveMethodParams)
            self._paramGetters[param["name"]] = getter
            layout.addRow(param["label"] + ":", widget)
        self.ui.methodParametersGroupBox.visible = bool(self._paramGetters)

    def _storedMethodParams(self):
        return storedMethodParams(self._parameterNode.methodParamsJson) if self._parameterNode else {}

    def _saveMethodParams(self):
        info = self.currentMethodInfo()
        if self._parameterNode is None or info is None:
            return
        values = {name: getter() for name, getter in self._paramGetters.items()}
        self._parameterNode.methodParamsJson = withMethodParams(self._parameterNode.methodParamsJson, info.name, values)

    # -- apply / cancel --------------------------------------------------------------------------

    def isSegmenting(self):
        return self.job is not None and self.job.isRunning()

    def selectMethodAndModel(self, method, model):
        """Switch the panel to `method` with `model` (e.g. a freshly fine-tuned checkpoint)."""
        index = self.ui.methodComboBox.findData(method)
        if index >= 0:
            self.ui.methodComboBox.setCurrentIndex(index)
        self.ui.modelPathLineEdit.currentPath = model
        self._setField("model", model)

    def updateApplyButton(self):
        if self.fineTune is not None:
            self.fineTune.updateButton()
        button = self.ui.applyButton
        if self.job is not None and self.job.isRunning():
            button.text, button.enabled = _("Cancel"), True
            button.toolTip = _("Stop the worker; nothing is added to the scene.")
            return
        button.text = _("Apply")
        reasons = applyBlockers(self._parameterNode, self.currentMethodInfo(),
                                self.fineTune is not None and self.fineTune.isRunning())
        button.enabled = not reasons
        button.toolTip = " ".join(reasons) or _("Run the segmentation in a background process.")

    def currentSettings(self):
        self._saveMethodParams()
        settings = settingsFromParameterNode(self._parameterNode, self._storedMethodParams().get(
            self._parameterNode.method, {}))
        return settings

    def onApplyButton(self):
        if self.job is not None and self.job.isRunning():
            self.cancelJob()
            return
        self.job = None
        try:
            # errorsShown shows the message and re-raises (the console keeps the trace).
            with self.messages.errorsShown(_("DiffusionSeg could not start."), busy=True):
                self._startJob()
        finally:
            if self.job is None:  # it did not start: the error was shown, nothing changed
                self.ui.progressBar.hide()
                self.ui.statusLabel.text = ""
            self.updateApplyButton()

    def ensureDependencies(self, pythonInterpreter):
        """Install the worker's requirements into Slicer's Python if needed (asks first)."""
        from .InstallLogic import InstallError

        try:
            self.installLogic.ensureDependencies(self.logic.launcher(JobSettings(pythonInterpreter=pythonInterpreter)))
        except InstallError as error:
            if error.restartRequired and self.messages.askYesNo(str(error) + "\n\n" + _("Restart Slicer now?")):
                self.messages.restartApplication()
            raise

    def _startJob(self):
        node = self._parameterNode
        settings = self.currentSettings()
        self.ensureDependencies(settings.pythonInterpreter)
        job = self.logic.createJob(settings, node.inputVolume, node.roi, node.outputSegmentation)
        job.progress.connect(self.onJobProgress)
        job.log.connect(self.onJobLog)
        job.finished.connect(self.onJobFinished)
        self.ui.logTextEdit.clear()
        self.ui.progressBar.setRange(0, 0)
        self.ui.progressBar.show()
        self._stageText = ""
        job.start()
        self.job = job
        qt.QSettings().setValue(SETTINGS_KEY, settings.toJson())
        self.setInputsEnabled(False)
        self._showStatus()
        self._pollTimer.start()

    def cancelJob(self):
        if self.job is not None and self.job.isRunning():
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
            self.messages.showError(_("DiffusionSeg failed: {error}").format(error=exc))
        if running:
            self._showStatus()
        else:
            self._pollTimer.stop()
            self.setInputsEnabled(True)
            self.updateApplyButton()

    def setInputsEnabled(self, enabled):
        for name in ("inputsCollapsibleButton", "outputsCollapsibleButton", "advancedCollapsibleButton"):
            getattr(self.ui, name).enabled = enabled

    # -- job signals -----------------------------------------------------------------------------

    def onJobProgress(self, stage, done, total, elapsed):
        self.ui.progressBar.setRange(0, max(total, 1))
        self.ui.progressBar.setValue(min(done, max(total, 1)))
        self._stageText = _("{stage}: {done}/{total}").format(stage=stage, done=done, total=total)
        self._showStatus()

    def _showStatus(self):
        """Stage and elapsed time, refreshed on every poll so the clock runs between events."""
        if self.job is not None:
            self.ui.statusLabel.text = _("{stage} — {elapsed}").format(
                stage=self._stageText or _("Starting the worker…"), elapsed=formatSeconds(self.job.elapsed))

    def onJobLog(self, level, message):
        if level == "debug":
            return
        prefix = "" if level == "info" else f"[{level}] "
        self.ui.logTextEdit.appendPlainText(prefix + message)

    def onJobFinished(self, job):
        self.ui.progressBar.hide()
        elapsed = formatSeconds(job.elapsed)
        if job.state == job.SUCCEEDED:
            count = len(job.segmentIds)
            self.ui.statusLabel.text = _("Done: {count} segment(s) in {elapsed}.").format(count=count, elapsed=elapsed)
            if job.warnings:  # the worker's own warning (empty or whole-tissue result) in the message area
                self.ui.statusLabel.text += " " + _("Warning: {message}").format(message=job.warnings[-1])
            if job.segmentationNode is not None:
                self.views.showBackground(job.inputVolumeNode)
                job.segmentationNode.GetDisplayNode().SetVisibility(True)
            if self.selection is not None:
                self.selection.setResult(job)
        elif job.state == job.CANCELLED:
            self.ui.statusLabel.text = _("Cancelled after {elapsed}; the scene was not changed.").format(elapsed=elapsed)
        else:
            self.ui.statusLabel.text = _("Failed after {elapsed}.").format(elapsed=elapsed)
            self.messages.showError(_("DiffusionSeg failed: {message}").format(message=job.error.message),
                                    job.error.hint or "")

    def onCheckInterpreter(self):
        with self.messages.errorsShown(_("The worker Python cannot run DiffusionSeg."), busy=True):
            settings = self.currentSettings()
            description = self.logic.launcher(settings).checkInterpreter()
            self.ui.logTextEdit.appendPlainText(description)
            self.messages.showInfo(description, _("Worker Python"))
