"""The widgets of the `qt` stand-in (qt_standin.py), as PythonQt shows them to Slicer's Python:
property access
(`button.enabled = False`, `combo.currentData`), signals that fire when a property changes (and
stay quiet under `blockSignals`), slots called with as many arguments as they take (as PythonQt
does).

Only what the panel files use is here.
"""

from __future__ import annotations

import inspect


class Signal:
    def __init__(self, owner=None):
        self._owner = owner
        self._slots = []

    def connect(self, slot):
        self._slots.append(slot)

    def disconnect(self, slot):
        self._slots.remove(slot)

    def emit(self, *args):
        if self._owner is not None and self._owner._blocked:
            return
        for slot in list(self._slots):
            slot(*args[:_positionalCount(slot, len(args))])


def _positionalCount(slot, available: int) -> int:
    """PythonQt passes a signal's arguments up to the number the Python slot accepts."""
    try:
        parameters = inspect.signature(slot).parameters.values()
    except (TypeError, ValueError):
        return available
    if any(p.kind == p.VAR_POSITIONAL for p in parameters):
        return available
    return min(available, sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in parameters))


class QObject:
    def __init__(self, *args, **kwargs):
        self._blocked = False
        self.objectName = ""

    def blockSignals(self, block: bool) -> bool:
        previous, self._blocked = self._blocked, bool(block)
        return previous


class QWidget(QObject):
    def __init__(self, *args, **kwargs):
        super().__init__()
        self.enabled = True
        self.visible = True
        self.toolTip = ""
        self.styleSheet = ""
        self.deleted = False
        self._layout = None
        self._parent = None

    def show(self):
        self.visible = True

    def hide(self):
        self.visible = False

    def setVisible(self, visible):
        self.visible = bool(visible)

    def setEnabled(self, enabled):
        self.enabled = bool(enabled)

    def setToolTip(self, text):
        self.toolTip = text

    def setStyleSheet(self, text):
        self.styleSheet = text

    def deleteLater(self):
        self.deleted = True

    def layout(self):
        return self._layout

    def setLayout(self, layout):
        self._layout = layout
        layout._owner = self

    def parentWidget(self):
        return self._parent

    def setMRMLScene(self, scene):
        self.mrmlScene = scene


def _notifying(name: str, signalName: str, convert=lambda self, value: value):
    """A property that emits `signalName(value)` when its value changes."""
    attribute = "_" + name

    def get(self):
        return getattr(self, attribute)

    def set(self, value):
        value = convert(self, value)
        if getattr(self, attribute, None) != value:
            setattr(self, attribute, value)
            getattr(self, signalName).emit(value)

    return property(get, set)


class QLabel(QWidget):
    def __init__(self, text="", *args):
        super().__init__()
        self.text = text
        self.wordWrap = False


class QAbstractButton(QWidget):
    checked = _notifying("checked", "toggled", lambda self, value: bool(value) and self.checkable)

    def __init__(self, text="", *args):
        super().__init__()
        self.toggled = Signal(self)
        self.clicked = Signal(self)
        self.text = text
        self.checkable = False
        self._checked = False

    def click(self):
        """As Qt: nothing when disabled; a checkable button toggles first."""
        if not self.enabled:
            return
        if self.checkable:
            self.checked = not self.checked
        self.clicked.emit(self.checked)


class QPushButton(QAbstractButton):
    pass


class QCheckBox(QAbstractButton):
    def __init__(self, text="", *args):
        super().__init__(text)
        self.checkable = True


class QLineEdit(QWidget):
    Normal, Password = 0, 2
    text = _notifying("text", "textChanged", lambda self, value: str(value))

    def __init__(self, text="", *args):
        super().__init__()
        self.textChanged = Signal(self)
        self._text = str(text)
        self.placeholderText = ""
        self.echoMode = self.Normal


class QTextEdit(QWidget):
    plainText = _notifying("plainText", "textChanged", lambda self, value: str(value))

    def __init__(self, *args):
        super().__init__()
        self.textChanged = Signal(self)
        self._plainText = ""
        self.acceptRichText = True

    def toPlainText(self):
        return self.plainText

    def setPlainText(self, text):
        self.plainText = text


class QPlainTextEdit(QTextEdit):
    def appendPlainText(self, text):
        self.plainText = f"{self.plainText}\n{text}" if self.plainText else str(text)

    def clear(self):
        self.plainText = ""


class _Range(QWidget):
    value = _notifying("value", "valueChanged", lambda self, v: self._kind(min(max(v, self.minimum), self.maximum)))
    _kind = int

    def __init__(self, *args):
        super().__init__()
        self.valueChanged = Signal(self)
        self.minimum, self.maximum, self.singleStep = 0, 99, 1
        self._value = 0
        self.decimals = 2
        self.suffix = ""


class QSpinBox(_Range):
    pass


class QDoubleSpinBox(_Range):
    _kind = float


class QComboBox(QWidget):
    def __init__(self, *args):
        super().__init__()
        self.currentIndexChanged = Signal(self)
        self._items: list[tuple[str, object]] = []
        self._index = -1
        self._lineEdit = QLineEdit()

    def addItem(self, text, data=None):
        self._items.append((str(text), data))
        if self._index < 0:
            self.setCurrentIndex(0)

    def clear(self):
        self._items, self._index = [], -1

    @property
    def count(self):
        return len(self._items)

    def findData(self, data):
        return next((i for i, (_, d) in enumerate(self._items) if d == data), -1)

    def findText(self, text):
        return next((i for i, (t, _) in enumerate(self._items) if t == text), -1)

    def itemText(self, index):
        return self._items[index][0]

    def itemData(self, index):
        return self._items[index][1]

    def setCurrentIndex(self, index):
        index = index if 0 <= index < len(self._items) else -1
        if index != self._index:
            self._index = index
            self.currentIndexChanged.emit(index)

    @property
    def currentIndex(self):
        return self._index

    @currentIndex.setter
    def currentIndex(self, index):
        self.setCurrentIndex(index)

    @property
    def currentData(self):
        return self._items[self._index][1] if self._index >= 0 else None

    @property
    def currentText(self):
        return self._items[self._index][0] if self._index >= 0 else ""

    @currentText.setter
    def currentText(self, text):
        index = self.findText(str(text))
        if index >= 0:
            self.setCurrentIndex(index)

    def lineEdit(self):
        return self._lineEdit


class QProgressBar(QWidget):
    def __init__(self, *args):
        super().__init__()
        self.minimum, self.maximum, self.value = 0, 100, 0
        self.format = "%p%"
        self.textVisible = True

    def setRange(self, minimum, maximum):
        self.minimum, self.maximum = minimum, maximum

    def setValue(self, value):
        self.value = value

    def setFormat(self, text):
        self.format = text


class QGroupBox(QWidget):
    def __init__(self, title="", *args):
        super().__init__()
        self.title = title
