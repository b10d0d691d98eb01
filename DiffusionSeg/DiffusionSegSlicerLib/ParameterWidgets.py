"""Qt widgets for a method's parameters, built from the backend's metadata (Param.to_dict()) with
the labels people read (PanelRules.parameterLabel, data/parameter_labels.json). One function per
parameter type; no per-method code anywhere in the panel."""

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
        for choice, title in param.get("titles") or [(str(c), str(c)) for c in param["choices"]]:
            widget.addItem(title, choice)
        widget.setCurrentIndex(max(widget.findData(str(value)), 0))
        widget.currentIndexChanged.connect(lambda *_: onChange())
        getter = lambda: str(widget.currentData)
    else:
        widget = qt.QLineEdit()
        widget.text = "" if value is None else str(value)
        widget.textChanged.connect(lambda *_: onChange())
        getter = lambda: str(widget.text)
    widget.toolTip = param.get("help", "")
    widget.objectName = f"methodParameter_{param['name']}"
    return widget, getter



class MethodParameterForm:
    """The method's parameter rows in a form layout (Advanced > Method parameters), rebuilt when
    the method changes; `values()` reads them back by name."""

    def __init__(self, groupBox, onChange):
        self.groupBox = groupBox
        self.onChange = onChange
        self._getters = {}

    def rebuild(self, info, stored: dict) -> None:
        from .JobSettings import storedParameterValue

        layout = self.groupBox.layout()
        while layout.count():
            item = layout.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        self._getters = {}
        from .PanelRules import choiceTitles, parameterLabel

        for param in (p.to_dict() for p in (info.params if info else ())):
            if param["type"] == "choice":
                param["titles"] = choiceTitles(info.name, param)
            widget, getter = createParameterWidget(param, storedParameterValue(param, stored), self.onChange)
            self._getters[param["name"]] = getter
            layout.addRow(parameterLabel(info.name, param) + ":", widget)
        self.groupBox.visible = bool(self._getters)

    def values(self) -> dict:
        return {name: getter() for name, getter in self._getters.items()}
