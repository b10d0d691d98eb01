"""Zero-shot methods on volumes through the whole job: planted anomalies (DiffuGTS with its real
stages on a tiny model, only the attention evidence planted) and batch independence (every
method: the labelmap with --batch-size 1 equals the one with --batch-size 4, bit for bit)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from scipy import ndimage

from DiffusionSegLib.contract.request import JobRequest
from DiffusionSegLib.jobs.job import run_job
from DiffusionSegLib.methods.diffugts.slice_evidence import gate_statistic
from DiffusionSegLib.methods.diffugts.stages import DiffuGTSPipeline

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


PLANTED: set[int] = set()


@pytest.fixture()
def planted_attention(monkeypatch):
    """The frozen model's AOVA evidence replaced by a planted one: anomaly difference 2.0 on the
    lesion disc (mapped to the 64-px model grid) of the slices in PLANTED, found through the slice
    indices the pipeline passes, N(0, 0.05) noise elsewhere; everything else is the real pipeline."""
    original = DiffuGTSPipeline.frozen_inputs
    scale = 64 / SIDE
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    disc = ((yy + 0.5) / scale - 0.5 - 18) ** 2 + ((xx + 0.5) / scale - 0.5 - 28) ** 2 < 5 ** 2

    def frozen_inputs(self, images, valid, indices=None):
        frozen = original(self, images, valid, indices)
        generator = torch.Generator().manual_seed(1)
        difference = 0.05 * torch.randn(frozen.region.shape, generator=generator)
        for b, index in enumerate(indices):
            if index in PLANTED:
                difference[b][disc] = 2.0
        difference = difference * frozen.region
        frozen.attention_anomaly = difference.clamp_min(0.0)
        frozen.gate = gate_statistic(difference, frozen.region)
        return frozen

    monkeypatch.setattr(DiffuGTSPipeline, "frozen_inputs", frozen_inputs)
    yield PLANTED
    PLANTED.clear()


def test_diffugts_planted_lesion_on_slices_10_to_19_only(tmp_path, tiny_sd_path, planted_attention):
    planted_attention.update(range(10, 20))
    labels, events = run(tmp_path, lesion_volume(range(10, 20)), "diffugts", "brain tumour", 4,
                         model=str(tiny_sd_path), steps=2, strength=0.5, dilation=0)
    assert [k for k in range(DEPTH) if labels[k].any()] == list(range(10, 20))
    bright = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "in.nrrd"))) == 700
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1] = True
    near = ndimage.binary_dilation(bright, structure=in_plane, iterations=2)
    assert not (labels.astype(bool) & ~near).any()  # inside the lesion, up to resampling at its edge
    # how much of the lesion the refined (residual-Otsu) mask covers depends on the random weights
    assert not any(e["event"] == "warning" for e in events)


def test_diffugts_no_lesion_gives_empty_labelmap_and_warning(tmp_path, tiny_sd_path, planted_attention):
    labels, events = run(tmp_path, lesion_volume(range(0)), "diffugts", "brain tumour", 4,
                         model=str(tiny_sd_path), steps=2, strength=0.5, dilation=0)
    assert not labels.any()
    assert [e for e in events if e["event"] == "warning"]


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
    ("adzus", "lesion", {"latent_mode": "noise", "foreground": "all"}),
    ("sdseg", "", {"sampler": "ddim", "steps": 3, "eta": 1.0}),  # eta 1: fresh noise at every step
    # floor, seed and gate off so the random-weight maps reach inpainting and the residuals
    ("diffugts", "brain tumour", {"steps": 2, "strength": 0.5, "anomaly_floor": 0.0, "anomaly_seed": 0.0,
                                  "gate_threshold": 0.0}),
])
def test_batch_size_does_not_change_the_labelmap(tmp_path, tiny_sd_path, tiny_sdseg, float64_models, method,
                                                 prompt, params):
    image = lesion_volume(range(3, 6))
    model = tiny_sdseg if method == "sdseg" else str(tiny_sd_path)
    one, _ = run(tmp_path, image, method, prompt, 1, "one", model=model, **params)
    four, _ = run(tmp_path, image, method, prompt, 4, "four", model=model, **params)
    assert one.any()
    assert np.array_equal(one, four)
