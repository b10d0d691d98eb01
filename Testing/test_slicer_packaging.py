"""Extension packaging: a real CMake configure + build + install of the extension against the
stand-in SlicerConfig.cmake in Testing/SlicerStandIn (no Slicer build needed), then the
installed tree is checked file by file and imported the way Slicer would import it."""

import json
import os
import py_compile
import shutil
import subprocess
import sys

import pytest
from slicer_test_utils import MODULE_DIR, ROOT

STAND_IN = ROOT / "Testing" / "SlicerStandIn"
SCRIPTED = "lib/Slicer-5.13/qt-scripted-modules"
pytestmark = pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")


def cmake(*args, cwd=None):
    out = subprocess.run(["cmake", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    base = tmp_path_factory.mktemp("packaging")
    build, prefix = base / "build", base / "install"
    cmake("-S", ROOT, "-B", build, f"-DSlicer_DIR={STAND_IN}")
    cmake("--build", build)
    cmake("--install", build, "--prefix", prefix)
    return build, prefix / SCRIPTED


def sourceFiles(folder, patterns):
    files = set()
    for pattern in patterns:
        files |= {p.relative_to(folder.parent if folder.name == "DiffusionSegLib" else folder).as_posix()
                  for p in folder.rglob(pattern) if "__pycache__" not in p.parts}
    return files


def test_every_module_file_is_installed(installed):
    _, tree = installed
    expected = sourceFiles(MODULE_DIR, ["*.py", "*.json", "*.ui", "*.png", "*.txt"]) - {"CMakeLists.txt"}
    missing = sorted(f for f in expected if not (tree / f).is_file())
    assert not missing, f"not listed in DiffusionSeg/CMakeLists.txt: {missing}"


def test_backend_package_and_its_data_are_installed(installed):
    _, tree = installed
    expected = sourceFiles(ROOT / "DiffusionSegLib", ["*.py", "*.json"])
    assert "DiffusionSegLib/methods/base.py" in expected and "DiffusionSegLib/data/intensity_presets.json" in expected
    missing = sorted(f for f in expected if not (tree / f).is_file())
    assert not missing


def test_installed_tree_imports_like_inside_slicer(installed, tmp_path):
    """With only qt-scripted-modules on sys.path (as in Slicer), the backend, its method list,
    the module's logic, its data files and the worker command all resolve to the installed copy."""
    _, tree = installed
    code = ("import json, DiffusionSegLib, DiffusionSegLib.methods as m, DiffusionSegLib.api as i\n"
            "from DiffusionSegSlicerLib import TerminologyTable\n"
            "from DiffusionSegSlicerLib.Requirements import readRequirements\n"
            "from DiffusionSegSlicerLib.Worker import libraryParentDir\n"
            "m.available_methods(); i.presets()\n"
            "print(json.dumps({'lib': DiffusionSegLib.__file__, 'parent': libraryParentDir(),"
            " 'terms': len(TerminologyTable()), 'reqs': readRequirements()}))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(tree)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["lib"].startswith(str(tree)) and info["parent"] == str(tree)
    assert info["terms"] > 10 and any(r.startswith("diffusers") for r in info["reqs"])
    worker = subprocess.run([sys.executable, "-m", "DiffusionSegLib", "--help"], capture_output=True, text=True,
                            cwd=tmp_path, env=env, timeout=300)
    assert worker.returncode == 0 and "run" in worker.stdout


def test_installed_python_compiles(installed, tmp_path):
    """The real ctkMacroCompilePythonScript byte-compiles every script; do the same."""
    _, tree = installed
    for index, path in enumerate(tree.rglob("*.py")):
        py_compile.compile(str(path), doraise=True, cfile=str(tmp_path / f"{index}.pyc"))


def test_extension_metadata_and_tests_registered(installed):
    build, _ = installed
    s4ext = dict(line.split(" ", 1) for line in (build / "DiffusionSeg.s4ext").read_text(encoding="utf-8").splitlines())
    assert s4ext["category"] == "Segmentation" and s4ext["depends"] == "PyTorch"
    record = (build / "SlicerStandInRecord.txt").read_text(encoding="utf-8").splitlines()
    assert "module DiffusionSeg" in record and "generic-tests DiffusionSeg" in record
    assert "python-unittest DiffusionSeg.py" in record


def test_extensions_index_entry_matches_the_project():
    entry = json.loads((ROOT / "DiffusionSeg.json").read_text(encoding="utf-8"))
    assert entry["category"] == "Segmentation" and entry["build_dependencies"] == ["PyTorch"]
    assert entry["scm_url"].endswith("/SlicerDiffusionSeg.git")
    assert "project(DiffusionSeg)" in (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    assert (ROOT / "LICENSE").is_file()


def test_requirements_never_pin_torch_or_simpleitk():
    from DiffusionSegSlicerLib.Requirements import missingRequirements, readRequirements

    names = [r.split(">")[0].split("=")[0].strip().lower() for r in readRequirements()]
    assert {"diffusers", "transformers", "safetensors", "huggingface_hub"} <= set(names)
    assert not {"torch", "simpleitk", "numpy"} & set(names)
    versions = {"diffusers": "0.29.0", "transformers": "4.45.0"}

    def fake(name):
        if name not in versions:
            import importlib.metadata
            raise importlib.metadata.PackageNotFoundError(name)
        return versions[name]

    assert missingRequirements(["diffusers>=0.30", "transformers>=4.40", "safetensors"], fake) == \
        ["diffusers>=0.30", "safetensors"]


def test_broken_cmake_list_is_a_configure_error(tmp_path):
    """The stand-in is strict like Slicer: a listed file that does not exist fails the configure."""
    copy = tmp_path / "src"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.pyc"))
    os.remove(copy / "DiffusionSeg" / "DiffusionSegSlicerLib" / "Signal.py")
    out = subprocess.run(["cmake", "-S", copy, "-B", tmp_path / "build", f"-DSlicer_DIR={STAND_IN}"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode != 0 and "Signal.py" in out.stderr
