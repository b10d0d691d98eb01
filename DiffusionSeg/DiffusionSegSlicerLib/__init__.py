"""Slicer-side logic of the DiffusionSeg module: no Qt, no torch.

Each file holds one idea (SlicerNNUnet layout): Process (worker process, events, tree kill),
Worker (interpreter and environment), JobSettings (panel choices -> job request), VolumeIO
(storage-node export/import, ROI -> IJK box), Terminology, SegmentationImport,
SegmentationLogic (one job), EvidenceImport (result bundle -> volume nodes), SelectionLogic
(re-selection, toggle, undo without the model), FineTuneLogic (learning from corrections: one fine-tune job),
Logic (method metadata, job creation), SettingsMapping (parameter node <-> JobSettings),
PanelRules (what the panel's buttons and labels say), Interfaces (what the widgets are given:
logic, message boxes, slice views). Qt-only code lives in Widget.py, FineTuneWidget.py,
SelectionWidget.py, ServiceWidget.py, ParameterWidgets.py, ParameterNode.py, SlicerDisplay.py and
InstallLogic.py; the tests run the widgets on stand-in `qt`/`ctk` modules
(Testing/test_slicer_panel.py) and never import ParameterNode.py, SlicerDisplay.py or InstallLogic.py.
"""

from .FineTuneLogic import FineTuneJob, FineTuneSettings
from .JobSettings import JobSettings, buildJobRequest
from .Logic import DiffusionSegLogic, methodCatalog
from .SegmentationImport import SegmentationImporter
from .SegmentationLogic import SegmentationJob
from .Signal import Signal
from .Terminology import TerminologyTable
from .Worker import WorkerLauncher
from .WorkerJob import JobFailed, WorkerJob

__all__ = ["DiffusionSegLogic", "FineTuneJob", "FineTuneSettings", "JobFailed", "JobSettings",
           "SegmentationImporter", "SegmentationJob", "Signal", "TerminologyTable", "WorkerJob", "WorkerLauncher",
           "buildJobRequest", "methodCatalog"]
