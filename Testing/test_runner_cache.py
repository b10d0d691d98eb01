"""The runner's warm caches and in-pass cancellation, in process: models load once per
(reference, device, dtype), per-image latents and text embeddings are reused without changing
results (on the planted model at the shipped defaults, so the results compared hold the
target), budgets and idle timeouts unload, and a cancel set in the middle of a UNet pass of
the tiny SD model stops the job before the next block while the model stays warm."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from helpers import rgb_image
from planted_cases import CT, ct_volume, dice, truth_of, write

from DiffusionSegLib.contract.errors import JobCancelled
from DiffusionSegLib.contract.events import CancelToken
from DiffusionSegLib.contract.request import JobRequest, PipelineOptions
from DiffusionSegLib.jobs.runner import Runner
from DiffusionSegLib.runtime.cancel_hooks import block_modules
from DiffusionSegLib.runtime.model_cache import ModelCache, cached_load


def request(tmp_path: Path, model: Path, name: str, prompt: str = "cell", image: str = "cell.png",
            **params) -> JobRequest:
    if not (tmp_path / image).exists():
        sitk.WriteImage(rgb_image(seed=len(image)), str(tmp_path / image))
    return JobRequest(input=str(tmp_path / image), output=str(tmp_path / name), method="adzus", prompt=prompt,
                      model=str(model), device="cpu", params={"inversion_steps": 10, **params})


def labels(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def planted(tmp_path: Path, name: str, method: str = "adzus", prompt: str = "lesion", image: str = "ct.nrrd",
            **params) -> JobRequest:
    """A job on the planted model at the shipped defaults, on a small CT with a lesion on slice 1."""
    if not (tmp_path / image).exists():
        write(ct_volume(3, 48, {1: 0.08}, seed=len(image)), tmp_path / image)
    return JobRequest(input=str(tmp_path / image), output=str(tmp_path / name), method=method, prompt=prompt,
                      model="planted", device="cpu", params=params, pipeline=PipelineOptions(intensity=CT))


def test_second_job_reuses_the_loaded_model_and_the_image_latents(tmp_path):
    runner = Runner()
    first = runner.run(planted(tmp_path, "a.nrrd"), lambda e: None)
    (parts,) = runner.models.values()
    second = runner.run(planted(tmp_path, "b.nrrd", prompt="tumour"), lambda e: None)
    assert runner.models.loads == 1 and runner.models.hits == 1
    assert runner.models.values() == [parts]  # the very same modules, not a reload
    stats = runner.features.describe()
    assert stats["hits"].get("vae-latent") == 3  # same image (3 slices), new prompt: no second VAE encode
    assert stats["misses"].get("text-embedding") == 2  # two different prompts, each encoded once
    assert first.timings["load"] > 0 and "load" in second.timings
    # The cached path gives exactly what a cold runner gives, and it is the right answer.
    Runner().run(planted(tmp_path, "c.nrrd", prompt="tumour"), lambda e: None)
    warm, cold = labels(tmp_path / "b.nrrd"), labels(tmp_path / "c.nrrd")
    assert dice(warm > 0, truth_of(tmp_path / "ct.nrrd", CT)) >= 0.85
    np.testing.assert_array_equal(warm, cold)


def test_a_different_image_misses_the_latent_cache(tmp_path):
    runner = Runner()
    runner.run(planted(tmp_path, "a.nrrd"), lambda e: None)
    runner.run(planted(tmp_path, "b.nrrd", image="other.nrrd"), lambda e: None)
    stats = runner.features.describe()
    assert stats["misses"]["vae-latent"] == 6 and "vae-latent" not in stats["hits"]
    assert runner.models.loads == 1


def test_budget_evicts_least_recently_used_and_never_a_model_in_use():
    import torch

    cache = ModelCache(budget_bytes=3000)
    small = lambda: torch.nn.Linear(20, 20)  # (400 + 20) floats = 1680 bytes  # noqa: E731
    with cache.session():
        a = cached_load(("m", "a"), small)
        b = cached_load(("m", "b"), small)  # over budget, but both are pinned by this session
        assert cache.total_bytes() == 2 * 1680
    assert [e["key"] for e in cache.describe()["models"]] == [["b"]]  # a, least recent, went
    with cache.session():
        assert cached_load(("m", "b"), small) is b
        assert cached_load(("m", "a"), small) is not a  # loaded again
    assert cache.loads == 3 and cache.evictions == 2


def test_idle_models_are_unloaded():
    import time

    import torch

    cache = ModelCache(idle_seconds=60)
    with cache.session():
        cached_load(("m", "a"), lambda: torch.nn.Linear(2, 2))
        assert cache.unload_idle(now=time.monotonic() + 120) == []  # in use: kept
    assert cache.unload_idle(now=time.monotonic() + 30) == []
    assert cache.unload_idle(now=time.monotonic() + 120) == [("m", "a")]
    assert cache.describe()["models"] == []


def test_cancel_in_the_middle_of_a_unet_pass(tmp_path, tiny_sd_path):
    runner = Runner()
    runner.run(request(tmp_path, tiny_sd_path, "warm.nrrd"), lambda e: None)
    (parts,) = runner.models.values()
    token = CancelToken()
    calls = {"down": 0, "up": 0}
    first_down = parts.unet.down_blocks[0].resnets[0]
    counters = [first_down.register_forward_hook(lambda *a: calls.__setitem__("down", calls["down"] + 1)),
                parts.unet.up_blocks[0].register_forward_pre_hook(lambda *a: calls.__setitem__("up", calls["up"] + 1))]
    # The user presses Cancel while the first ResNet of the first UNet pass is running.
    cancel = first_down.register_forward_hook(lambda *a: token.cancel())
    try:
        with pytest.raises(JobCancelled):
            runner.run(request(tmp_path, tiny_sd_path, "cancelled.nrrd", latent_mode="clean"), lambda e: None, token)
    finally:
        for handle in [*counters, cancel]:
            handle.remove()
    assert calls == {"down": 1, "up": 0}  # stopped inside the pass, long before the up blocks
    assert not (tmp_path / "cancelled.nrrd").exists()
    assert runner.models.values() == [parts]  # the warm model stays loaded
    assert all(not m._forward_pre_hooks for m in block_modules(parts.unet))  # no hook left behind
    runner.run(request(tmp_path, tiny_sd_path, "after.nrrd"), lambda e: None)
    assert runner.models.loads == 1 and (tmp_path / "after.nrrd").exists()


def test_diffugts_after_adzus_on_the_same_image_encodes_again(tmp_path):
    """DiffuGTS reads the VAE encoder's inner features: a latent cached by an earlier ADZUS job
    on the same image comes without them, so DiffuGTS must not take it (it crashed with KeyError)."""
    runner = Runner()
    runner.run(planted(tmp_path, "a.nrrd"), lambda e: None)
    tumour = planted(tmp_path, "t.nrrd", method="diffugts", prompt="liver tumour")
    warm = runner.run(tumour, lambda e: None)
    cold = Runner().run(JobRequest(**{**tumour.to_dict(), "output": str(tmp_path / "c.nrrd"),
                                      "pipeline": tumour.pipeline}), lambda e: None)
    assert warm.segments and cold.segments
    assert dice(labels(tmp_path / "t.nrrd") > 0, truth_of(tmp_path / "ct.nrrd", CT)) >= 0.85
    np.testing.assert_array_equal(labels(tmp_path / "t.nrrd"), labels(tmp_path / "c.nrrd"))
