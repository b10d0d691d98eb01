"""Batch independence through the whole job: for every method the labelmap with --batch-size 1
equals the one with --batch-size 4, bit for bit (ADZUS and DiffuGTS on the planted model at the
shipped thresholds, so the labelmaps compared hold a result; known answers on volumes are in
test_known_answers.py)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from DiffusionSegLib.contract.request import JobRequest
from DiffusionSegLib.jobs.job import run_job

DEPTH, SIDE = 24, 48


def lesion_volume(lesion_slices, seed: int = 0) -> sitk.Image:
    """A disc of 'brain' (400, with noise) in a bright 'skull' ring (1000) that fixes the intensity
    window on every slice; a round lesion (700) on `lesion_slices`."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIDE, :SIDE]
    radius2 = (yy - 23.5) ** 2 + (xx - 23.5) ** 2
    body = radius2 < 21 ** 2
    lesion = (yy - 18) ** 2 + (xx - 28) ** 2 < 6 ** 2
    array = np.where(body, 400.0, 0.0)[None].repeat(DEPTH, 0) + rng.normal(0, 8, (DEPTH, SIDE, SIDE)) * body
    array[:, (radius2 >= 18 ** 2) & body] = 1000.0
    for k in lesion_slices:
        array[k][lesion] = 700.0
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.SetSpacing((1.0, 1.0, 3.0))
    return image


def run(tmp_path, image, method, prompt, batch_size, name="out", model=None, **params):
    source = tmp_path / "in.nrrd"
    if not source.exists():
        sitk.WriteImage(image, str(source))
    events: list[dict] = []
    request = JobRequest.from_dict({"input": str(source), "output": str(tmp_path / f"{name}.nrrd"),
                                    "method": method, "prompt": prompt, "device": "cpu", "model": model,
                                    "params": params, "seed": 7,
                                    "pipeline": {"batch_size": batch_size, "intensity": "mr"}})
    result = run_job(request, events.append)
    return sitk.GetArrayFromImage(sitk.ReadImage(result.output)), events


@pytest.fixture()
def float64_models(monkeypatch):
    """Every model in float64. Batched fp32 kernels reassociate sums differently for 1 and 4
    images (about 1e-7 here), which can move a pixel across an Otsu cut or SDSeg's 0.5; in float64
    that does not happen, so what the test sees is whether any random draw depends on the batch."""
    from DiffusionSegLib.runtime import dtypes

    def float64_policy(device, requested=None, **kwargs):
        return dtypes.DtypePolicy(requested="float64", compute=torch.float64, vae_encoder=torch.float64,
                                  vae=torch.float64, reason="test: float64 everywhere")

    monkeypatch.setattr(dtypes, "resolve_policy", float64_policy)
    monkeypatch.setattr(dtypes, "needs_size", lambda device, requested=None: False)


@pytest.fixture(scope="module")
def tiny_sdseg(tmp_path_factory):
    """An untrained tiny SDSeg checkpoint (32 px, latent 8), written by the real save path."""
    from diffusers import AutoencoderKL

    from DiffusionSegLib.methods.sdseg.build import (
        build_from_scratch,
        small_unet_config,
        small_vae_config,
    )
    from DiffusionSegLib.methods.sdseg.checkpoint import save_checkpoint

    torch.manual_seed(0)
    vae = AutoencoderKL(**small_vae_config(32, (8, 16, 16), 4))
    model = build_from_scratch(vae, small_unet_config(8, 4, (16, 32), 1, 0.0), 0.0, denoiser_skip=True)
    return str(save_checkpoint(model, tmp_path_factory.mktemp("sdseg"),
                               {"kind": "sdseg", "image_size": 32, "num_classes": 0, "class_values": []}))


@pytest.mark.parametrize("method, prompt, params", [
    ("adzus", "lesion", {"latent_mode": "noise"}),   # seeded noise per slice, not per batch
    ("sdseg", "", {"sampler": "ddim", "steps": 3, "eta": 1.0}),  # eta 1: fresh noise at every step
    ("diffugts", "brain tumour", {}),                 # seeded AOVA and inpainting noise per slice
])
def test_batch_size_does_not_change_the_labelmap(tmp_path, tiny_sdseg, float64_models, method, prompt, params):
    image = lesion_volume(range(3, 6))
    model = tiny_sdseg if method == "sdseg" else "planted"
    one, _ = run(tmp_path, image, method, prompt, 1, "one", model=model, **params)
    four, _ = run(tmp_path, image, method, prompt, 4, "four", model=model, **params)
    assert one.any()
    assert np.array_equal(one, four)
