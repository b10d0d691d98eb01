"""The Slicer panel's widget code, run on stand-in `qt`/`ctk` widgets built from its .ui
(Testing/qt_standin.py, slicer_panel_standin.py) with mock logic (SlicerNNUnet's widget tests),
with the real logic and a fake worker, and with a real steerable result on slicer-core's scene.

The stand-ins follow PythonQt: properties set as attributes, signals fired by property changes,
slots called with the arguments they take. What is checked is the panel's behaviour: what it asks
the logic for, what the buttons and labels say, what message boxes it shows and which volumes the
slice views show.
"""

from __future__ import annotations

import json
import time
from types import SimpleNamespace
from unittest.mock import MagicMock

import numpy as np
import pytest
import slicer_test_utils  # noqa: F401  (puts the module folder on sys.path)
from DiffusionSegSlicerLib.Logic import intensityPresets
from DiffusionSegSlicerLib.WorkerJob import JobFailed
from slicer_panel_mocks import MockJob, MockLogic
from slicer_panel_standin import (
    RecordingMessages,
    RecordingSliceViewer,
    StandInParameterNode,
    buildUi,
    installStandIns,
)
from slicer_test_utils import addVolume, newScene


@pytest.fixture
def gui(monkeypatch):
    return installStandIns(monkeypatch)


def buildPanel(gui, logic=None, messages=None, views=None):
    """What DiffusionSeg.py's setup does, with stand-ins."""
    ui, logic = buildUi(), logic or MockLogic()
    messages, views = messages or RecordingMessages(), views or RecordingSliceViewer()
    installLogic = MagicMock()
    panel = gui.Widget.DiffusionSegPanel(
        ui, logic, installLogic, messages, views, fineTune=gui.FineTuneWidget.FineTunePanel(ui, logic, messages),
        service=gui.ServiceWidget.ServicePanel(ui, logic), selection=gui.SelectionWidget.SelectionPanel(ui, views, messages))
    return SimpleNamespace(panel=panel, ui=ui, logic=logic, messages=messages, views=views, install=installLogic)


def withVolume(setup, scene=None):
    scene = scene or newScene()
    volume = addVolume(scene, np.full((3, 8, 8), 100, np.int16), name="CT")
    node = StandInParameterNode()
    setup.panel.setParameterNode(node)
    setup.ui.inputVolumeSelector.setCurrentNode(volume)
    return node, volume


# -- the panel with mock logic ----------------------------------------------------------------------

def test_panel_is_built_from_the_backend_metadata(gui):
    setup = buildPanel(gui)
    ui, logic = setup.ui, setup.logic
    assert [ui.methodComboBox.itemData(i) for i in range(ui.methodComboBox.count)] == list(logic.methods)
    assert ui.intensityComboBox.count == len(intensityPresets()) and ui.deviceComboBox.currentText == "auto"
    assert not ui.applyButton.enabled and not ui.progressBar.visible
    node = StandInParameterNode()
    setup.panel.setParameterNode(node)
    assert node.method == "adzus"   # first method, written back into the node
    form = ui.methodParametersGroupBox.layout()
    assert form.count() == len(logic.methods["adzus"].params) and ui.methodParametersGroupBox.visible
    # editing a parameter widget stores it under its method; another method keeps its own values
    spin = next(w for w in form.widgets() if w.objectName == "methodParameter_vote_threshold")
    spin.value = 1.25
    assert json.loads(node.methodParamsJson)["adzus"]["vote_threshold"] == 1.25
    ui.methodComboBox.setCurrentIndex(ui.methodComboBox.findData("sdseg"))
    assert node.method == "sdseg" and all(w.deleted for w in [spin])
    assert ui.modelPathLineEdit.comboBox().lineEdit().placeholderText == "Trained checkpoint folder (required)"
    ui.methodComboBox.setCurrentIndex(ui.methodComboBox.findData("adzus"))
    spin = next(w for w in ui.methodParametersGroupBox.layout().widgets()
                if w.objectName == "methodParameter_vote_threshold")
    assert spin.value == 1.25


