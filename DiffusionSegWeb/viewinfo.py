"""What a radiologist orients by in each slice view: its name, the orientation letters at its four
edges, the slice position in millimetres and the window/level of the image.

The letters come from the slice node's SliceToRAS matrix (the patient direction each screen
direction points to), the position from the slice offset along the view's normal (labelled as
Slicer labels it: S for axial, A for coronal, R for sagittal), window/level from the background
volume's display node. The page draws them over each view (`annotationOverlay`), above its own
slice slider; the server keeps one state entry per view, refreshed when the slice node or the
volume's display changes.
"""

from __future__ import annotations

import numpy as np

from trame.widgets import html

LETTERS = (("R", "L"), ("A", "P"), ("S", "I"))   # the patient direction of +/- RAS x, y, z
VIEW_NAMES = {"Red": "Axial", "Yellow": "Sagittal", "Green": "Coronal"}


def directionLetter(vector) -> str:
    """The patient direction (R, L, A, P, S, I) a vector in RAS mostly points to."""
    vector = np.asarray(vector, float)
    axis = int(np.argmax(np.abs(vector)))
    return LETTERS[axis][0 if vector[axis] > 0 else 1]


def orientationLetters(sliceToRas) -> dict[str, str]:
    """Letters at the left, right, top and bottom edges of a view with this 4x4 (or 3x3) matrix:
    screen x (right) is its first column, screen y (up) its second."""
    matrix = np.asarray(sliceToRas, float)[:3, :3]
    right, up = matrix[:, 0], matrix[:, 1]
    return {"left": directionLetter(-right), "right": directionLetter(right),
            "top": directionLetter(up), "bottom": directionLetter(-up)}


def slicePosition(sliceToRas) -> str:
    """'S 12.5 mm': the slice's offset along its normal, named by the normal's patient axis."""
    matrix = np.asarray(sliceToRas, float)
    normal, origin = matrix[:3, 2], matrix[:3, 3]
    axis = int(np.argmax(np.abs(normal)))
    offset = float(np.dot(normal, origin)) * (1.0 if normal[axis] > 0 else -1.0)
    return f"{LETTERS[axis][0]} {offset:.1f} mm"


def windowLevel(volumeNode) -> str:
    display = volumeNode.GetDisplayNode() if volumeNode is not None else None
    if display is None or not hasattr(display, "GetWindow"):
        return ""
    return f"W {display.GetWindow():.0f} L {display.GetLevel():.0f}"


def stateKey(viewName: str) -> str:
    return f"ds_view_{''.join(c for c in viewName if c.isalnum())}"


def annotation(sliceNode, volumeNode) -> dict:
    matrix = sliceNode.GetSliceToRAS()
    values = [[matrix.GetElement(r, c) for c in range(4)] for r in range(4)]
    name = sliceNode.GetLayoutName()
    return {"title": VIEW_NAMES.get(name, sliceNode.GetOrientation() or name), "letters": orientationLetters(values),
            "position": slicePosition(values), "wl": windowLevel(volumeNode)}


class ViewAnnotations:
    """Keeps each slice view's annotation in the page state while the scene changes."""

    def __init__(self, state, scene):
        self.state, self.scene = state, scene
        self._observed: list[tuple[object, int]] = []
        self.volumeNode = None
        for name in VIEW_NAMES:   # declared before the views' templates use them, or the page never sees them
            state.setdefault(stateKey(name), None)

    def setVolume(self, volumeNode) -> None:
        """Observe the slice nodes and the volume's display (after a volume was loaded)."""
        for node, tag in self._observed:
            node.RemoveObserver(tag)
        self._observed = []
        self.volumeNode = volumeNode
        nodes = self.scene.GetNodesByClass("vtkMRMLSliceNode")
        for index in range(nodes.GetNumberOfItems()):
            node = nodes.GetItemAsObject(index)
            self._observed.append((node, node.AddObserver("ModifiedEvent", self._refresh)))
        display = volumeNode.GetDisplayNode() if volumeNode is not None else None
        if display is not None:
            self._observed.append((display, display.AddObserver("ModifiedEvent", self._refresh)))
        self._refresh()

    def _refresh(self, *_args) -> None:
        nodes = self.scene.GetNodesByClass("vtkMRMLSliceNode")
        with self.state:
            for index in range(nodes.GetNumberOfItems()):
                node = nodes.GetItemAsObject(index)
                key = stateKey(node.GetLayoutName())
                value = annotation(node, self.volumeNode) if self.volumeNode is not None else None
                if self.state[key] != value:
                    self.state[key] = value


EDGE = ("position: absolute; pointer-events: none; color: #ffd54f; font: 600 13px/1.2 monospace; "
        "text-shadow: 0 0 3px #000, 0 0 2px #000;")


def annotationOverlay(view) -> None:
    """The overlay drawn over one slice view (at the current trame layout position)."""
    key = stateKey(view.name)
    with html.Div(v_if=(key,), classes="ds-view-annotation",
                  style="position: absolute; inset: 0; pointer-events: none; z-index: 1;"):
        html.Div(f"{{{{ {key}.title }}}}", style=EDGE + "top: 6px; left: 36px; color: #fff;")
        html.Div(f"{{{{ {key}.position }}}}", style=EDGE + "top: 6px; right: 8px; text-align: right; color: #fff;")
        html.Div(f"{{{{ {key}.wl }}}}", style=EDGE + "top: 24px; right: 8px; text-align: right; color: #ccc;")
        html.Div(f"{{{{ {key}.letters.top }}}}", style=EDGE + "top: 6px; left: 50%; transform: translateX(-50%);")
        html.Div(f"{{{{ {key}.letters.bottom }}}}",
                 style=EDGE + "bottom: 34px; left: 50%; transform: translateX(-50%);")
        html.Div(f"{{{{ {key}.letters.left }}}}", style=EDGE + "left: 36px; top: 50%; transform: translateY(-50%);")
        html.Div(f"{{{{ {key}.letters.right }}}}", style=EDGE + "right: 8px; top: 50%; transform: translateY(-50%);")


def sliceViewUi(server, viewId, view) -> None:
    """trame-slicer's slice view controls (reset, 3D, slice slider) plus the annotation overlay."""
    from trame_slicer.app.ui import create_vertical_slice_view_gutter_ui

    create_vertical_slice_view_gutter_ui(server, viewId, view)
    annotationOverlay(view)
