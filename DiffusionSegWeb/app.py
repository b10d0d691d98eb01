"""The trame application: Slicer's core (scene, views, Segment Editor) plus the DiffusionSeg drawer.

Composition only: trame-slicer supplies the views, the Segment Editor effects and their undo
stack; `jobs.JobController` runs segmentation jobs through the service; `status` tells the page
what a job means to a person; `selection` steers a result; `viewinfo` labels the views; `saving`
writes results.
"""

from __future__ import annotations

import json
import logging
import re
from contextlib import contextmanager
from pathlib import Path

from trame.app import TrameApp
from trame_slicer import module as trameSlicerModule
from trame_slicer.app.logic import (
    LayoutButtonLogic,
    MprInteractionButtonLogic,
    SegmentEditorLogic,
    VolumePropertyLogic,
)
from trame_slicer.core import SlicerApp
from trame_slicer.rca_view import register_rca_factories

from . import panel
from .files import PICTURE_SUFFIXES, UploadCollector, UploadRefused, Workspace, readableBySlicer, volumeSuffix
from .jobs import JobController
from .layout import PANEL_TOOL, WebAppLayout
from .saving import SegmentationSaver, dicomFolderOf
from .selection import SelectionController
from .status import Busy, StatusBridge
from .viewinfo import ViewAnnotations, sliceViewUi

log = logging.getLogger(__name__)
WINDOW_PRESETS = json.loads((Path(__file__).parent / "data" / "window_presets.json").read_text())["presets"]
CT_AIR_HU = -500   # a scalar volume reaching below this looks like CT in Hounsfield units


class VolumeProperties(VolumePropertyLogic):
    """trame-slicer's volume property logic; its crop toggle is ignored before a volume is loaded
    (the page sends that state at start-up, which made it fail on a missing display node)."""

    def _set_volume_crop_active(self, active: bool) -> None:
        if self._volume_node is not None:
            super()._set_volume_crop_active(active)


@contextmanager
def vtkDeprecationsSilenced():
    """trame-slicer's slice views observe the interactor's WindowResizeEvent, which VTK 9.6 warns
    about once per view; nothing is wrong, so the start-up log leaves it out (other VTK warnings
    outside this block still show)."""
    from vtkmodules.vtkCommonCore import vtkObject

    previous = vtkObject.GetGlobalWarningDisplay()
    vtkObject.GlobalWarningDisplayOff()
    try:
        yield
    finally:
        vtkObject.SetGlobalWarningDisplay(previous)