def test_apply_button_follows_the_parameter_node(gui):
    setup = buildPanel(gui)
    ui = setup.ui
    node, volume = withVolume(setup)
    assert node.inputVolume is volume and ui.applyButton.enabled    # ADZUS: the prompt is optional
    ui.methodComboBox.setCurrentIndex(ui.methodComboBox.findData("diffugts"))
    assert not ui.applyButton.enabled and ui.applyButton.toolTip == "Type what to segment in the prompt."
    ui.promptTextEdit.plainText = "liver tumour"
    assert node.prompt == "liver tumour" and ui.applyButton.enabled
    setup.panel.setParameterNode(None)   # scene closing: the widgets no longer drive the old node
    ui.promptTextEdit.plainText = "kidney"
    assert node.prompt == "liver tumour"


def test_apply_runs_the_job_and_reports_its_progress_and_result(gui):
    setup = buildPanel(gui)
    ui, panel, logic = setup.ui, setup.panel, setup.logic
    _node, volume = withVolume(setup)
    ui.promptTextEdit.plainText = "liver"
    ui.applyButton.click()
    job = logic.jobs[-1]
    assert job.settings.prompt == "liver" and job.settings.method == "adzus" and job.inputVolumeNode is volume
    setup.install.ensureDependencies.assert_called_once()
    assert ui.applyButton.text == "Cancel" and not ui.inputsCollapsibleButton.enabled and setup.messages.busyDepth == 0
    assert json.loads(gui.Widget.qt.QSettings().value(gui.Widget.SETTINGS_KEY))["prompt"] == "liver"
    assert ui.progressBar.visible and (ui.progressBar.minimum, ui.progressBar.maximum) == (0, 0)   # busy
    # the backend logs its request: it goes to the log, never to the status line
    job.log.emit("info", 'DiffusionSeg job: method adzus, request {"input": "/tmp/x/input.nrrd"}')
    job.progress.emit("load", 0, 1, 1.0)
    assert ui.stageLabel.text == "Loading the model" and ui.stageLabel.visible
    job.progress.emit("segment", 3, 12, 4.0)
    job.progress.emit("inversion", 7, 15, 4.5)
    assert (ui.progressBar.maximum, ui.progressBar.value) == (12, 3) and "slices" in ui.progressBar.format
    assert ui.statusLabel.text.startswith("Segmenting…\n3 of 12 slices · ") and "left" in ui.statusLabel.text
    assert ui.stageLabel.text == "Inverting the slice to the diffusion timestep: 7/15"
    assert "{" not in ui.statusLabel.text and '"input"' in ui.logTextEdit.plainText
    job.log.emit("warning", "Skipping 2 slice(s) without tissue.")
    job.log.emit("warning", "Skipping 2 slice(s) without tissue.")   # the same warning again: shown once
    assert ui.warningLabel.visible and ui.warningLabel.text.count("Skipping") == 1
    preview = volume.GetScene().AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    job.partial.emit(preview, 3)     # the finished slices, as the views' label layer
    assert setup.views.label is preview and setup.views.background is volume
    panel._pollTimer.fire()
    assert panel._pollTimer.isActive()
    panel.selection.setResult = MagicMock(wraps=panel.selection.setResult)
    segmentation = volume.GetScene().AddNewNodeByClass("vtkMRMLSegmentationNode")
    segmentation.CreateDefaultDisplayNodes()
    segmentation.GetDisplayNode().SetVisibility(False)
    segmentation.SetName("CT liver")
    job.finish(job.SUCCEEDED, segmentationNode=segmentation, segmentIds=["a", "b"],
               warnings=["The result covers 97 % of the tissue."])
    assert ui.statusLabel.text.startswith("Done in ") and "2 segment(s) added to 'CT liver'" in ui.statusLabel.text
    assert "97 %" in ui.warningLabel.text and "Skipping" in ui.warningLabel.text and ui.warningLabel.visible
    assert setup.views.background is volume and segmentation.GetDisplayNode().GetVisibility()
    panel.selection.setResult.assert_called_once_with(job)
    assert not ui.progressBar.visible and not ui.stageLabel.visible and ui.resultButtonsWidget.visible
    panel._pollTimer.fire()
    assert not panel._pollTimer.isActive() and ui.inputsCollapsibleButton.enabled and ui.applyButton.text == "Apply"
    assert setup.messages.shown == []
    # a new panel (next Slicer session) starts from the remembered choices
    again = buildPanel(gui)
    fresh = StandInParameterNode()
    again.panel.setParameterNode(fresh)
    assert fresh.prompt == "liver" and again.ui.promptTextEdit.plainText == "liver"


