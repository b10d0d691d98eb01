"""First-Apply dependency logic (InstallLogic) with Slicer's GUI helpers replaced by recorders:
slicer.i18n and the PyTorch extension do not exist in slicer-core, everything else is real."""

import importlib
import sys
import types

import pytest
import slicer
import slicer.util
import slicer_test_utils  # noqa: F401


class FakeTorchLogic:
    installed = True
    calls = []

    def torchInstalled(self):
        return FakeTorchLogic.installed

    def installTorch(self, askConfirmation, torchVersionRequirement):
        FakeTorchLogic.calls.append((askConfirmation, torchVersionRequirement))
        return object()


@pytest.fixture
def install(monkeypatch):
    i18n = types.ModuleType("slicer.i18n")
    i18n.tr = lambda text: text
    monkeypatch.setitem(sys.modules, "slicer.i18n", i18n)
    monkeypatch.setattr(slicer, "i18n", i18n, raising=False)
    torchUtils = types.ModuleType("PyTorchUtils")
    torchUtils.PyTorchUtilsLogic = FakeTorchLogic
    monkeypatch.setitem(sys.modules, "PyTorchUtils", torchUtils)
    FakeTorchLogic.installed, FakeTorchLogic.calls = True, []
    pipCalls = []
    monkeypatch.setattr(slicer.util, "pip_install", lambda reqs: pipCalls.append(reqs), raising=False)
    module = importlib.reload(importlib.import_module("DiffusionSegSlicerLib.InstallLogic"))
    module.pipCalls = pipCalls
    return module


class Launcher:
    def __init__(self, external):
        self.isExternal, self.checked = external, 0

    def checkInterpreter(self):
        self.checked += 1
        return "DiffusionSegLib 0.1.0 torch 2.13 no cuda"


def test_external_interpreter_is_checked_and_nothing_installed(install):
    asked = []
    logic = install.InstallLogic(confirm=lambda *a: asked.append(a), requirements=["no-such-package-xyz>=1"])
    launcher = Launcher(external=True)
    logic.ensureDependencies(launcher)
    assert launcher.checked == 1 and not asked and not install.pipCalls and not FakeTorchLogic.calls


def test_missing_packages_are_listed_confirmed_and_installed(install, monkeypatch):
    monkeypatch.setattr(install, "packageIndexReachable", lambda: True)
    asked = []
    logic = install.InstallLogic(confirm=lambda text, details: asked.append(details) or True,
                                 requirements=["diffusers>=0.1", "no-such-package-xyz>=1"])
    with pytest.raises(install.InstallError, match="failed"):   # the fake pip installs nothing
        logic.ensureDependencies(Launcher(external=False))
    assert asked == ["no-such-package-xyz>=1"]
    assert install.pipCalls == [["no-such-package-xyz>=1"]]


def test_declined_or_offline_installs_are_clear_errors(install, monkeypatch):
    logic = install.InstallLogic(confirm=lambda *a: False, requirements=["no-such-package-xyz>=1"])
    monkeypatch.setattr(install, "packageIndexReachable", lambda: True)
    with pytest.raises(install.InstallError, match="not installed"):
        logic.ensureDependencies(Launcher(external=False))
    monkeypatch.setattr(install, "packageIndexReachable", lambda: False)
    with pytest.raises(install.InstallError) as offline:
        logic.ensureDependencies(Launcher(external=False))
    assert "no-such-package-xyz" in str(offline.value) and "PIP_INDEX_URL" in str(offline.value)
    assert not install.pipCalls


def test_torch_comes_from_the_pytorch_extension(install, monkeypatch):
    monkeypatch.setattr(install, "packageIndexReachable", lambda: True)
    logic = install.InstallLogic(confirm=lambda *a: True, requirements=[])
    FakeTorchLogic.installed = False
    logic.ensureDependencies(Launcher(external=False))
    assert FakeTorchLogic.calls == [(True, ">=2.1")]
    monkeypatch.setattr(install, "TORCH_REQUIREMENT", "torch>=99")
    FakeTorchLogic.installed = True
    with pytest.raises(install.InstallError, match="torch>=99"):
        install.InstallLogic(confirm=lambda *a: True, requirements=[]).ensureDependencies(Launcher(external=False))


def test_missing_pytorch_extension_asks_for_a_restart(install, monkeypatch):
    monkeypatch.setitem(sys.modules, "PyTorchUtils", None)   # import fails
    with pytest.raises(install.InstallError) as error:
        install.InstallLogic(confirm=lambda *a: True, requirements=[]).ensureDependencies(Launcher(external=False))
    assert error.value.restartRequired and "Extensions Manager" in str(error.value)
