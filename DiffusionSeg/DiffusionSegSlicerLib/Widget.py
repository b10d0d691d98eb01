"""The panel: binds the .ui widgets to the parameter node and drives one job at a time.

No computation here: settings come from the parameter node (SettingsMapping.py), what buttons
and labels say comes from PanelRules.py, what a job means to a person from JobStatus.py (shared
with the web app), work is done by the logic, and a QTimer polls the running job (its worker is
another process, so the GUI never blocks). While it runs, the finished slices appear as a preview
in the slice views (the job's `partial` signal); when it ends the preview gives way to the result.

Everything the panel works with is given to it (SlicerNNUnet's widget/logic style): the logic,
the install logic, the message boxes and slice views (Interfaces.py) and its sections — "Learn
from corrections", the server rows, "Evidence and selection" — built by the module file
(DiffusionSeg.py) or by a test with stand-ins (Testing/test_slicer_panel.py).
"""

import qt
import vtk
from slicer.i18n import tr as _

from .JobSettings import DEVICES, DTYPES, SLICE_AXES, JobSettings, splitPrompts
from .JobStatus import FAILED, JobStatus
from .PanelRules import applyBlockers, modelNote, promptHints
from .ParameterWidgets import MethodParameterForm
from .SettingsMapping import (
    applySettingsToParameterNode,
    settingsFromParameterNode,
    storedMethodParams,
    withMethodParams,
)
from .StatusDisplay import StatusDisplay

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
        self.lastResult = None            # the last job that succeeded (Remove result, Edit)
        self.status = JobStatus("slicer")
        self.display = StatusDisplay(ui)
        self.status.changed.connect(lambda status: self.display.show(status.view(), status.logLines))
        self._parameterNode = None
        self._guiConnection = None
        self._observerTag = None
        self._inputVolume = None
        self.fineTune = fineTune          # the "Learn from corrections" section (FineTuneWidget.py)
        self.service = service            # the server rows of Advanced (ServiceWidget.py)
        self.selection = selection        # the "Evidence and selection" section (SelectionWidget.py)
        self.parameters = MethodParameterForm(ui.methodParametersGroupBox, self._saveMethodParams)
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
        ui.modelPathLineEdit.currentPathChanged.connect(self._onModelChanged)
        # the worker Python is a per-user setting, never stored in the scene (WorkerSettings.py)
        ui.pythonInterpreterPathLineEdit.currentPath = self.logic.workerSettings.chosenPython()
        ui.pythonInterpreterPathLineEdit.currentPathChanged.connect(self.logic.workerSettings.choosePython)
        ui.applyButton.clicked.connect(self.onApplyButton)
        # Slicer's QTextEdit connector binds the plain text to `prompt`; one segment per line
        # (as VoxTell's panel), ';' also separates (JobSettings.splitPrompts).
        ui.promptTextEdit.toolTip = _("What to segment, one prompt per line (or separated by ';'): each prompt "
                                      "becomes one segment; where they overlap, the first listed wins.")
        ui.checkInterpreterButton.clicked.connect(self.onCheckInterpreter)
        ui.removeResultButton.clicked.connect(self.onRemoveResult)
        ui.editResultButton.clicked.connect(self.onEditResult)
        ui.resultButtonsWidget.hide()

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
        self._observerTag = parameterNode.AddObserver(vtk.vtkCommand.ModifiedEvent, self._onNodeModified)
        self._inputVolume = parameterNode.inputVolume
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

    def _onNodeModified(self, caller=None, event=None):
        node = self._parameterNode
        if node is not None and node.inputVolume is not self._inputVolume:
            self._inputVolume = node.inputVolume
            if not self.isSegmenting():   # another volume: the last job's messages and overlays no longer apply
                self.clearResultState()
        self.updateApplyButton()

    def clearResultState(self):
        """Status, warnings, evidence overlay and selection of the last job: gone."""
        self.status.reset()
        self.lastResult = None
        self.ui.resultButtonsWidget.hide()
        if self.selection is not None:
            self.selection.clear()

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
        self.parameters.rebuild(info, self._storedMethodParams().get(info.name, {}) if info else {})
        self._onModelChanged(ui.modelPathLineEdit.currentPath)

    def _onModelChanged(self, path):
        self._setField("model", path)
        self.ui.modelNoteLabel.text = modelNote(self.currentMethodInfo(), path or "")
        self.ui.modelNoteLabel.visible = bool(self.ui.modelNoteLabel.text)
        self.updateApplyButton()

    def _storedMethodParams(self):
        return storedMethodParams(self._parameterNode.methodParamsJson) if self._parameterNode else {}

    def _saveMethodParams(self):
        info = self.currentMethodInfo()
        if self._parameterNode is None or info is None:
            return
        self._parameterNode.methodParamsJson = withMethodParams(self._parameterNode.methodParamsJson, info.name,
                                                                self.parameters.values())

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
        if self.isSegmenting():
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
        return settingsFromParameterNode(self._parameterNode,
                                         self._storedMethodParams().get(self._parameterNode.method, {}))

    def onApplyButton(self):
        if self.isSegmenting():
            self.cancelJob()
            return
        self.job = None
        try:
            # errorsShown shows the message and re-raises (the console keeps the trace).
            with self.messages.errorsShown(_("DiffusionSeg could not start."), busy=True):
                self._startJob()
        except Exception as error:
            self.status.startFailed(_("DiffusionSeg could not start: {error}").format(error=error))
            raise
        finally:
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
        self.clearResultState()
        self.status.start(job, len(splitPrompts(settings.prompt)) or 1)
        job.finished.connect(self.onJobFinished)
        job.partial.connect(self.onPartialResult)
        job.start()
        self.job = job
        qt.QSettings().setValue(SETTINGS_KEY, settings.toJson())
        self.setInputsEnabled(False)
        self._pollTimer.start()

    def cancelJob(self):
        if self.isSegmenting():
            self.job.cancel()
            self.status.cancelling()

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
            self.status.fail(_("DiffusionSeg failed: {error}").format(error=exc))
            self.messages.showError(_("DiffusionSeg failed: {error}").format(error=exc))
        if running:
            self.display.show(self.status.view(), self.status.logLines)   # the clock runs between events
        else:
            self._pollTimer.stop()
            self.setInputsEnabled(True)
            self.updateApplyButton()

    def setInputsEnabled(self, enabled):
        for name in ("inputsCollapsibleButton", "outputsCollapsibleButton", "advancedCollapsibleButton"):
            getattr(self.ui, name).enabled = enabled

    # -- job signals -----------------------------------------------------------------------------

    def onJobLog(self, level, message):
        """A log line from outside the job (the warm server starting, fine-tuning)."""
        self.status.log(level, message)
        self.display.showLog(self.status.logLines)

    def onPartialResult(self, previewNode, slicesDone):
        """The finished slices so far, shown as the views' label layer over the input."""
        if slicesDone and previewNode is not None and self.job is not None:
            self.views.showLabel(previewNode, self.job.inputVolumeNode)

    def onJobFinished(self, job):
        if job.state == job.SUCCEEDED and job.segmentIds:
            self.views.showBackground(job.inputVolumeNode)
            job.segmentationNode.GetDisplayNode().SetVisibility(True)
            self.lastResult = job
            self.ui.resultButtonsWidget.show()
            if self.selection is not None:
                self.selection.setResult(job)
        elif job.state == job.SUCCEEDED and job.evidenceNodes and self.selection is not None:
            self.selection.setResult(job)    # nothing found: the evidence says why (overlay off)
        view = self.status.view()
        if view.state == FAILED:
            details = "\n".join(self.status.logLines[-12:])
            self.messages.showError(f"{view.error}\n\n{view.hint}".strip(), details)

    # -- the last result -------------------------------------------------------------------------

    def onRemoveResult(self):
        job = self.lastResult
        if job is None or not job.hasResult():
            self.clearResultState()
            return
        if not self.messages.askYesNo(_("Remove the result of the last job: {count} segment(s) in '{node}' and its "
                                        "evidence volumes? Other segments are not touched.").format(
                                            count=len(job.segmentIds), node=job.segmentationNode.GetName())):
            return
        if self.selection is not None:
            self.selection.clear()
        removed = job.removeResult()
        self.lastResult = None
        self.ui.resultButtonsWidget.hide()
        self.status.note(_("Removed the last result ({count} segment(s) and its evidence).").format(count=removed))

    def onEditResult(self):
        job = self.lastResult
        if job is None or not job.hasResult():
            return
        if self.selection is not None:
            self.selection.setClickMode(False)   # the editor's tools take the clicks now
        self.views.editSegments(job.segmentationNode, job.inputVolumeNode, job.segmentIds[0])

    def onCheckInterpreter(self):
        with self.messages.errorsShown(_("The worker Python cannot run DiffusionSeg."), busy=True):
            settings = self.currentSettings()
            description = self.logic.launcher(settings).checkInterpreter()
            self.onJobLog("info", description)
            self.messages.showInfo(description, _("Worker Python"))
