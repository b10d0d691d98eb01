"""How the worker is launched: which interpreter, which environment, which command line.

Every worker runs isolated from the folder Slicer happens to be in: its working directory is
its own temporary job folder, and the interpreter is started so that the working directory is
not on the import path (`-I` for another interpreter, whose environment we set anyway; `-P` for
Slicer's own Python on 3.11+, which needs Slicer's PYTHONHOME/PYTHONPATH), with the backend
folder put on the path explicitly by a one-line bootstrap. A `psutil.py` planted where Slicer
was started is therefore never imported.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

from .Process import WorkerProcess, workerEnvironment


def libraryParentDir() -> str:
    """The folder that holds the DiffusionSegLib package (source tree or qt-scripted-modules)."""
    import DiffusionSegLib

    return os.path.dirname(os.path.dirname(os.path.abspath(DiffusionSegLib.__file__)))


def slicerPythonExecutable() -> str:
    """Slicer's own Python launcher (PythonSlicer), falling back to this interpreter."""
    return shutil.which("PythonSlicer") or sys.executable


BOOTSTRAP = ("import sys; paths = {paths!r}; "
             "sys.path[:] = paths + [p for p in sys.path if p and p != '.' and p not in paths]; "
             "{body}")
WORKER_BODY = "from DiffusionSegLib.worker_entry import main; sys.exit(main())"


def bootstrapCode(body: str, paths: list[str] | None = None) -> str:
    """`-c` code: the backend folder first on the path, the current folder ('' or '.') off it."""
    return BOOTSTRAP.format(paths=list(paths if paths is not None else [libraryParentDir()]), body=body)


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

    def isolationFlags(self) -> list[str]:
        if self.isExternal:
            return ["-I", "-X", "utf8"]   # its environment is ours to set: ignore it, no user site
        return (["-P"] if sys.version_info >= (3, 11) else []) + ["-X", "utf8"]

    def pythonCommand(self, code: str, *arguments: str) -> list[str]:
        return [self.executable, *self.isolationFlags(), "-c", code, *[str(a) for a in arguments]]

    def command(self, *arguments: str) -> list[str]:
        return self.pythonCommand(bootstrapCode(WORKER_BODY), *arguments)

    def runCommand(self, requestPath: str, device: str = "auto", workDir: str | None = None) -> WorkerProcess:
        """The worker for one job; `workDir` (its temporary folder) becomes its working directory."""
        return WorkerProcess(self.command("run", "--request", str(requestPath)),
                             env=self.environment(device), cwd=workDir or os.path.dirname(str(requestPath)))

    def trainCommand(self, method: str, arguments: list[str], device: str = "auto",
                     workDir: str | None = None) -> WorkerProcess:
        """`train <method> ARGS...` (e.g. fine-tuning SDSeg on corrections), same events and cancel."""
        return WorkerProcess(self.command("train", method, *[str(a) for a in arguments]),
                             env=self.environment(device), cwd=workDir or tempfile.gettempdir())

    def runCode(self, body: str, *arguments: str, timeout: float = 120.0, device: str = "auto",
                cwd: str | None = None) -> subprocess.CompletedProcess:
        """Run a short Python snippet in the worker interpreter, isolated like a job (in a fresh
        empty folder unless `cwd` is given)."""
        with tempfile.TemporaryDirectory(prefix="DiffusionSeg-check-") as folder:
            return subprocess.run(self.pythonCommand(bootstrapCode(body), *arguments), capture_output=True,
                                  text=True, env=self.environment(device), timeout=timeout, cwd=cwd or folder,
                                  stdin=subprocess.DEVNULL)

    def checkInterpreter(self, timeout: float = 120.0) -> str:
        """Check that the interpreter can run the worker (imports the backend and torch).
        Returns a one-line description; raises RuntimeError with the interpreter's answer."""
        if self.isExternal and not os.path.isfile(self.executable):
            raise RuntimeError(f"Python interpreter not found: {self.executable}")
        code = ("import DiffusionSegLib, torch, diffusers, transformers, SimpleITK; "
                "print('DiffusionSegLib', DiffusionSegLib.__version__, 'torch', torch.__version__, "
                "'cuda' if torch.cuda.is_available() else 'no cuda')")
        try:
            result = self.runCode(code, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RuntimeError(f"Could not run {self.executable}: {exc}") from None
        if result.returncode != 0:
            lastLine = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"{self.executable} cannot run the DiffusionSeg worker: {lastLine}")
        return result.stdout.strip()
