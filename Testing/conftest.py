"""Shared pytest fixtures. Each fixture is self-contained; add new ones with distinct names."""

from __future__ import annotations

import locale
import os

import pytest

try:  # The Slicer-side tests run without torch.
    import torch
except ImportError:  # pragma: no cover
    torch = None

if torch is not None:
    # Tiny models on a shared CPU run far faster single-threaded than oversubscribed
    # (measured 10x on a loaded 2-core box). Override with DIFFUSIONSEG_TEST_THREADS.
    torch.set_num_threads(int(os.environ.get("DIFFUSIONSEG_TEST_THREADS", "1")))


def pytest_collection_modifyitems(config, items):
    """`cuda`-marked tests run where CUDA exists and are skipped, saying so, elsewhere."""
    if torch is not None and torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (none here)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _locale_as_it_was():
    """A test that writes DICOM with SimpleITK leaves the process in the "C" locale (GDCM's writer
    calls setlocale), after which text=True subprocesses and read_text() in later tests decode as
    ASCII. The product never writes DICOM through GDCM (highdicom does); tests put it back."""
    before = locale.setlocale(locale.LC_CTYPE)
    yield
    if locale.setlocale(locale.LC_CTYPE) != before:
        locale.setlocale(locale.LC_CTYPE, before)


@pytest.fixture(scope="session")
def tiny_sd_path(tmp_path_factory: pytest.TempPathFactory):
    """A tiny SD-shaped diffusers folder (64 px, latent 8, SD v1 block layout), saved once per
    session with safetensors and loaded by tests through the same loader users hit."""
    from DiffusionSegLib.testing.models import save_tiny_stable_diffusion

    return save_tiny_stable_diffusion(tmp_path_factory.mktemp("tiny-sd"))


@pytest.fixture()
def web_app(tmp_path):
    """make(mode): the browser app's server side without a browser (its own trame server and
    private folder), with its service `off` (no jobs) or `local`."""
    made = []

    def make(mode: str = "off"):
        import slicer_test_utils  # noqa: F401  (puts the Slicer module's lib on sys.path)
        from DiffusionSegSlicerLib.ServiceManager import ServiceSettings
        from trame.app import get_server

        from DiffusionSegWeb.app import WebApp
        from DiffusionSegWeb.files import Workspace

        workspace = Workspace(50_000_000)
        made.append(workspace)
        return WebApp(server=get_server(f"test-web-{len(made)}-{tmp_path.name}"), workspace=workspace,
                      serviceSettings=ServiceSettings(mode=mode))

    yield make
    for workspace in made:
        workspace.remove()
