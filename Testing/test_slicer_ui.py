"""The panel's .ui file: valid Designer XML holding every widget the module looks up, and the
parameter-node bindings naming real wrapper fields."""

import ast
import re
import xml.etree.ElementTree as ET

from slicer_test_utils import MODULE_DIR

UI_FILE = MODULE_DIR / "Resources" / "UI" / "DiffusionSeg.ui"
LIB = MODULE_DIR / "DiffusionSegSlicerLib"


def uiWidgets():
    root = ET.parse(UI_FILE).getroot()
    assert root.tag == "ui" and root.find("widget").get("class") == "qMRMLWidget"
    return {w.get("name"): w for w in root.iter("widget")}


def test_ui_is_valid_xml_with_unique_names():
    root = ET.parse(UI_FILE).getroot()
    names = [w.get("name") for w in root.iter("widget")]
    assert len(names) == len(set(names)), "duplicate widget names"
    declared = {c.findtext("class") for c in root.iter("customwidget")}
    used = {w.get("class") for w in root.iter("widget")}
    assert {c for c in used if not c.startswith("Q")} <= declared


def test_every_widget_the_module_uses_exists_in_the_ui():
    names = set(uiWidgets())
    sources = [MODULE_DIR / "DiffusionSeg.py", LIB / "Widget.py", LIB / "FineTuneWidget.py", LIB / "StatusDisplay.py"]
    used = set()
    for path in sources:
        used |= set(re.findall(r"\bui\.(\w+)", path.read_text(encoding="utf-8")))
        # getattr(self.ui, name) over a literal tuple of names
        for match in re.findall(r'for name in \(([^)]*)\):\s*\n\s*getattr\(self\.ui', path.read_text(encoding="utf-8")):
            used |= set(re.findall(r'"(\w+)"', match))
    assert len(used) > 15
    assert used <= names, f"missing in the .ui: {sorted(used - names)}"


def test_parameter_bindings_name_wrapper_fields():
    tree = ast.parse((LIB / "ParameterNode.py").read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "DiffusionSegParameterNode")
    fields = {n.target.id for n in cls.body if isinstance(n, ast.AnnAssign)}
    bound = {}
    for name, widget in uiWidgets().items():
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound[name] = prop.findtext("string")
    assert set(bound.values()) <= fields, sorted(set(bound.values()) - fields)
    assert {"inputVolume", "roi", "outputSegmentation", "prompt", "device"} <= set(bound.values())


def test_input_selector_accepts_scalar_and_rgb_volumes():
    combo = uiWidgets()["inputVolumeSelector"]
    types = [s.text for p in combo.findall("property") if p.get("name") == "nodeTypes" for s in p.iter("string")]
    assert types == ["vtkMRMLScalarVolumeNode", "vtkMRMLVectorVolumeNode"]


def test_user_visible_strings_in_widget_code_are_translatable():
    """Message boxes and labels in the panel go through slicer.i18n.tr (imported as _)."""
    source = "\n".join((LIB / name).read_text(encoding="utf-8") for name in ("Widget.py", "FineTuneWidget.py"))
    for call in ("errorDisplay(", "infoDisplay(", "statusLabel.text = "):
        for line in [l for l in source.splitlines() if call in l]:
            assert "_(" in line or "description" in line or line.rstrip().endswith('""'), line


def test_fine_tune_section_holds_its_widgets_and_follows_the_scene():
    widgets = uiWidgets()
    assert widgets["fineTuneCollapsibleButton"].get("class") == "ctkCollapsibleButton"
    for name in ("correctedSegmentationSelector", "fineTuneCheckpointPathLineEdit", "fineTuneOutputPathLineEdit",
                 "fineTuneMinutesSpinBox", "fineTuneStepsSpinBox", "fineTuneButton"):
        assert name in widgets, name
    combo = widgets["correctedSegmentationSelector"]
    types = [s.text for p in combo.findall("property") if p.get("name") == "nodeTypes" for s in p.iter("string")]
    assert types == ["vtkMRMLSegmentationNode"]
    root = ET.parse(UI_FILE).getroot()
    receivers = {c.findtext("receiver") for c in root.iter("connection") if "mrmlSceneChanged" in c.findtext("signal")}
    assert "correctedSegmentationSelector" in receivers


def test_prompt_box_takes_one_prompt_per_line():
    """VoxTell-style: several prompts, one per line. Slicer's parameter-node connector binds a
    plain `QTextEdit` (exactly that class) to a str field; rich text must not be accepted."""
    widget = uiWidgets()["promptTextEdit"]
    assert widget.get("class") == "QTextEdit"
    props = {p.get("name"): p for p in widget.findall("property")}
    assert props["SlicerParameterName"].findtext("string") == "prompt"
    assert props["acceptRichText"].findtext("bool") == "false"
    from DiffusionSegSlicerLib.JobSettings import splitPrompts

    assert splitPrompts("liver\nliver tumour\n\n") == ["liver", "liver tumour"]
