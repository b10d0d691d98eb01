"""SDSeg's evidence: the mean foreground probability over `seeds` x_T draws, and their standard
deviation as the uncertainty, through the real pipeline and job (random tiny checkpoint)."""

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from DiffusionSegLib.contract.request import JobRequest
from DiffusionSegLib.jobs.job import run_job


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
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
    model.set_scale_factor_from(torch.rand(2, 3, 32, 32) * 2 - 1)
    return save_checkpoint(model, tmp_path_factory.mktemp("sdseg") / "ckpt",
                           {"kind": "sdseg", "image_size": 32, "num_classes": 0})


def maps(tmp_path, checkpoint, name, **params):
    image = tmp_path / "image.png"
    if not image.exists():  # 32 x 32: the model's own size, so nothing is resampled
        pixels = (np.random.default_rng(3).random((32, 32, 3)) * 255).astype(np.uint8)
        sitk.WriteImage(sitk.GetImageFromArray(pixels, isVector=True), str(image))
    events = []
    run_job(JobRequest.from_dict({"input": str(image), "output": str(tmp_path / f"{name}.nrrd"), "method": "sdseg",
                                  "model": str(checkpoint), "device": "cpu", "evidence": True, "params": params,
                                  "pipeline": {"fill_holes": False}}), events.append)
    return {k: sitk.GetArrayFromImage(sitk.ReadImage(v)).astype(np.float64) for k, v in events[-1]["outputs"].items()
            if k not in ("scores", "provenance")}


def test_seeds_average_into_the_evidence_and_their_spread_is_the_uncertainty(tmp_path, checkpoint):
    single = [maps(tmp_path, checkpoint, f"s{seed}", seed=seed) for seed in (5, 6)]
    assert all(set(m) == {"labelmap", "evidence"} for m in single)  # one draw: no spread to report
    draws = np.stack([m["evidence"] for m in single])
    assert draws.std(axis=0).max() > 1e-3, "different x_T must give different probabilities"
    combined = maps(tmp_path, checkpoint, "two", seed=5, seeds=2)
    assert set(combined) == {"labelmap", "evidence", "uncertainty"}
    np.testing.assert_allclose(combined["evidence"], draws.mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(combined["uncertainty"], draws.std(axis=0), atol=1e-5)
    assert 0 < (combined["evidence"] > 0.5).sum() < combined["evidence"].size   # both classes: a real comparison
    assert np.array_equal(combined["labelmap"] > 0, combined["evidence"] > 0.5)
    assert np.array_equal(single[0]["labelmap"] > 0, single[0]["evidence"] > 0.5)