class WebApp(TrameApp):
    def __init__(self, server=None, *, workspace: Workspace, serviceSettings, serviceLabel: str = "",
                 pythonInterpreter: str = ""):
        super().__init__(server)
        from DiffusionSegSlicerLib.Logic import DiffusionSegLogic, intensityPresets

        self.server.enable_module(trameSlicerModule)
        self.workspace = workspace
        self.windowPresets = WINDOW_PRESETS
        self.slicerApp = SlicerApp()
        self._silenceViewCreation(self.slicerApp.view_manager)
        # The Slicer module's logic on this scene: its jobs run on the service, their temporary
        # folders (and the local service's token) live in the app's private folder.
        self.logic = DiffusionSegLogic(self.slicerApp.scene, temporaryRoot=str(workspace.root))
        self.logic.serviceSettings = serviceSettings
        # a page's user may name models only inside the folders the page may open (serve checks)
        self.logic.serviceManager.modelRoots = [str(root) for root in workspace.allowedRoots]
        self.methods = self.logic.methods
        register_rca_factories(self.slicerApp.view_manager, self.server, slice_view_ui_f=sliceViewUi)
        self.segmentEditorLogic = SegmentEditorLogic(self.server, self.slicerApp)
        self.volumePropertyLogic = VolumeProperties(self.server, self.slicerApp)
        self.layoutButtonLogic = LayoutButtonLogic(self.server, self.slicerApp)
        self.mprLogic = MprInteractionButtonLogic(self.server, self.slicerApp)

        panel.initialState(self.state, self.methods, intensityPresets(), self.logic.importer.terminology.names())
        self.state.ds_service = serviceLabel
        self.state.trame__title = "DiffusionSeg"
        self.busy = Busy(self.state)
        self.status = StatusBridge(self.state)
        self.jobs = JobController(self, self.logic, self.status, pythonInterpreter)
        self.selection = SelectionController(self.state, self.slicerApp.scene, self.jobs.refreshSegments,
                                             self.segmentEditorLogic.segmentation_editor, self.busy)
        self.annotations = ViewAnnotations(self.state, self.slicerApp.scene)
        self.saver = SegmentationSaver(self)
        self.upload = UploadCollector(workspace.maxUploadBytes)
        self.uploadTrigger = self.server.trigger_name(self._onUploadChunk)
        self.downloadTrigger = self.server.trigger_name(self.saver.downloadBytes)
        self.dicomDownloadTrigger = self.server.trigger_name(self.saver.dicomBytes)
        self.dicomFolder = None

        self.ui = WebAppLayout(self.server, self.layoutButtonLogic.layout_manager, self, self.methods)
        self.segmentEditorLogic.set_ui(self.ui.segmentEditor)
        self.volumePropertyLogic.set_ui(self.ui.volumeProperties)
        self.layoutButtonLogic.set_ui(self.ui.layoutButton)
        self.mprLogic.set_ui(self.ui.mprButton)

    @staticmethod
    def _silenceViewCreation(viewManager) -> None:
        """Views are created when the page first shows a layout: only then is VTK's deprecation
        notice silenced (see vtkDeprecationsSilenced)."""
        create = viewManager.create_view

        def createQuietly(*args, **kwargs):
            with vtkDeprecationsSilenced():
                return create(*args, **kwargs)

        viewManager.create_view = createQuietly

    # -- actions the panel calls ---------------------------------------------------------------

    def apply(self, method: str | None = None, prompts: str | None = None, model: str | None = None):
        """Apply with the fields as the page showed them when clicked (see results.build)."""
        typed = {"ds_method": method, "ds_prompts": prompts, "ds_model": model}
        self.state.update({key: value for key, value in typed.items() if value is not None})
        self.busy.run("Starting: exporting the volume…", self.jobs.start)   # a large volume takes a while

    def cancel(self):
        self.jobs.cancel()

    def save(self):
        self.busy.run("Saving…", self.saver.save)

    def removeResult(self):
        self.busy.run("Removing the result…", self.jobs.removeResult)

    def openServerPath(self):
        self._open(lambda: self.workspace.serverPath(self.state.ds_server_path or ""))

    def clearResult(self):
        """A new job or another volume: the last job's status, overlays and selection are gone."""
        self.status.model.reset()
        self.selection.clear()
        self.jobs.lastResult = None
        self.state.update({"ds_download_ready": False, "ds_dicom_ready": False, "ds_can_remove": False})

    def setWindow(self, presetId: str):
        """A CT window preset on the current volume (window and level in HU)."""
        preset = next((p for p in self.windowPresets if p["id"] == presetId), None)
        volume = self.volumeNode
        if preset is None or volume is None or volume.GetDisplayNode() is None:
            return
        display = volume.GetDisplayNode()
        display.AutoWindowLevelOff()
        display.SetWindowLevel(preset["window"], preset["level"])
        self.state.ds_window = presetId

    async def _onUploadChunk(self, files):
        """trame-slicer's chunk loader sends lists of whole files, then an empty list at the end
        (files.UploadCollector counts the bytes received, not the sizes the browser declares)."""
        if files:
            refusal = self.upload.add(files)
            if refusal:
                with self.state:
                    self.status.model.startFailed(refusal)
            return
        files = self.upload.finish()
        if files:
            self._open(lambda: self.workspace.receiveUpload(files))

    # -- volumes -------------------------------------------------------------------------------

    @property
    def volumeNode(self):
        return self.segmentEditorLogic.segmentation_editor.active_volume_node

    @property
    def segmentationNode(self):
        return self.segmentEditorLogic.segmentation_editor.active_segmentation_node

    def _open(self, pathsOf) -> None:
        def work():
            received = []   # what arrived, removed again when it cannot be opened
            try:
                received = pathsOf()
                paths = readableBySlicer(received)
                self.loadVolume([str(p) for p in paths])
                self.workspace.releaseEarlier(paths)   # the volume they held is gone from the scene
            except UploadRefused as exc:
                self.workspace.discard(received)
                self.status.model.startFailed(str(exc))
            except Exception as exc:  # a reader error must reach the user, not only the log
                self.workspace.discard(received)
                log.exception("Could not open the volume")
                self.status.model.startFailed(f"Could not open the volume: {exc}")

        self.busy.run("Opening the volume…", work)

    def loadVolume(self, paths: list[str]):
        """Replace the scene's content with the largest volume read from `paths`."""
        if self.state.ds_running:
            raise UploadRefused("A job is running; cancel it or wait before opening another volume.")
        scene = self.slicerApp.scene
        self.clearResult()
        self.jobs.madeWith = None
        scene.Clear()
        volumes = self.slicerApp.io_manager.load_volumes(paths)
        if not volumes:
            raise UploadRefused("No image could be read from " + ", ".join(p.rsplit("/", 1)[-1] for p in paths[:3])
                                + ("…" if len(paths) > 3 else "") + ".")
        volume = max(volumes, key=lambda v: v.GetImageData().GetNumberOfPoints())
        self.dicomFolder = dicomFolderOf(paths)   # Save also writes a DICOM SEG of this series
        self.slicerApp.display_manager.show_volume(volume, do_reset_views=True)
        self.volumePropertyLogic.on_volume_changed(volume)
        self.segmentEditorLogic.on_volume_changed(volume)
        self.ui.data.is_volume_loaded = True
        name = volume.GetName()
        if name.endswith(".nrrd") and volumeSuffix(name[:-5]) in PICTURE_SUFFIXES:
            name = name[:-5]             # a picture converted for Slicer (files.readableBySlicer): its own name
            volume.SetName(name)
        stem = name[:-len(volumeSuffix(name))] if volumeSuffix(name) else name
        # a file name on every system: Slicer names a DICOM series "3: CT abdomen"
        stem = re.sub(r"[^\w.-]+", "-", stem).strip("-.")
        scalar = volume.GetImageData().GetNumberOfScalarComponents() == 1
        self.state.update({"ds_volume_name": name, "ds_segments": [], "ds_download_ready": False,
                           "ds_save_name": f"{stem or 'segmentation'}.seg.nrrd", "ds_window": "",
                           "ds_is_dicom": self.dicomFolder is not None, "ds_dicom_ready": False,
                           "ds_is_ct": scalar and volume.GetImageData().GetScalarRange()[0] < CT_AIR_HU})
        self.annotations.setVolume(volume)
        self.ui.showTool(PANEL_TOOL)
        # a picture (one slice): one large view, not three with a line each; a volume after it: the views back
        layoutState = self.layoutButtonLogic.data
        if volume.GetImageData().GetDimensions()[2] == 1:
            self._pictureLayout = layoutState.current_layout_id != "Axial Only"
            layoutState.current_layout_id = "Axial Only"
        elif getattr(self, "_pictureLayout", False):
            self._pictureLayout = False
            layoutState.current_layout_id = "Axial Primary"
        for view in self.slicerApp.view_manager.get_views():
            view.schedule_render()   # the 3D view too: it must not keep the last volume's surfaces
        return volume

    # -- the Segment Editor, beside the panel ---------------------------------------------------

    def showSegmentEditor(self):
        self.selection.setClickMode(False)   # the editor's tools take the clicks now
        self.state.ds_editor_open = True

    def toggleSegmentEditor(self):
        if self.state.ds_editor_open:
            self.closeSegmentEditor()
        else:
            self.showSegmentEditor()

    def closeSegmentEditor(self):
        """Closed with its tool deselected: the eraser must not stay active out of sight."""
        self.segmentEditorLogic.segmentation_editor.deactivate_effect()
        self.state.ds_editor_open = False
