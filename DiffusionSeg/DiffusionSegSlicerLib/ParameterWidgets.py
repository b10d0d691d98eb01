"""Qt widgets for a method's parameters, built from the backend's metadata (Param.to_dict()).
One function per parameter type; no per-method code anywhere in the panel."""

import qt


def createParameterWidget(param: dict, value, onChange):
    """Return (widget, getter) for one parameter; `onChange()` is called on every edit."""
    kind = param["type"]
    if kind == "bool":
        widget = qt.QCheckBox()
        widget.checked = bool(value)
        widget.toggled.connect(lambda *_: onChange())
        getter = lambda: bool(widget.checked)
    elif kind == "int":
        widget = qt.QSpinBox()
        widget.minimum = int(param["minimum"]) if param.get("minimum") is not None else -2147483647
        widget.maximum = int(param["maximum"]) if param.get("maximum") is not None else 2147483647
        widget.value = int(value)
        widget.valueChanged.connect(lambda *_: onChange())
        getter = lambda: int(widget.value)
    elif kind == "float":
        widget = qt.QDoubleSpinBox()
        widget.decimals = 4
        widget.minimum = float(param["minimum"]) if param.get("minimum") is not None else -1e9
        widget.maximum = float(param["maximum"]) if param.get("maximum") is not None else 1e9
        span = widget.maximum - widget.minimum
        widget.singleStep = span / 100.0 if span < 1e6 else 0.1
        widget.value = float(value)
        widget.valueChanged.connect(lambda *_: onChange())
        getter = lambda: float(widget.value)
    elif kind == "choice":
        widget = qt.QComboBox()
        for choice in param["choices"]:
            widget.addItem(str(choice))
        widget.currentText = str(value)
        widget.currentIndexChanged.connect(lambda *_: onChange())
        getter = lambda: str(widget.currentText)
    else:
        widget = qt.QLineEdit()
        widget.text = "" if value is None else str(value)
        widget.textChanged.connect(lambda *_: onChange())
        getter = lambda: str(widget.text)
    widget.toolTip = param.get("help", "")
    widget.objectName = f"methodParameter_{param['name']}"
    return widget, getter

