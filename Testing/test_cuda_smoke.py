"""Smoke tests on a CUDA GPU (marker `cuda`, skipped without one): every method segments a volume
on the GPU, and both trainers train their heads/models there, with tiny models. They catch a
CPU tensor meeting a GPU tensor, which the CPU-only tests cannot see."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from sdseg_synthetic import write_png_pairs
from test_diffugts_train_cli import heads_run
from test_zero_shot_volumes import lesion_volume, tiny_sdseg  # noqa: F401 (fixture)

from DiffusionSegLib.cli.main import build_parser
from DiffusionSegLib.contract.events import JobContext
from DiffusionSegLib.contract.request import JobRequest
from DiffusionSegLib.jobs.job import run_job
from DiffusionSegLib.methods import get_method

pytestmark = pytest.mark.cuda


def segment_on_gpu(tmp_path, method, prompt, model, **params):
    source = tmp_path / "in.nrrd"
    sitk.WriteImage(lesion_volume(range(3, 6)), str(source))
    events: list[dict] = []
    request = JobRequest.from_dict({"input": str(source), "output": str(tmp_path / f"{method}.nrrd"),
                                    "method": method, "prompt": prompt, "model": model, "device": "cuda",
                                    "params": params, "pipeline": {"batch_size": 4}})
    run_job(request, events.append)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / f"{method}.nrrd")))
    assert labels.shape == (24, 48, 48)
    assert events[-1]["event"] == "result"
    return labels


def test_adzus_segments_on_cuda(tmp_path, tiny_sd_path):
    for mode in ("ddim_inversion", "noise"):
        segment_on_gpu(tmp_path, "adzus", "lesion", str(tiny_sd_path), latent_mode=mode, inversion_steps=10)


def test_diffugts_segments_on_cuda(tmp_path, tiny_sd_path):
    # floor and gate off: every stage (inpainting, residuals) runs on the random-weight model
    segment_on_gpu(tmp_path, "diffugts", "brain tumour", str(tiny_sd_path), steps=2, strength=0.5,
                   anomaly_floor=0.0, anomaly_seed=0.0, gate_threshold=0.0)


def test_sdseg_segments_on_cuda(tmp_path, tiny_sdseg):  # noqa: F811
    segment_on_gpu(tmp_path, "sdseg", "", tiny_sdseg)
    segment_on_gpu(tmp_path, "sdseg", "", tiny_sdseg, sampler="ddim", steps=3, eta=1.0)


def test_train_diffugts_heads_on_cuda_then_segment(tmp_path, tiny_sd_path):
    heads = tmp_path / "heads"
    args = heads_run(tmp_path, tiny_sd_path, "cuda", "--adapter-epochs", "2", "--head-epochs", "2")
    summary = get_method("diffugts").train(args, JobContext(seed=0))
    assert json.loads((heads / "config.json").read_text())["stage"] == "complete"
    assert 0.0 <= summary["metrics"]["refined_dice"] <= 1.0
    segment_on_gpu(tmp_path, "diffugts", "brain tumour", str(tiny_sd_path), heads=str(heads), steps=2)


def test_train_sdseg_on_cuda(tmp_path):
    images, masks = write_png_pairs(tmp_path / "data", 8, size=40)
    for objective in ("sdseg", "supervised"):
        args = build_parser().parse_args([
            "train", "sdseg", "--images", str(images), "--masks", str(masks), "--output",
            str(tmp_path / objective), "--objective", objective, "--steps", "4", "--image-size", "32",
            "--vae-channels", "8,16,16", "--unet-channels", "16,32", "--batch-size", "4", "--vae-steps", "3",
            "--val-every", "2", "--val-fraction", "0.25", "--device", "cuda"])
        summary = get_method("sdseg").train(args, JobContext(seed=0))
        assert (tmp_path / objective / "config.json").is_file(), summary
    assert torch.cuda.is_available()
    assert np.isfinite(json.loads((tmp_path / "sdseg" / "config.json").read_text())["scale_factor"])
