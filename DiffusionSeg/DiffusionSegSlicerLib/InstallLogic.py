"""Dependencies, checked on the first Apply (never while the panel is built).

Slicer's Python: torch through the PyTorch extension (PyTorchUtils picks the CUDA build that
matches the driver), then the packages of Resources/requirements.txt after a confirmation that
lists them. Another interpreter (a conda env): nothing is installed; the interpreter is checked.
"""

from __future__ import annotations

import importlib.metadata
import logging

import slicer
from slicer.i18n import tr as _

from .Requirements import (
    TORCH_REQUIREMENT,
    missingRequirements,
    packageIndexReachable,
    readRequirements,
)


class InstallError(RuntimeError):
    def __init__(self, message: str, restartRequired: bool = False):
        super().__init__(message)
        self.restartRequired = restartRequired


OFFLINE_HINT = _(
    "This computer cannot reach the Python package index. Connect to the internet, or set a proxy "
    "(HTTPS_PROXY) or a local index (PIP_INDEX_URL) before starting Slicer, or choose a worker "
    "Python that already has the packages (Advanced > Worker Python).")


class InstallLogic:
    def __init__(self, confirm=None, requirements: list[str] | None = None):
        self.confirm = confirm or (lambda text, details: slicer.util.confirmOkCancelDisplay(text, detailedText=details))
        self.requirements = requirements if requirements is not None else readRequirements()
        self._checked = False

    def ensureDependencies(self, launcher) -> None:
        """Raise InstallError when the worker cannot run; install what is missing after asking."""
        if launcher.isExternal:
            logging.info("DiffusionSeg worker Python: " + launcher.checkInterpreter())
            return
        if self._checked:
            return
        self._ensureTorch()
        missing = missingRequirements(self.requirements)
        if missing:
            if not packageIndexReachable():
                raise InstallError(_("DiffusionSeg needs these Python packages: {packages}.").format(
                    packages=", ".join(missing)) + "\n" + OFFLINE_HINT)
            if not self.confirm(
                    _("DiffusionSeg needs to install Python packages into Slicer (a few minutes, "
                      "about 50 MB). Continue?"), "\n".join(missing)):
                raise InstallError(_("The packages were not installed; DiffusionSeg cannot run."))
            slicer.util.pip_install(missing)   # progress dialog with log (slicer.packaging, 5.12+)
            still = missingRequirements(self.requirements)
            if still:
                raise InstallError(_("Installing {packages} failed; see the Python console.").format(
                    packages=", ".join(still)))
        self._checked = True

    def _ensureTorch(self) -> None:
        try:
            import PyTorchUtils  # the PyTorch extension (EXTENSION_DEPENDS)
        except ImportError:
            raise InstallError(_("DiffusionSeg needs the PyTorch extension. Install 'PyTorch' from the "
                                 "Extensions Manager and restart Slicer."), restartRequired=True) from None
        torchLogic = PyTorchUtils.PyTorchUtilsLogic()
        if torchLogic.torchInstalled():
            if not missingRequirements([TORCH_REQUIREMENT]):
                return
            version = importlib.metadata.version("torch")
            raise InstallError(_("DiffusionSeg needs {requirement}, but torch {version} is installed. "
                                 "Use the PyTorch Utils module to uninstall it and install a newer one.")
                               .format(requirement=TORCH_REQUIREMENT, version=version))
        if not packageIndexReachable():
            raise InstallError(_("PyTorch is not installed yet.") + "\n" + OFFLINE_HINT)
        # PyTorchUtils imports torch once after installing it; DiffusionSeg itself never does.
        torch = torchLogic.installTorch(askConfirmation=True,
                                        torchVersionRequirement=TORCH_REQUIREMENT[len("torch"):])
        if torch is None:
            raise InstallError(_("PyTorch was not installed; DiffusionSeg cannot run without it."))

