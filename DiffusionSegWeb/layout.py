"""The page: trame-slicer's viewer layout with the DiffusionSeg drawer beside its Segment Editor.

Mirrors trame-slicer's SegmentationAppUI (drawer tools, tool bar, undo/redo, view grid) but leaves
out its browser upload and scene download buttons: every file from the browser goes through the
DiffusionSeg drawer, which writes it to the app's private, size-limited folder.
"""

from __future__ import annotations

from trame_server import Server
from trame_slicer.app.ui import (
    ControlButton,
    LayoutButton,
    MprInteractionButton,
    SegmentEditorToolbarUI,
    SegmentEditorUI,
    SegmentEditorUndoRedoUI,
    ViewerLayout,
    VolumePropertyUI,
)
from trame_slicer.core import LayoutManager

from . import panel

PANEL_TOOL = "DiffusionSegPanel"


class WebAppLayout:
    def __init__(self, server: Server, layoutManager: LayoutManager, controller, methods: dict):
        with ViewerLayout(server, is_drawer_visible=True) as self.layout:
            self.layout.title.set_text("DiffusionSeg")
            self.data.active_tool = PANEL_TOOL
            with self.layout.drawer:
                from trame.widgets import html

                with html.Div(v_if=(self._isActive(PANEL_TOOL),)):
                    panel.build(controller, methods)
                self.segmentEditor = SegmentEditorUI(v_if=(self._isActive(SegmentEditorUI.__name__),))
                self.volumeProperties = VolumePropertyUI(v_if=(self._isActive(VolumePropertyUI.__name__),))

            with self.layout.toolbar:
                self._toolButton("DiffusionSeg", "mdi-creation", PANEL_TOOL, alwaysEnabled=True)
                self._toolButton("Volume Properties", "mdi-tune-variant", VolumePropertyUI.__name__)
                self.layoutButton = LayoutButton(classes="mt-1", disabled=(f"!{self.name.is_volume_loaded}",))
                self.mprButton = MprInteractionButton(classes="mt-1", disabled=(f"!{self.name.is_volume_loaded}",))
                self._toolButton("segmentation panel", "mdi-brush", SegmentEditorUI.__name__)
                SegmentEditorToolbarUI(editor_ui=self.segmentEditor)

            with self.layout.undo_redo:
                SegmentEditorUndoRedoUI(editor_ui=self.segmentEditor)

            with self.layout.content:
                layoutManager.initialize_layout_grid(self.layout)

    @property
    def data(self):
        return self.layout.typed_state.data

    @property
    def name(self):
        return self.layout.typed_state.name

    def _isActive(self, tool: str) -> str:
        return f"{self.name.active_tool} === '{tool}'"

    def showTool(self, tool: str) -> None:
        self.data.is_drawer_visible = True
        self.data.active_tool = tool

    def _toolButton(self, name: str, icon: str, tool: str, alwaysEnabled: bool = False):
        def toggle():
            visible = not self.data.is_drawer_visible or self.data.active_tool != tool
            self.data.is_drawer_visible = visible
            self.data.active_tool = tool if visible else None

        shown = f"{self._isActive(tool)} && {self.name.is_drawer_visible}"
        return ControlButton(
            icon=icon, name="{{ " + f"{shown} ? 'Close {name}' : 'Open {name}'" + " }}", click=toggle,
            active=(self._isActive(tool),), classes="mt-1",
            disabled=False if alwaysEnabled else (f"!{self.name.is_volume_loaded}",),
        )