def test_a_new_job_or_another_volume_clears_the_last_results_status(gui):
    setup = buildPanel(gui)
    ui, logic = setup.ui, setup.logic
    node, volume = withVolume(setup)
    ui.applyButton.click()
    job = logic.jobs[-1]
    job.log.emit("warning", "The result is empty: no slice had evidence above the thresholds.")
    job.finish(job.SUCCEEDED)
    setup.panel._pollTimer.fire()
    assert ui.statusLabel.text.startswith("Done in ") and "nothing was found" in ui.statusLabel.text
    assert ui.warningLabel.visible and not ui.resultButtonsWidget.visible
    other = addVolume(volume.GetScene(), np.zeros((3, 8, 8), np.int16), name="MR")
    ui.inputVolumeSelector.setCurrentNode(other)
    assert node.inputVolume is other
    assert ui.statusLabel.text == "" and not ui.warningLabel.visible and ui.logTextEdit.plainText == ""
    ui.applyButton.click()
    logic.jobs[-1].log.emit("warning", "first job's warning")
    ui.applyButton.click()   # cancel
    logic.jobs[-1].finish(MockJob.CANCELLED)
    setup.panel._pollTimer.fire()
    ui.applyButton.click()   # a new job: the last one's warning and log are gone
    assert not ui.warningLabel.visible and "first job" not in ui.logTextEdit.plainText


def test_cancel_and_failure_are_reported(gui):
    setup = buildPanel(gui)
    ui, logic, messages = setup.ui, setup.logic, setup.messages
    withVolume(setup)
    ui.applyButton.click()
    ui.applyButton.click()   # now "Cancel"
    job = logic.jobs[-1]
    assert job.cancelled and ui.statusLabel.text.startswith("Cancelling…") and len(logic.jobs) == 1
    job.finish(job.CANCELLED)
    assert ui.statusLabel.text.startswith("Cancelled after") and "nothing was changed" in ui.statusLabel.text
    assert messages.shown == []
    setup.panel._pollTimer.fire()
    ui.applyButton.click()
    job = logic.jobs[-1]
    job.finish(job.FAILED, error=JobFailed("model_not_found", "Could not reach the Hugging Face hub and "
                                           "'CompVis/stable-diffusion-v1-4' is not in the cache.",
                                           "... and set HF_HUB_OFFLINE=1; or pass a local diffusers folder with --model."))
    assert ui.statusLabel.text.startswith("Failed after") and "not in the cache" in ui.statusLabel.text
    (kind, message, details), = messages.shown
    assert kind == "error" and "not in the cache" in message and "Leave Model empty" in message
    assert "--model" not in message and "--model" in details    # the shell advice stays in the details
    assert "Leave Model empty" in ui.stageLabel.text and "--model" in ui.logTextEdit.plainText


def test_a_job_that_cannot_start_is_shown_and_nothing_runs(gui):
    setup = buildPanel(gui)
    ui, logic, messages = setup.ui, setup.logic, setup.messages
    withVolume(setup)
    logic.createError = ValueError("The slice range 9 to 3 is empty.")
    with pytest.raises(ValueError):   # shown, then raised again (Slicer's console keeps the trace)
        ui.applyButton.click()
    assert messages.errors() == ["DiffusionSeg could not start.\n\nThe slice range 9 to 3 is empty."]
    assert ui.applyButton.text == "Apply" and ui.applyButton.enabled
    assert ui.statusLabel.text == "DiffusionSeg could not start: The slice range 9 to 3 is empty."
    assert not ui.progressBar.visible and ui.inputsCollapsibleButton.enabled and setup.panel.job is None


def test_an_error_while_polling_is_shown_and_the_panel_recovers(gui):
    setup = buildPanel(gui)
    ui, logic = setup.ui, setup.logic
    withVolume(setup)
    ui.applyButton.click()
    logic.jobs[-1].log.emit("info", "worker started")
    logic.jobs[-1].raiseOnPoll = OSError("disk full")
    setup.panel._pollTimer.fire()
    assert setup.messages.errors() == ["DiffusionSeg failed: disk full"] and logic.jobs[-1].cancelled
    assert ui.applyButton.text == "Apply" and ui.inputsCollapsibleButton.enabled and not ui.progressBar.visible
    assert "worker started" in ui.logTextEdit.plainText and "disk full" in ui.statusLabel.text


