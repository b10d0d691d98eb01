"""A picture of the Slicer panel without Slicer: its .ui loaded by Qt 6 (PySide6, offscreen) and
filled in with what the panel's own code set on the stand-in widgets the tests use
(Testing/qt_standin.py): labels, status, progress, combo items, the method's parameter rows, the
server rows and the "Evidence and selection" section. Slicer's own widgets (ctk, qMRML) are drawn
by small Qt look-alikes, so the picture shows the panel's content and layout, not Slicer's exact
styling.

    render(standInUi, "panel.png")   # after the panel ran on the stand-ins
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import Property  # noqa: E402
from PySide6.QtWidgets import (  # noqa: E402
    QApplication,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QTextEdit,
    QToolButton,
    QVBoxLayout,
    QWidget,
)
from PySide6.QtUiTools import QUiLoader  # noqa: E402

UI_FILE = Path(__file__).resolve().parents[2] / "DiffusionSeg" / "Resources" / "UI" / "DiffusionSeg.ui"


class qMRMLWidget(QWidget):
    pass


class ctkCollapsibleButton(QGroupBox):
    """A titled frame; collapsed shows the title only (as ctk's button with its arrow)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._text, self._collapsed = "", False

    def _getText(self):
        return self._text

    def _setText(self, text):
        self._text = text
        self._title()

    def _getCollapsed(self):
        return self._collapsed

    def _setCollapsed(self, collapsed):
        """Collapsing hides the children that are shown; expanding shows those again only."""
        collapsed = bool(collapsed)
        if collapsed and not self._collapsed:
            self._hidden = [c for c in self.children() if isinstance(c, QWidget) and not c.isHidden()]
            for child in self._hidden:
                child.hide()
        elif not collapsed and self._collapsed:
            for child in getattr(self, "_hidden", []):
                child.show()
        self._collapsed = collapsed
        self._title()
        self.setMaximumHeight(24 if self._collapsed else 16777215)

    def _title(self):
        self.setTitle(("▸ " if self._collapsed else "▾ ") + self._text)

    text = Property(str, _getText, _setText)
    collapsed = Property(bool, _getCollapsed, _setCollapsed)


class ctkPathLineEdit(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.combo = QComboBox()
        self.combo.setEditable(True)
        self.combo.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        layout.addWidget(self.combo)
        button = QToolButton()
        button.setText("…")
        layout.addWidget(button)


class qMRMLNodeComboBox(QComboBox):
    pass


class ctkSliderWidget(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.slider = QSlider()
        self.slider.setOrientation(self.slider.orientation().Horizontal)
        self.spin = QDoubleSpinBox()
        layout.addWidget(self.slider, 1)
        layout.addWidget(self.spin)


CUSTOM = (qMRMLWidget, ctkCollapsibleButton, ctkPathLineEdit, qMRMLNodeComboBox)


def load():
    app = QApplication.instance() or QApplication([])
    loader = QUiLoader()
    for cls in CUSTOM:
        loader.registerCustomWidget(cls)
    widget = loader.load(str(UI_FILE))
    return app, widget


def _text(value) -> str:
    return "" if value is None else str(value)


def copyState(standIn, widget) -> None:
    """The stand-in's visible state onto the real widget of the same kind."""
    kind = type(standIn).__name__
    if kind == "QLabel":
        widget.setText(_text(standIn.text))
        widget.setWordWrap(bool(standIn.wordWrap) or "\n" in _text(standIn.text) or len(_text(standIn.text)) > 40)
    elif kind in ("QPushButton", "QCheckBox"):
        widget.setText(_text(standIn.text))
        widget.setCheckable(bool(standIn.checkable))
        widget.setChecked(bool(standIn.checked))
    elif kind in ("QComboBox", "qMRMLNodeComboBox"):
        widget.clear()
        if kind == "qMRMLNodeComboBox":
            node = standIn.currentNode()
            widget.addItem(node.GetName() if node is not None else getattr(standIn, "noneDisplay", "None"))
        else:
            for index in range(standIn.count):
                widget.addItem(standIn.itemText(index))
            widget.setCurrentIndex(max(standIn.currentIndex, 0))
    elif kind in ("QTextEdit", "QPlainTextEdit"):
        widget.setPlainText(_text(standIn.plainText))
    elif kind in ("QSpinBox", "QDoubleSpinBox"):
        widget.setRange(standIn.minimum, standIn.maximum)
        widget.setValue(standIn.value)
    elif kind == "QProgressBar":
        widget.setRange(standIn.minimum, standIn.maximum)
        widget.setValue(standIn.value)
        widget.setFormat(_text(standIn.format))
    elif kind == "ctkPathLineEdit":
        widget.combo.setEditText(_text(standIn.currentPath))
        widget.combo.lineEdit().setPlaceholderText(_text(standIn.comboBox().lineEdit().placeholderText))
    elif kind == "ctkCollapsibleButton":
        widget.text = _text(standIn.text)
    elif kind == "ctkSliderWidget":
        scale = 100
        widget.slider.setRange(int(standIn.minimum * scale), int(standIn.maximum * scale))
        widget.slider.setValue(int(standIn.value * scale))
        widget.spin.setRange(standIn.minimum, standIn.maximum)
        widget.spin.setValue(standIn.value)
    elif kind == "QLineEdit":
        widget.setText(_text(standIn.text))
        widget.setPlaceholderText(_text(standIn.placeholderText))
    widget.setEnabled(bool(standIn.enabled))
    widget.setToolTip(_text(standIn.toolTip))
    if standIn.styleSheet:
        widget.setStyleSheet(standIn.styleSheet)


REAL = {"QLabel": QLabel, "QPushButton": QPushButton, "QCheckBox": QCheckBox, "QComboBox": QComboBox,
        "QSpinBox": QSpinBox, "QDoubleSpinBox": QDoubleSpinBox, "QLineEdit": QLineEdit, "QTextEdit": QTextEdit,
        "QPlainTextEdit": QPlainTextEdit, "QProgressBar": QProgressBar, "QWidget": QWidget,
        "ctkCollapsibleButton": ctkCollapsibleButton, "ctkSliderWidget": ctkSliderWidget,
        "ctkPathLineEdit": ctkPathLineEdit, "qMRMLNodeComboBox": qMRMLNodeComboBox}


BUILT: list = []   # (stand-in, real) of every widget built in code: visibility is set once all exist


def build(standIn):
    """A real widget for one built in code (with its layout and children)."""
    widget = REAL[type(standIn).__name__]()
    copyState(standIn, widget)
    layout = standIn.layout()
    if layout is not None:
        fillLayout(layout, widget)
    BUILT.append((standIn, widget))
    return widget


def buildLayout(standInLayout):
    kind = type(standInLayout).__name__
    layout = {"QFormLayout": QFormLayout, "QHBoxLayout": QHBoxLayout}.get(kind, QVBoxLayout)()
    for item in standInLayout.items:
        addItem(layout, item)
    return layout


def addItem(layout, item) -> None:
    child = build(item.widget()) if item.widget() is not None else buildLayout(item.layout())
    if isinstance(layout, QFormLayout):
        label = getattr(item, "label", None)
        if getattr(item, "labelWidget", None) is not None:
            label = item.labelWidget.text            # the label's text now, not when the row was added
        if label is not None:
            layout.addRow(label, child)
        elif isinstance(child, QWidget):
            layout.addRow(child)
        else:
            layout.addRow(child)
    elif isinstance(child, QWidget):
        layout.addWidget(child)
    else:
        layout.addLayout(child)


def fillLayout(standInLayout, widget) -> None:
    layout = buildLayout(standInLayout)
    widget.setLayout(layout)


def render(standInUi, path, width: int = 430) -> Path:
    """The panel's picture after its code ran on the stand-ins in `standInUi`."""
    app, root = load()
    named = vars(standInUi)
    for name, standIn in named.items():
        widget = root.findChild(QWidget, name)
        if widget is None or name == "DiffusionSeg":
            continue
        copyState(standIn, widget)
    # rows and sections the panel builds in code: the method's parameters, the server rows of
    # Advanced, the "Evidence and selection" section
    paramsForm = root.findChild(QFormLayout, "methodParametersFormLayout")
    for item in named["methodParametersGroupBox"].layout().items:
        addItem(paramsForm, item)
    advancedForm = root.findChild(QFormLayout, "advancedFormLayout")
    fromUi = set(named.values())
    for item in named["advancedCollapsibleButton"].layout().items:
        if _isAdded(item, fromUi):
            addItem(advancedForm, item)
    top = root.layout()
    for index, item in enumerate(named["DiffusionSeg"].layout().items):
        if item.widget() is not None and item.widget() not in fromUi:
            top.insertWidget(index, build(item.widget()))
    pairs = [(standIn, root.findChild(QWidget, name)) for name, standIn in named.items() if name != "DiffusionSeg"]
    for standIn, widget in [*pairs, *BUILT]:   # visibility and collapsed state last, once all exist
        if widget is None:
            continue
        if type(standIn).__name__ == "ctkCollapsibleButton":
            widget.collapsed = bool(standIn.collapsed)
        widget.setVisible(bool(standIn.visible))
    root.resize(width, 10)
    root.adjustSize()
    root.resize(width, root.sizeHint().height())
    picture = root.grab()
    picture.save(str(path))
    return Path(path)


def _isAdded(item, fromUi) -> bool:
    """A row the panel added in code (not one of the .ui's own widgets or layouts)."""
    if item.widget() is not None:
        return item.widget() not in fromUi
    return not any(w in fromUi for w in item.layout().widgets())
