"""Layer rules: the backend never pulls in slicer/qt/vtk; the Slicer side never pulls in torch."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from slicer_test_utils import MODULE_DIR, ROOT

SLICER_LIB = MODULE_DIR / "DiffusionSegSlicerLib"
HEAVY = ("torch", "diffusers", "transformers", "accelerate")
QT_ONLY = ("Widget", "FineTuneWidget", "SelectionWidget", "ServiceWidget", "ParameterNode", "ParameterWidgets",
           "InstallLogic", "SlicerDisplay", "StatusDisplay")   # need Slicer's GUI (or the stand-ins of test_slicer_panel.py)


def _importedTopLevelModules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _sysModulesAfter(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300,
                         env={"PYTHONPATH": f"{ROOT}:{MODULE_DIR}", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    return {name.split(".")[0] for name in json.loads(out.stdout.strip().splitlines()[-1])}


def test_backend_imports_without_slicer_qt_or_vtk():
    loaded = _sysModulesAfter("import DiffusionSegLib, DiffusionSegLib.contract.request, DiffusionSegLib.methods as m; m.available_methods()")
    assert not loaded & {"slicer", "qt", "ctk", "vtk", "vtkmodules", "slicer_core"}


def test_slicer_side_logic_never_imports_torch_at_runtime():
    loaded = _sysModulesAfter(
        "import slicer, DiffusionSegSlicerLib\n"
        "from DiffusionSegSlicerLib import DiffusionSegLogic\n"
        "DiffusionSegLogic(slicer.vtkMRMLScene()).methods")
    assert "DiffusionSegSlicerLib" in loaded
    assert not loaded & set(HEAVY)


@pytest.mark.parametrize("path", sorted(SLICER_LIB.glob("*.py")) + [MODULE_DIR / "DiffusionSeg.py"], ids=lambda p: p.name)
def test_no_slicer_side_file_mentions_torch_imports(path):
    if not path.exists():
        pytest.skip("module file not written yet")
    assert not _importedTopLevelModules(path) & set(HEAVY)


def test_headless_logic_files_do_not_import_qt():
    assert all((SLICER_LIB / f"{name}.py").is_file() for name in QT_ONLY)
    qtFree = [p for p in SLICER_LIB.glob("*.py") if p.stem not in QT_ONLY]
    for path in qtFree:
        assert not _importedTopLevelModules(path) & {"qt", "ctk", "slicer.util"}, path.name


def test_relative_imports_in_qt_only_files_resolve():
    """The Qt-only files cannot run here; at least every name they import from the package must
    exist (catches a rename that would only fail inside Slicer)."""
    for path in [SLICER_LIB / f"{name}.py" for name in QT_ONLY] + [MODULE_DIR / "DiffusionSeg.py"]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.level == 1 or (node.module or "").startswith("DiffusionSegSlicerLib")):
                moduleName = node.module.split(".")[-1] if node.module != "DiffusionSegSlicerLib" else "__init__"
                target = SLICER_LIB / f"{moduleName}.py"
                assert target.is_file(), f"{path.name}: no module {node.module}"
                defined = {n.name for n in ast.parse(target.read_text(encoding="utf-8")).body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
                defined |= {t.id for n in ast.parse(target.read_text(encoding="utf-8")).body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
                defined |= {a.asname or a.name for n in ast.parse(target.read_text(encoding="utf-8")).body if isinstance(n, ast.ImportFrom) for a in n.names}
                for alias in node.names:
                    assert alias.name in defined, f"{path.name}: {alias.name} is not defined in {target.name}"
