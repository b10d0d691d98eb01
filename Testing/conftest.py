"""Shared pytest fixtures. Each fixture is self-contained; add new ones with distinct names."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_sd_path(tmp_path_factory: pytest.TempPathFactory):
    """A tiny SD-shaped diffusers folder (64 px, latent 8, SD v1 block layout), saved once per
    session with safetensors and loaded by tests through the same loader users hit."""
    from DiffusionSegLib.synthetic_models import save_tiny_stable_diffusion

    return save_tiny_stable_diffusion(tmp_path_factory.mktemp("tiny-sd"))
