"""The trame application: Slicer's core (scene, views, Segment Editor) plus the DiffusionSeg drawer.

Composition only: trame-slicer supplies the views, the Segment Editor effects and their undo
stack; `jobs.JobController` runs segmentation jobs through the service; `saving` writes results.
"""

from __future__ import annotations

import logging

from trame.app import TrameApp
from trame_slicer import module as trameSlicerModule
from trame_slicer.app.logic import (
    LayoutButtonLogic,
    MprInteractionButtonLogic,
    SegmentEditorLogic,
    VolumePropertyLogic,
)
from trame_slicer.app.ui import SegmentEditorUI
from trame_slicer.core import SlicerApp
from trame_slicer.rca_view import register_rca_factories

from . import panel
from .files import UploadCollector, UploadRefused, Workspace, readableBySlicer
from .jobs import JobController
from .layout import PANEL_TOOL, WebAppLayout
from .saving import SegmentationSaver
from .selection import SelectionController

log = logging.getLogger(__name__)


class WebApp(TrameApp):
    def __init__(self, server=None, *, workspace: Workspace, serviceSettings, serviceLabel: str = "",
                 pythonInterpreter: str = ""):
        super().__init__(server)
        from DiffusionSegSlicerLib.Logic import DiffusionSegLogic, intensityPresets

        self.server.enable_module(trameSlicerModule)
        self.workspace = workspace
        self.slicerApp = SlicerApp()
        # The Slicer module's logic on this scene: its jobs run on the service, their temporary
        # folders (and the local service's token) live in the app's private folder.
        self.logic = DiffusionSegLogic(self.slicerApp.scene, temporaryRoot=str(workspace.root))
        self.logic.serviceSettings = serviceSettings
        # a page's user may name models only inside the folders the page may open (serve checks)
        self.logic.serviceManager.modelRoots = [str(root) for root in workspace.allowedRoots]
        self.methods = self.logic.methods
        register_rca_factories(self.slicerApp.view_manager, self.server)
        self.segmentEditorLogic = SegmentEditorLogic(self.server, self.slicerApp)
        self.volumePropertyLogic = VolumePropertyLogic(self.server, self.slicerApp)
        self.layoutButtonLogic = LayoutButtonLogic(self.server, self.slicerApp)
        self.mprLogic = MprInteractionButtonLogic(self.server, self.slicerApp)

        panel.initialState(self.state, self.methods, intensityPresets())
        self.state.ds_service = serviceLabel
        self.state.trame__title = "DiffusionSeg"
        self.jobs = JobController(self, self.logic, pythonInterpreter)
        self.selection = SelectionController(self.state, self.slicerApp.scene, self.jobs.refreshSegments,
                                             self.segmentEditorLogic.segmentation_editor)
        self.saver = SegmentationSaver(self)
        self.upload = UploadCollector(workspace.maxUploadBytes)
        self.uploadTrigger = self.server.trigger_name(self._onUploadChunk)
        self.downloadTrigger = self.server.trigger_name(self.saver.downloadBytes)
        self.downloadName = "segmentation.seg.nrrd"

        self.ui = WebAppLayout(self.server, self.layoutButtonLogic.layout_manager, self, self.methods)
        self.segmentEditorLogic.set_ui(self.ui.segmentEditor)
        self.volumePropertyLogic.set_ui(self.ui.volumeProperties)
        self.layoutButtonLogic.set_ui(self.ui.layoutButton)
        self.mprLogic.set_ui(self.ui.mprButton)

    # -- actions the panel calls ---------------------------------------------------------------

    def apply(self):
        self.jobs.start()

    def cancel(self):
        self.jobs.cancel()

    def save(self):
        self.saver.save()

    def openServerPath(self):
        self._open(lambda: self.workspace.serverPath(self.state.ds_server_path or ""))

    async def _onUploadChunk(self, files):
        """trame-slicer's chunk loader sends lists of whole files, then an empty list at the end
        (files.UploadCollector counts the bytes received, not the sizes the browser declares)."""
        if files:
            refusal = self.upload.add(files)
            if refusal:
                with self.state:
                    self.state.ds_error = refusal
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
        with self.state:
            self.state.ds_error = ""
            received = []
            try:
                received = pathsOf()
                paths = readableBySlicer(received)
                self.loadVolume([str(p) for p in paths])
                self.workspace.releaseEarlier(paths)   # the volume they held is gone from the scene
            except UploadRefused as exc:
                self.workspace.discard(received)
                self.state.ds_error = str(exc)
            except Exception as exc:  # a reader error must reach the user, not only the log
                self.workspace.discard(received)
                log.exception("Could not open the volume")
                self.state.ds_error = f"Could not open the volume: {exc}"

    def loadVolume(self, paths: list[str]):
        """Replace the scene's content with the largest volume read from `paths`."""
        if self.state.ds_running:
            raise UploadRefused("A job is running; cancel it or wait before opening another volume.")
        scene = self.slicerApp.scene
        scene.Clear()
        self.selection.clear()
        volumes = self.slicerApp.io_manager.load_volumes(paths)
        if not volumes:
            raise UploadRefused("No image could be read from " + ", ".join(p.rsplit("/", 1)[-1] for p in paths[:3])
                                + ("…" if len(paths) > 3 else "") + ".")
        volume = max(volumes, key=lambda v: v.GetImageData().GetNumberOfPoints())
        self.slicerApp.display_manager.show_volume(volume, do_reset_views=True)
        self.volumePropertyLogic.on_volume_changed(volume)
        self.segmentEditorLogic.on_volume_changed(volume)
        self.ui.data.is_volume_loaded = True
        self.state.ds_volume_name = volume.GetName()
        self.state.ds_segments = []
        self.state.ds_download_ready = False
        self.ui.showTool(PANEL_TOOL)
        return volume

    def showSegmentEditor(self):
        self.ui.showTool(SegmentEditorUI.__name__)