def test_remove_result_and_edit_in_segment_editor(gui):
    setup = buildPanel(gui)
    ui, logic, views, messages = setup.ui, setup.logic, setup.views, setup.messages
    _node, volume = withVolume(setup)
    ui.applyButton.click()
    segmentation = volume.GetScene().AddNewNodeByClass("vtkMRMLSegmentationNode")
    segmentation.CreateDefaultDisplayNodes()
    job = logic.jobs[-1]
    job.finish(job.SUCCEEDED, segmentationNode=segmentation, segmentIds=["liver"])
    setup.panel._pollTimer.fire()
    ui.editResultButton.click()
    assert views.edited == (segmentation, volume, "liver")
    messages.answer = False
    ui.removeResultButton.click()            # asked, and declined: nothing removed
    assert not job.removed and ui.resultButtonsWidget.visible and messages.shown[-1][0] == "question"
    messages.answer = True
    ui.removeResultButton.click()
    assert job.removed and not ui.resultButtonsWidget.visible
    assert ui.statusLabel.text == "Removed the last result (1 segment(s) and its evidence)."


def test_prompt_model_and_slice_range_hints(gui, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))   # an empty cache: the default model is a download
    setup = buildPanel(gui)
    ui = setup.ui
    setup.panel.setParameterNode(StandInParameterNode())
    assert "about 4 GB" in ui.modelNoteLabel.text and "CompVis/stable-diffusion-v1-4" in ui.modelNoteLabel.text
    ui.modelPathLineEdit.currentPath = "/models/mine"
    assert not ui.modelNoteLabel.visible
    ui.modelPathLineEdit.currentPath = ""
    (tmp_path / "models--CompVis--stable-diffusion-v1-4" / "snapshots" / "abc").mkdir(parents=True)
    ui.methodComboBox.setCurrentIndex(ui.methodComboBox.findData("diffugts"))
    assert "in this computer's Hugging Face cache" in ui.modelNoteLabel.text
    ui.methodComboBox.setCurrentIndex(ui.methodComboBox.findData("sdseg"))
    assert "the prompt only names the segment" in ui.promptExamplesLabel.text
    assert "train sdseg" in ui.modelNoteLabel.text
    assert "count from 0" in ui.sliceRangeHintLabel.text and "both ends are included" in ui.sliceRangeHintLabel.text


def test_check_worker_python_shows_what_it_found(gui):
    setup = buildPanel(gui)
    setup.panel.setParameterNode(StandInParameterNode())
    setup.ui.checkInterpreterButton.click()
    assert setup.messages.shown == [("info", "Python 3.11, torch 2.13 (CPU)", "")]
    assert "torch 2.13" in setup.ui.logTextEdit.plainText


def test_fine_tune_and_segmentation_take_turns(gui, tmp_path):
    setup = buildPanel(gui)
    ui, logic, panel = setup.ui, setup.logic, setup.panel
    node, volume = withVolume(setup)
    button = ui.fineTuneButton
    assert not button.enabled and "Select the corrected segmentation." in button.toolTip
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text(json.dumps({"format": "diffusionseg.sdseg"}))
    corrected = volume.GetScene().AddNewNodeByClass("vtkMRMLSegmentationNode")
    ui.correctedSegmentationSelector.setCurrentNode(corrected)
    ui.fineTuneCheckpointPathLineEdit.currentPath = str(checkpoint)
    ui.fineTuneOutputPathLineEdit.currentPath = str(tmp_path / "new")
    assert button.enabled
    ui.applyButton.click()
    assert not button.enabled and button.toolTip == "A segmentation is running."
    logic.jobs[-1].finish(MockJob.CANCELLED)
    panel._pollTimer.fire()
    assert button.enabled
    button.click()
    job = logic.fineTuneJobs[-1]
    assert job.settings.checkpoint == str(checkpoint) and job.settings.steps == 200
    assert button.text == "Cancel fine-tuning" and not ui.applyButton.enabled
    assert ui.applyButton.toolTip == "Fine-tuning is running."
    job.finish(MockJob.SUCCEEDED, outputPath=str(checkpoint))
    assert setup.messages.shown[-1][0] == "question"   # "Use it as the SDSeg model now?" (yes)
    assert node.method == "sdseg" and node.model == str(checkpoint)
    assert ui.fineTuneOutputPathLineEdit.currentPath == ""   # the next run needs a new folder


