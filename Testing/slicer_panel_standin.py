"""The panel's world without Slicer's GUI: its .ui as stand-in widgets (qt_standin.py), a parameter
node with the wrapper's fields and `connectGui` binding, message boxes and slice views that record
what the panel asked for. SlicerNNUnet tests its widget with mock logic the same way.
"""

from __future__ import annotations

import ast
import contextlib
import sys
import traceback
import types
import xml.etree.ElementTree as ET

import qt_standin
from slicer_test_utils import MODULE_DIR

UI_FILE = MODULE_DIR / "Resources" / "UI" / "DiffusionSeg.ui"
PARAMETER_NODE_FILE = MODULE_DIR / "DiffusionSegSlicerLib" / "ParameterNode.py"
GUI_MODULES = ("Widget", "FineTuneWidget", "SelectionWidget", "ServiceWidget", "ParameterWidgets", "StatusDisplay")
WIDGET_CLASSES = {cls.__name__: cls for cls in (*qt_standin.QT_CLASSES, *qt_standin.CTK_CLASSES,
                                                  *qt_standin.MRML_CLASSES)}
LAYOUT_CLASSES = {"QVBoxLayout": qt_standin.QVBoxLayout, "QHBoxLayout": qt_standin.QHBoxLayout,
                  "QFormLayout": qt_standin.QFormLayout}


# -- the .ui ------------------------------------------------------------------------------------

def _propertyValue(element):
    child = element[0]
    if child.tag == "bool":
        return child.text == "true"
    if child.tag == "number":
        return int(child.text)
    if child.tag == "double":
        return float(child.text)
    if child.tag == "string":
        return child.text or ""
    return None


APPLIED_PROPERTIES = ("text", "title", "checked", "checkable", "enabled", "toolTip", "placeholderText", "wordWrap",
                      "collapsed", "minimum", "maximum", "value", "decimals", "suffix", "acceptRichText")


def _buildWidget(element, parent, names):
    widget = WIDGET_CLASSES[element.get("class")]()
    widget.objectName = element.get("name")
    widget._parent = parent
    for prop in element.findall("property"):
        name, value = prop.get("name"), _propertyValue(prop)
        if name == "SlicerParameterName":
            widget.slicerParameterName = value
        elif name in APPLIED_PROPERTIES and value is not None:
            setattr(widget, name, value)
    names[widget.objectName] = widget
    layout = element.find("layout")
    if layout is not None:
        widget.setLayout(_buildLayout(layout, widget, names))
    return widget


def _buildLayout(element, owner, names):
    layout = LAYOUT_CLASSES[element.get("class")]()
    layout._owner = owner
    for item in element.findall("item"):
        child = item[0]
        if child.tag == "widget":
            layout.addWidget(_buildWidget(child, owner, names))
        elif child.tag == "layout":
            layout.addLayout(_buildLayout(child, owner, names))
    return layout


def buildUi():
    """The .ui's widgets by name, as `slicer.util.childWidgetVariables` gives them."""
    names = {}
    _buildWidget(ET.parse(UI_FILE).getroot().find("widget"), None, names)
    return types.SimpleNamespace(**names)


# -- the parameter node -------------------------------------------------------------------------

def parameterNodeFields() -> dict:
    """name -> default of every field of DiffusionSegParameterNode, read from its source."""
    tree = ast.parse(PARAMETER_NODE_FILE.read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "DiffusionSegParameterNode")
    fields = {}
    for node in cls.body:
        if not isinstance(node, ast.AnnAssign):
            continue
        source = ast.unparse(node.annotation)
        defaults = [c for c in ast.walk(node.annotation) if isinstance(c, ast.Call) and getattr(c.func, "id", "") == "Default"]
        if defaults:
            fields[node.target.id] = ast.literal_eval(defaults[0].args[0])
        elif source.startswith(("str", "Annotated[str")):
            fields[node.target.id] = ""
        elif source.startswith(("int", "Annotated[int")):
            fields[node.target.id] = 0
        elif source.startswith(("bool", "Annotated[bool")):
            fields[node.target.id] = False
        else:
            fields[node.target.id] = None   # an MRML node
    return fields


BINDINGS = {  # widget class -> (property, change signal), as the wrapper's connectors bind them
    "QTextEdit": ("plainText", "textChanged"), "QCheckBox": ("checked", "toggled"),
    "QSpinBox": ("value", "valueChanged"), "QDoubleSpinBox": ("value", "valueChanged"),
    "QComboBox": ("currentText", "currentIndexChanged"), "qMRMLNodeComboBox": (None, "currentNodeChanged"),
}


