"""How the worker is launched: which interpreter, which environment, which command line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field

from .Process import WorkerProcess, workerEnvironment


def libraryParentDir() -> str:
    """The folder that holds the DiffusionSegLib package (source tree or qt-scripted-modules)."""
    import DiffusionSegLib

    return os.path.dirname(os.path.dirname(os.path.abspath(DiffusionSegLib.__file__)))


def slicerPythonExecutable() -> str:
    """Slicer's own Python launcher (PythonSlicer), falling back to this interpreter."""
    return shutil.which("PythonSlicer") or sys.executable


@dataclass
class WorkerLauncher:
    """`python` empty: Slicer's Python. Otherwise another interpreter (a conda env with CUDA
    torch, say); it gets a clean environment so Slicer's PYTHONHOME does not leak into it."""

    python: str = ""
    baseEnvironment: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    cleanEnvironment: dict[str, str] | None = None   # e.g. slicer.util.startupEnvironment()

    @property
    def isExternal(self) -> bool:
        return bool(self.python.strip())

    @property
    def executable(self) -> str:
        return self.python.strip() or slicerPythonExecutable()

    def environment(self, device: str = "auto") -> dict[str, str]:
        base = self.cleanEnvironment if (self.isExternal and self.cleanEnvironment) else self.baseEnvironment
        return workerEnvironment(base, libraryParentDir(), self.isExternal, device)

    def command(self, *arguments: str) -> list[str]:
        return [self.executable, "-m", "DiffusionSegLib", *arguments]

    def runCommand(self, requestPath: str, device: str = "auto") -> WorkerProcess:
        return WorkerProcess(self.command("run", "--request", str(requestPath)),
                             env=self.environment(device))

    def trainCommand(self, method: str, arguments: list[str], device: str = "auto") -> WorkerProcess:
        """`train <method> ARGS...` (e.g. fine-tuning SDSeg on corrections), same events and cancel."""
        return WorkerProcess(self.command("train", method, *[str(a) for a in arguments]),
                             env=self.environment(device))

    def checkInterpreter(self, timeout: float = 120.0) -> str:
        """Check that the interpreter can run the worker (imports the backend and torch).
        Returns a one-line description; raises RuntimeError with the interpreter's answer."""
        if self.isExternal and not os.path.isfile(self.executable):
            raise RuntimeError(f"Python interpreter not found: {self.executable}")
        code = ("import DiffusionSegLib, torch, diffusers, transformers, SimpleITK; "
                "print('DiffusionSegLib', DiffusionSegLib.__version__, 'torch', torch.__version__, "
                "'cuda' if torch.cuda.is_available() else 'no cuda')")
        try:
            result = subprocess.run([self.executable, "-c", code], capture_output=True, text=True,
                                    env=self.environment(), timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RuntimeError(f"Could not run {self.executable}: {exc}") from None
        if result.returncode != 0:
            lastLine = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"{self.executable} cannot run the DiffusionSeg worker: {lastLine}")
        return result.stdout.strip()