def test_service_rows_show_what_a_remote_server_needs(gui):
    setup = buildPanel(gui)
    service, logic = setup.panel.service, setup.logic
    assert logic.serviceSettings.mode == "local" and not service.urlLineEdit.visible
    service.modeComboBox.setCurrentIndex(service.modeComboBox.findData("remote"))
    assert service.urlLineEdit.visible and service.consentCheckBox.visible
    assert service.stateLabel.text == "Type the server's URL."
    service.urlLineEdit.text = "https://gpu-a:8765"
    service.consentCheckBox.checked = True
    assert logic.serviceSettings.remoteConsent and "gpu-a" in service.consentCheckBox.text
    service.urlLineEdit.text = "https://gpu-b:8765"   # a new address needs a new agreement
    assert not service.consentCheckBox.checked and not logic.serviceSettings.remoteConsent
    logs = []
    setup.panel.onJobLog = logs.append   # the server's log reaches the panel's log box
    setup.logic.serviceManager.log.emit("info", "Server started.")
    assert "Server started." in setup.ui.logTextEdit.plainText


# -- a real steerable result, the real logic ----------------------------------------------------------

def test_selection_section_steers_a_real_result(gui, tmp_path):
    from DiffusionSegSlicerLib.SelectionSelfTest import (
        VOTE,
        buildSteerableResult,
        exerciseSelection,
    )

    setup = buildPanel(gui)
    selection, views = setup.panel.selection, setup.views
    assert not selection.section.visible
    result = buildSteerableResult(newScene(), str(tmp_path))
    selection.setResult(result)
    assert selection.section.visible and selection.slider.enabled and selection.clickButton.visible
    assert selection.slider.value == VOTE and selection.slider.maximum >= 10.0   # every region can be dropped
    legend = next(d for d in (result.evidenceNodes["evidence"].GetNthDisplayNode(i) for i in range(
        result.evidenceNodes["evidence"].GetNumberOfDisplayNodes())) if d.IsA("vtkMRMLColorLegendDisplayNode"))
    assert views.foreground is None and not selection.overlayCheckBox.checked and not legend.GetVisibility()
    assert selection.legendLabel.text.startswith("Colour: how strongly the prompt attends")
    selection.overlayCheckBox.checked = True     # the evidence on request, with its colour bar
    assert views.foreground is result.evidenceNodes["evidence"] and legend.GetVisibility()
    selection.clickButton.click()
    assert len(selection._clickObservations) == views.views

    def setThreshold(value):
        selection.slider.value = value
        selection._timer.fire()   # the debounce timer, once the slider rests

    exerciseSelection(result, setThreshold, lambda ras: views.click(ras), selection.undoButton.click)
    assert selection.statusLabel.text.startswith("Region ")
    assert setup.messages.busyMessages == ["Re-selecting…"] * 3   # the threshold and two clicks, each busy
    selection.clickButton.click()
    assert selection._clickObservations == [] and not views.click((0, 0, 0))
    selection.clear()
    assert not selection.section.visible and views.foreground is None and not legend.GetVisibility()


def test_panel_with_the_real_logic_and_a_fake_worker(gui, tmp_path, monkeypatch):
    from DiffusionSegLib.methods.base import MethodInfo, Param
    from DiffusionSegSlicerLib.Logic import DiffusionSegLogic

    from slicer_test_utils import FakeWorkerLauncher

    scene = newScene()
    logic = DiffusionSegLogic(scene, temporaryRoot=str(tmp_path))
    logic._methods = {"fake": MethodInfo(name="fake", label="Fake", description="The test worker.", prompt="optional",
                                         needs_checkpoint=False, default_model=None,
                                         params=(Param("threshold", "float", 50.0, "Threshold"),))}
    monkeypatch.setattr(logic, "launcherFor", lambda python="": FakeWorkerLauncher(""))
    gui.Widget.qt.QSettings().setValue(gui.ServiceWidget.SETTINGS_KEY + "/mode", "off")   # one process per job
    setup = buildPanel(gui, logic=logic)
    withVolume(setup, scene)
    setup.ui.promptTextEdit.plainText = "liver"
    setup.ui.applyButton.click()
    job = setup.panel.job
    for _ in range(1200):
        setup.panel._pollTimer.fire()
        if not setup.panel._pollTimer.isActive():
            break
        time.sleep(0.05)
    assert job.state == job.SUCCEEDED, job.error
    assert "1 segment(s) added to" in setup.ui.statusLabel.text
    assert job.segmentationNode.GetSegmentation().GetSegment(job.segmentIds[0]).GetName() == "liver"
    assert "Imported 1 segment(s)" in setup.ui.logTextEdit.plainText and setup.messages.shown == []
