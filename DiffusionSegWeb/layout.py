"""The page: trame-slicer's viewer layout with the DiffusionSeg drawer on the left and the Segment
Editor in its own drawer on the right, so editing a result never hides the panel.

Mirrors trame-slicer's SegmentationAppUI (tool bar, undo/redo, view grid) but leaves out its
browser upload and scene download buttons: every file from the browser goes through the
DiffusionSeg drawer, which writes it to the app's private, size-limited folder. The app bar says
what the software is (research, not a medical device). Closing the Segment Editor deselects its
tool, so the views' left button is the views' own again.
"""

from __future__ import annotations

from trame.widgets import html
from trame.widgets import vuetify3 as v3
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
NOTICE = "Research software — not a medical device. Every result must be reviewed by a qualified reader."


class WebAppLayout:
    def __init__(self, server: Server, layoutManager: LayoutManager, controller, methods: dict):
        self.server = server
        self.controller = controller
        server.state.setdefault("ds_editor_open", False)
        with ViewerLayout(server, is_drawer_visible=True) as self.layout:
            self.layout.title.set_text("DiffusionSeg")
            with self.layout.appbar:
                html.Div(NOTICE, classes="text-caption text-amber-lighten-2 mr-4", id="ds-notice")
            self.data.active_tool = PANEL_TOOL
            with self.layout.drawer:
                with html.Div(v_if=(self._isActive(PANEL_TOOL),), style="height: 100%;"):
                    panel.build(controller, methods)
                self.volumeProperties = VolumePropertyUI(v_if=(self._isActive(VolumePropertyUI.__name__),))

            with v3.VNavigationDrawer(location="right", permanent=True, width=320, v_model=("ds_editor_open",),
                                      disable_resize_watcher=True, disable_route_watcher=True, id="ds-editor"):
                with html.Div(classes="d-flex align-center px-2 pt-2"):
                    html.Div("Segment Editor", classes="text-subtitle-1")
                    v3.VSpacer()
                    v3.VBtn(icon="mdi-close", size="small", variant="text", id="ds-editor-close",
                            click=controller.closeSegmentEditor, title="Close the Segment Editor (deselects its tool)")
                self.segmentEditor = SegmentEditorUI()

            with self.layout.toolbar:
                self._toolButton("DiffusionSeg", "mdi-creation", PANEL_TOOL, alwaysEnabled=True)
                self._toolButton("Volume Properties", "mdi-tune-variant", VolumePropertyUI.__name__)
                self.layoutButton = LayoutButton(classes="mt-1", disabled=(f"!{self.name.is_volume_loaded}",))
                self.mprButton = MprInteractionButton(classes="mt-1", disabled=(f"!{self.name.is_volume_loaded}",))
                ControlButton(icon="mdi-brush", name="{{ ds_editor_open ? 'Close' : 'Open' }} the Segment Editor",
                              click=controller.toggleSegmentEditor, active=("ds_editor_open",), classes="mt-1",
                              disabled=(f"!{self.name.is_volume_loaded}",))
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
