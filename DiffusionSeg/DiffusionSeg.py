import importlib
import os
import sys

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin


def _ensureBackendImportable():
    """Installed extension: DiffusionSegLib sits beside this file. Source checkout (module added
    through 'Additional module paths'): it sits one folder up."""
    repository = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if os.path.isdir(os.path.join(repository, "DiffusionSegLib")) and repository not in sys.path:
        sys.path.append(repository)


_ensureBackendImportable()


class DiffusionSeg(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("DiffusionSeg")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["DiffusionSeg contributors"]
        self.parent.helpText = _(
            "Segment a volume with a diffusion model (ADZUS, DiffuGTS, SDSeg) from a text prompt. "
            "The model runs in a background process; the result is a new segmentation node. "
            "Research software, not a medical device.")
        self.parent.acknowledgementText = _(
            "Methods: ADZUS (self-attention zero-shot segmentation), DiffuGTS (CVPR 2025), "
            "SDSeg (MICCAI 2024). Built on diffusers and 3D Slicer.")


class DiffusionSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Shell: loads the .ui, builds the panel's parts and gives them to
    DiffusionSegSlicerLib.Widget.DiffusionSegPanel (the tests build them with stand-ins)."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.panel = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        from DiffusionSegSlicerLib.FineTuneWidget import FineTunePanel
        from DiffusionSegSlicerLib.InstallLogic import InstallLogic
        from DiffusionSegSlicerLib.SelectionWidget import SelectionPanel
        from DiffusionSegSlicerLib.ServiceWidget import ServicePanel
        from DiffusionSegSlicerLib.SlicerDisplay import SlicerMessages, SlicerSliceViewer
        from DiffusionSegSlicerLib.Widget import DiffusionSegPanel

        uiWidget = slicer.util.loadUI(self.resourcePath("UI/DiffusionSeg.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = DiffusionSegLogic()
        core, messages, views = self.logic.core, SlicerMessages(), SlicerSliceViewer()
        self.panel = DiffusionSegPanel(
            self.ui, core, InstallLogic(confirm=lambda text, details: messages.askOkCancel(text, details=details)),
            messages, views, fineTune=FineTunePanel(self.ui, core, messages), service=ServicePanel(self.ui, core),
            selection=SelectionPanel(self.ui, views, messages))
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()

    def cleanup(self):
        self.removeObservers()
        if self.panel:
            self.panel.cleanup()

    def enter(self):
        self.initializeParameterNode()

    def onSceneStartClose(self, caller, event):
        self.panel.cancelJob()
        self.panel.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        parameterNode = self.logic.getParameterNode()
        if not parameterNode.inputVolume:
            volume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if volume and not volume.IsA("vtkMRMLLabelMapVolumeNode"):
                parameterNode.inputVolume = volume
        self.panel.setParameterNode(parameterNode)

    def onReload(self):
        for name in [m for m in sys.modules if m.startswith("DiffusionSegSlicerLib.")]:
            importlib.reload(sys.modules[name])
        ScriptedLoadableModuleWidget.onReload(self)


class DiffusionSegLogic(ScriptedLoadableModuleLogic):
    """Slicer wrapper around DiffusionSegSlicerLib.Logic (which also runs without Slicer's GUI).

    Scripted use:
        logic = slicer.util.getModuleLogic("DiffusionSeg").core
        job = logic.segment(JobSettings(method="adzus", prompt="liver"), volumeNode)
    """

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        import qt
        from DiffusionSegSlicerLib.Logic import DiffusionSegLogic as CoreLogic
        from DiffusionSegSlicerLib.TempFolders import cleanupAllJobs
        from DiffusionSegSlicerLib.WorkerSettings import WorkerPythonSettings

        # the worker Python is a per-user application setting (never the scene's)
        self.core = CoreLogic(slicer.mrmlScene, temporaryRoot=slicer.app.temporaryPath,
                              cleanEnvironment=slicer.util.startupEnvironment(),
                              workerSettings=WorkerPythonSettings(qt.QSettings(), confirmWorkerPython))
        # closing Slicer ends running workers and removes their temporary folders (patient data)
        slicer.app.connect("aboutToQuit()", cleanupAllJobs)

    def getParameterNode(self):
        from DiffusionSegSlicerLib.ParameterNode import DiffusionSegParameterNode

        return DiffusionSegParameterNode(super().getParameterNode())


def confirmWorkerPython(path):
    """Shown before a worker Python that was not chosen in the settings runs for the first time."""
    from DiffusionSegSlicerLib.SlicerDisplay import SlicerMessages

    return SlicerMessages().askOkCancel(
        _("DiffusionSeg is about to run this program as its worker Python:\n\n{path}\n\n"
          "It was not chosen in the DiffusionSeg settings (Advanced > Worker Python). Run it?").format(path=path),
        _("Confirm worker Python"))


class DiffusionSegTest(ScriptedLoadableModuleTest):
    """Runs the whole logic (export, real worker process, import) with a tiny random model.
    Needs the worker's dependencies (torch, diffusers, transformers) in the worker Python."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_EndToEndWithTinyModel()
        self.setUp()
        self.test_SelectionPanel()

    def test_EndToEndWithTinyModel(self):
        from DiffusionSegSlicerLib.SelfTest import runEndToEndScenario

        self.delayDisplay("Running DiffusionSeg end to end with a tiny model (CPU)")
        job = runEndToEndScenario(slicer.mrmlScene, temporaryRoot=slicer.app.temporaryPath, log=self.delayDisplay)
        self.assertEqual(job.state, job.SUCCEEDED)
        leftovers = [n for n in os.listdir(slicer.app.temporaryPath) if n.startswith("DiffusionSeg-")]
        self.assertEqual(leftovers, [], "temporary job folders were not removed")
        self.delayDisplay("Test passed")

    def test_SelectionPanel(self):
        """The "Evidence and selection" widgets on a steerable result built without a model:
        slider re-selection, click-toggle, Undo, overlay (SelectionSelfTest.py)."""
        import shutil
        import tempfile

        from DiffusionSegSlicerLib.SelectionSelfTest import (
            buildSteerableResult,
            exerciseSelection,
        )

        self.delayDisplay("Steering a result through the Evidence and selection section")
        panel = slicer.modules.diffusionseg.widgetRepresentation().self().panel.selection
        folder = tempfile.mkdtemp(prefix="DiffusionSeg-selection-", dir=slicer.app.temporaryPath)
        try:
            result = buildSteerableResult(slicer.mrmlScene, folder)
            panel.setResult(result)
            self.assertTrue(panel.slider.enabled and panel.clickButton.visible and panel.legendLabel.text)
            self.assertFalse(panel.overlayCheckBox.checked)   # the result first; the evidence on request
            panel.overlayCheckBox.checked = True
            compositeNode = slicer.app.layoutManager().sliceWidget("Red").mrmlSliceCompositeNode()
            self.assertEqual(compositeNode.GetForegroundVolumeID(), result.evidenceNodes["evidence"].GetID())

            def setThreshold(value):
                panel.slider.value = value
                panel._applyPending()  # what the debounce timer does when the slider rests

            exerciseSelection(result, setThreshold, panel.toggleAt, panel.undoButton.click)
            panel.clickButton.checked = True   # one click observer per slice view of the layout
            self.assertEqual(len(panel._clickObservations), len(slicer.app.layoutManager().sliceViewNames()))
            panel.clickButton.checked = False
            self.assertEqual(panel._clickObservations, [])
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        self.delayDisplay("Selection test passed")
