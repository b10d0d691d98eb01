"""A stand-in for the `qt` and `ctk` modules as PythonQt shows them to Slicer's Python, for the
panel tests (Testing/test_slicer_panel.py): the widgets of qt_standin_widgets.py (PythonQt's
property access, signals fired by property changes, slots called with the arguments they take),
layouts that hold their items, timers that tests fire by hand, QSettings in memory, and the ctk and
MRML widgets the .ui uses.

Only what the panel files use is here; a widget attribute the panel sets that no real widget
has would pass unnoticed, so the .ui test (test_slicer_ui.py) still checks names against the .ui.
"""

from __future__ import annotations

import types

from qt_standin_widgets import (  # noqa: F401  (re-exported: the `qt` module's classes)
    QAbstractButton,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QGroupBox,
    QLabel,
    QLineEdit,
    QObject,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTextEdit,
    QWidget,
    Signal,
    _notifying,
    _Range,
)


class QTimer(QObject):
    def __init__(self, *args):
        super().__init__()
        self.timeout = Signal(self)
        self.interval = 0
        self.singleShot = False
        self.active = False

    def setInterval(self, ms):
        self.interval = ms

    def setSingleShot(self, single):
        self.singleShot = bool(single)

    def start(self, ms=None):
        self.active = True

    def stop(self):
        self.active = False

    def isActive(self):
        return self.active

    def fire(self):
        """What the event loop does when the interval has passed (tests call it)."""
        if self.singleShot:
            self.active = False
        self.timeout.emit()


class QSettings:
    store: dict = {}   # one in-memory store per test process; tests clear it

    def value(self, key, default=None):
        return self.store.get(key, default)

    def setValue(self, key, value):
        self.store[key] = value

    def remove(self, key):
        self.store.pop(key, None)


class _LayoutItem:
    def __init__(self, widget=None, layout=None, label=None):
        self._widget, self._layout, self.label = widget, layout, label

    def widget(self):
        return self._widget

    def layout(self):
        return self._layout


class _Layout(QObject):
    def __init__(self, parent=None):
        super().__init__()
        self.items: list[_LayoutItem] = []
        self._owner = None
        if isinstance(parent, QWidget):
            parent.setLayout(self)

    def _adopt(self, child):
        if isinstance(child, QWidget):
            child._parent = self._owner
        return _LayoutItem(widget=child) if isinstance(child, QWidget) else _LayoutItem(layout=child)

    def addWidget(self, widget, stretch=0, *args):
        self.items.append(self._adopt(widget))

    def addLayout(self, layout, stretch=0):
        self.items.append(_LayoutItem(layout=layout))

    def insertWidget(self, index, widget, *args):
        self.items.insert(index, self._adopt(widget))

    def indexOf(self, widget):
        return next((i for i, item in enumerate(self.items) if item.widget() is widget), -1)

    def count(self):
        return len(self.items)

    def itemAt(self, index):
        return self.items[index] if 0 <= index < len(self.items) else None

    def takeAt(self, index):
        return self.items.pop(index)

    def widgets(self):
        """Every widget in this layout and its nested layouts (for tests)."""
        out = []
        for item in self.items:
            if item.widget() is not None:
                out.append(item.widget())
            elif item.layout() is not None:
                out.extend(item.layout().widgets())
        return out


class QHBoxLayout(_Layout):
    pass


class QVBoxLayout(_Layout):
    pass


class QFormLayout(_Layout):
    def addRow(self, *args):
        if len(args) == 1:
            self.items.append(self._adopt(args[0]))
            return
        label, field = args
        item = self._adopt(field)
        item.label = label if isinstance(label, str) else getattr(label, "text", "")
        item.labelWidget = None if isinstance(label, str) else label   # its text may change later
        self.items.append(item)

    def rowLabels(self):
        return [item.labelWidget.text if getattr(item, "labelWidget", None) else item.label for item in self.items]


class ctkCollapsibleButton(QWidget):
    def __init__(self, text="", *args):
        super().__init__()
        self.text = text
        self.collapsed = False


class ctkPathLineEdit(QWidget):
    currentPath = _notifying("currentPath", "currentPathChanged", lambda self, value: str(value))

    def __init__(self, *args):
        super().__init__()
        self.currentPathChanged = Signal(self)
        self._currentPath = ""
        self._combo = QComboBox()
        self.filters = 0

    def comboBox(self):
        return self._combo


class ctkSliderWidget(_Range):
    _kind = float

    def __init__(self, *args):
        super().__init__()
        self.minimum, self.maximum = 0.0, 100.0


class qMRMLNodeComboBox(QWidget):
    def __init__(self, *args):
        super().__init__()
        self.currentNodeChanged = Signal(self)
        self._node = None
        self.nodeTypes = []

    def currentNode(self):
        return self._node

    def setCurrentNode(self, node):
        if node is not self._node:
            self._node = node
            self.currentNodeChanged.emit(node)


class qMRMLWidget(QWidget):
    pass


QT_CLASSES = (QObject, QWidget, QLabel, QPushButton, QCheckBox, QLineEdit, QTextEdit, QPlainTextEdit, QSpinBox,
              QDoubleSpinBox, QComboBox, QProgressBar, QGroupBox, QTimer, QSettings, QHBoxLayout, QVBoxLayout,
              QFormLayout)
CTK_CLASSES = (ctkCollapsibleButton, ctkPathLineEdit, ctkSliderWidget)
MRML_CLASSES = (qMRMLNodeComboBox, qMRMLWidget)


def modules() -> dict[str, types.ModuleType]:
    """Fresh `qt`, `ctk` and `slicer.i18n` modules to put in sys.modules."""
    qt = types.ModuleType("qt")
    for cls in QT_CLASSES:
        setattr(qt, cls.__name__, cls)
    qt.Qt = types.SimpleNamespace(WaitCursor=3, AlignLeft=1)
    ctk = types.ModuleType("ctk")
    for cls in CTK_CLASSES:
        setattr(ctk, cls.__name__, cls)
    i18n = types.ModuleType("slicer.i18n")
    i18n.tr = lambda text: text
    i18n.translate = lambda context, text: text
    return {"qt": qt, "ctk": ctk, "slicer.i18n": i18n}
