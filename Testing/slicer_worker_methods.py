"""Launch the REAL DiffusionSegLib worker (cli `run`, job runner, image IO, pipeline) with the
model-free test methods registered, so the Slicer round trip runs without diffusion weights."""

import sys
import time
from pathlib import Path

import slicer_test_utils  # noqa: F401  (module folder on sys.path)
from DiffusionSegSlicerLib.Worker import WorkerLauncher
from fake_methods import BrightThreshold

from DiffusionSegLib.methods.base import MethodInfo

TESTING = Path(__file__).resolve().parent


class SlowBrightThreshold(BrightThreshold):
    """Sleeps before each batch (and checks for cancellation), so a test can cancel mid-run."""

    info = MethodInfo(name="slow-bright-threshold", label="Slow threshold (test)", description="slow",
                      prompt="optional", needs_checkpoint=False, default_model=None,
                      params=BrightThreshold.info.params)

    def segment(self, images, valid, indices=None):
        for _ in range(10):
            time.sleep(0.1)
            self.context.check_cancelled()
        return super().segment(images, valid)


WORKER_CODE = (
    "import sys; sys.path.insert(0, {testing!r}); "
    "import fake_methods, slicer_worker_methods as w; from DiffusionSegLib import methods as m; "
    "r = dict(m.available_methods()); "
    "r.update({{c.info.name: c for c in (fake_methods.BrightThreshold, fake_methods.PromptThreshold, "
    "fake_methods.SlowLoad, w.SlowBrightThreshold)}}); "
    "m._REGISTRY = r; from DiffusionSegLib.worker_entry import main; sys.exit(main(sys.argv[1:]))"
)


def workerCommand(*arguments):
    return [sys.executable, "-c", WORKER_CODE.format(testing=str(TESTING)), *arguments]


class RealWorkerLauncher(WorkerLauncher):
    """The real worker command line, with the test methods registered."""

    def command(self, *arguments):
        return workerCommand(*arguments)


EVIDENCE_WORKER_CODE = (
    "import sys; sys.path.insert(0, {testing!r}); "
    "import evidence_methods as e; from DiffusionSegLib import methods as m; "
    "r = dict(m.available_methods()); "
    "r.update({{c.info.name: c for c in (e.GreyProposals, e.Repaints, e.SdsegStandIn)}}); "
    "m._REGISTRY = r; from DiffusionSegLib.cli.main import main; sys.exit(main(sys.argv[1:]))"
)


class EvidenceWorkerLauncher(WorkerLauncher):
    """The real worker with the bundle test methods (Testing/evidence_methods.py) registered."""

    def command(self, *arguments):
        return [sys.executable, "-c", EVIDENCE_WORKER_CODE.format(testing=str(TESTING)), *arguments]