class StandInParameterNode:
    """The wrapper's fields with their defaults; setting one notifies the bound widgets and the
    ModifiedEvent observers, as the wrapper does."""

    def __init__(self):
        object.__setattr__(self, "_values", parameterNodeFields())
        object.__setattr__(self, "_observers", {})
        object.__setattr__(self, "_bound", [])

    def __getattr__(self, name):
        values = object.__getattribute__(self, "_values")
        if name in values:
            return values[name]
        raise AttributeError(name)

    def __setattr__(self, name, value):
        if name not in self._values:
            raise AttributeError(f"the parameter node has no field {name!r}")
        if self._values[name] == value and not hasattr(value, "GetID"):
            return
        self._values[name] = value
        for widget in [w for w in self._bound if w.slicerParameterName == name]:
            self._toWidget(widget, value)
        for callback in list(self._observers.values()):
            callback(self, "ModifiedEvent")

    @staticmethod
    def _toWidget(widget, value):
        prop = BINDINGS[type(widget).__name__][0]
        if prop is None:
            widget.setCurrentNode(value)
        elif getattr(widget, prop) != value:
            setattr(widget, prop, value)

    def connectGui(self, ui):
        bound = [w for w in vars(ui).values() if getattr(w, "slicerParameterName", None)]
        for widget in bound:
            name = widget.slicerParameterName
            self._toWidget(widget, self._values[name])
            prop, signal = BINDINGS[type(widget).__name__]
            slot = (lambda node, name=name: setattr(self, name, node)) if prop is None else \
                (lambda *_args, widget=widget, name=name, prop=prop: setattr(self, name, getattr(widget, prop)))
            getattr(widget, signal).connect(slot)
            self._bound.append(widget)
            widget._bindingSlot = (signal, slot)
        return bound

    def disconnectGui(self, bound):
        for widget in bound:
            signal, slot = widget._bindingSlot
            getattr(widget, signal).disconnect(slot)
            self._bound.remove(widget)

    def AddObserver(self, event, callback):
        tag = len(self._observers) + 1
        self._observers[tag] = callback
        return tag

    def RemoveObserver(self, tag):
        self._observers.pop(tag, None)


# -- what the panel shows through Slicer ---------------------------------------------------------

class RecordingMessages:
    """UserMessages that records every message box; questions get `answer`."""

    def __init__(self, answer: bool = True):
        self.answer = answer
        self.shown: list[tuple[str, str, str]] = []   # (kind, message, details)
        self.busyDepth = 0
        self.busyMessages: list[str] = []

    def showError(self, message, details=""):
        self.shown.append(("error", message, details))

    def showInfo(self, message, title=""):
        self.shown.append(("info", message, ""))

    def askYesNo(self, message, title=""):
        self.shown.append(("question", message, ""))
        return self.answer

    def askOkCancel(self, message, title="", details=""):
        self.shown.append(("question", message, details))
        return self.answer

    @contextlib.contextmanager
    def errorsShown(self, message, busy=False):
        """As slicer.util.tryWithErrorDisplay: show message and error, then raise it again."""
        self.busyDepth += bool(busy)
        try:
            yield
        except Exception as exc:
            self.shown.append(("error", f"{message}\n\n{exc}", traceback.format_exc()))
            raise
        finally:
            self.busyDepth -= bool(busy)

    def restartApplication(self):
        self.shown.append(("restart", "", ""))

    @contextlib.contextmanager
    def busy(self, message=""):
        self.busyMessages.append(message)
        self.busyDepth += 1
        try:
            yield
        finally:
            self.busyDepth -= 1

    def errors(self):
        return [message for kind, message, _ in self.shown if kind == "error"]


class RecordingSliceViewer:
    """SliceViewer with `views` slice views; `click(ras)` is a left click in one of them."""

    def __init__(self, views: int = 3):
        self.views = views
        self.background = None
        self.foreground = None
        self.label = None
        self.edited = None   # (segmentation, volume, segment id) the Segment Editor was opened on
        self._clickHandlers: dict[int, object] = {}

    def showBackground(self, volumeNode):
        self.background = volumeNode

    def showForeground(self, volumeNode, opacity=0.5):
        self.foreground = volumeNode

    def showLabel(self, labelmapNode, backgroundNode=None):
        self.label = labelmapNode
        if backgroundNode is not None:
            self.background = backgroundNode

    def editSegments(self, segmentationNode, volumeNode, segmentId):
        self.edited = (segmentationNode, volumeNode, segmentId)

    def observeLeftClicks(self, onClick):
        removers = []
        for _ in range(self.views):
            key = max(self._clickHandlers, default=0) + 1
            self._clickHandlers[key] = onClick
            removers.append(lambda key=key: self._clickHandlers.pop(key))
        return removers

    def click(self, ras):
        """Each slice view's observers see the click; only the view under the mouse reports it."""
        handlers = list(self._clickHandlers.values())
        if handlers:
            handlers[0](ras)
        return bool(handlers)


# -- installing the stand-ins ---------------------------------------------------------------------

def installStandIns(monkeypatch):
    """Put stand-in `qt`, `ctk` and `slicer.i18n` in sys.modules and (re)import the panel files on
    them; monkeypatch removes them all again after the test."""
    import slicer

    for name, module in qt_standin.modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(slicer, "i18n", sys.modules["slicer.i18n"], raising=False)
    qt_standin.QSettings.store = {}
    for name in GUI_MODULES:
        # Recorded first, so monkeypatch puts back what was there (or nothing): modules imported
        # on the stand-ins never reach a later test.
        monkeypatch.setitem(sys.modules, f"DiffusionSegSlicerLib.{name}", None)
        sys.modules.pop(f"DiffusionSegSlicerLib.{name}")
    import importlib

    return types.SimpleNamespace(**{name: importlib.import_module(f"DiffusionSegSlicerLib.{name}")
                                    for name in GUI_MODULES})
