"""`python -m DiffusionSegLib train sdseg` end to end on a tiny synthetic set, in a subprocess:
events, checkpoint + model card, resume, fine-tuning on Slicer-style volumes, inference through
the same `evaluate` path as every method, and bad data → exit code 3 with an invalid_data event."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sdseg_synthetic import write_png_pairs
from test_sdseg_data import write_volume_case

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--image-size", "32", "--vae-channels", "8,16,16", "--unet-channels", "16,32", "--batch-size", "4",
        "--vae-steps", "3", "--val-every", "3", "--val-fraction", "0.25", "--threads", "1", "--device", "cpu"]


def run_cli(*args: str) -> tuple[int, list[dict], str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "DiffusionSegLib", *args], capture_output=True,
                          encoding="utf-8", env=env, cwd=ROOT, timeout=600)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return proc.returncode, events, proc.stderr


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("sdseg_cli")
    images, masks = write_png_pairs(root / "data", 8, size=40)
    out = root / "ckpt"
    code, events, err = run_cli("train", "sdseg", "--images", str(images), "--masks", str(masks),
                                "--output", str(out), "--steps", "6", *TINY, "--vae-steps", "60")
    assert code == 0, err  # 60 VAE steps and 6 SDSeg steps (denoiser skip) pass both checks here
    assert [c["passed"] for c in events[-1]["checks"]] == [True, True]
    return root, images, masks, out, events


def test_train_writes_events_checkpoint_and_model_card(trained):
    root, images, masks, out, events = trained
    train_progress = [e for e in events if e["event"] == "progress" and e["stage"] == "train"]
    assert train_progress and all(e["total"] > 0 for e in train_progress)
    logged = [e for e in events if e["event"] == "log" and "val_dice" in e.get("metrics", {})]
    assert [int(e["metrics"]["step"]) for e in logged] == [3, 6]
    result = events[-1]
    assert result["event"] == "result" and result["steps"] == 6 and 0 <= result["best"]["val_dice"] <= 1
    config = json.loads((out / "config.json").read_text())
    assert config["format"] == "diffusionseg.sdseg" and config["image_size"] == 32
    assert config["scale_factor"] > 0 and config["best_step"] in (3, 6)
    card = (out / "README.md").read_text()
    for needle in ("## Data", "## Split", "## Validation metrics", "train sdseg", "training cases", "002"):
        assert needle in card
    assert not list(out.rglob("*.bin")) and not list(out.rglob("*.pt")) and not list(out.rglob("*.pkl"))


def test_resume_continues_from_the_saved_step(trained):
    root, images, masks, out, _ = trained
    code, events, err = run_cli("train", "sdseg", "--images", str(images), "--masks", str(masks),
                                "--output", str(out), "--steps", "9", "--resume", *TINY)
    assert code == 0, err
    assert any("Resumed at step 6" in e.get("message", "") for e in events)
    assert not any("VAE trained" in e.get("message", "") for e in events)  # the VAE passed: reused
    assert events[-1]["steps"] == 9
    steps = [int(e["metrics"]["step"]) for e in events if "val_dice" in e.get("metrics", {})]
    assert steps == [9]


def test_fine_tune_on_corrected_volumes_and_segment_with_evaluate(trained):
    root, images, masks, out, _ = trained
    vols = root / "corrections"
    write_volume_case(vols, "patient1")
    tuned = root / "tuned"
    code, events, err = run_cli("train", "sdseg", "--init-from", str(out), "--images", str(vols / "images"),
                                "--masks", str(vols / "masks"), "--output", str(tuned), "--steps", "3",
                                "--val-fraction", "0", "--batch-size", "2", "--val-every", "3", "--threads", "1")
    assert code == 0, err
    config = json.loads((tuned / "config.json").read_text())
    source = json.loads((out / "config.json").read_text())
    assert config["image_size"] == 32 and config["scale_factor"] == pytest.approx(source["scale_factor"])
    for key in ("conditioner_dropout", "num_classes", "denoiser_skip"):  # from the loaded model, not the CLI
        assert config[key] == source[key]
    assert "fine-tuned from" in (tuned / "README.md").read_text()
    code, events, err = run_cli("evaluate", "--method", "sdseg", "--model", str(tuned), "--images", str(images),
                                "--masks", str(masks), "--output", str(root / "eval"), "--limit", "2",
                                "--param", "sampler=ddim", "--param", "steps=2", "--device", "cpu")
    assert code == 0, err
    metrics = json.loads((root / "eval" / "metrics.json").read_text())["summary"]["metrics"]
    assert metrics["dice"]["n"] == 2


def test_bad_data_exits_with_invalid_data(tmp_path):
    images, masks = write_png_pairs(tmp_path, 2)
    for path in masks.iterdir():
        path.unlink()
    code, events, _ = run_cli("train", "sdseg", "--images", str(images), "--masks", str(masks),
                              "--output", str(tmp_path / "out"), "--steps", "1", *TINY)
    assert code == 3
    assert events[-1]["event"] == "error" and events[-1]["code"] == "invalid_data"
    assert "No masks" in events[-1]["message"]


def test_train_from_pretrained_diffusers_weights(tmp_path):
    """`--pretrained REF` (the paper's starting point), in-process through the same parser."""
    import argparse

    from DiffusionSegLib.contract.events import JobContext
    from DiffusionSegLib.methods.sdseg.checkpoint import load_checkpoint
    from DiffusionSegLib.methods.sdseg.method import Sdseg
    from DiffusionSegLib.testing.models import save_tiny_stable_diffusion

    save_tiny_stable_diffusion(tmp_path / "sd")
    images, masks = write_png_pairs(tmp_path / "data", 4, size=64)
    parser = argparse.ArgumentParser()
    Sdseg.add_train_arguments(parser)
    args = parser.parse_args(["--images", str(images), "--masks", str(masks), "--output", str(tmp_path / "out"),
                              "--pretrained", str(tmp_path / "sd"), "--steps", "2", "--val-every", "2",
                              "--batch-size", "2", "--val-fraction", "0.25", "--device", "cpu"])
    events: list[dict] = []
    summary = Sdseg.train(args, JobContext(emit=events.append))
    assert summary["steps"] == 2 and "pretrained" in (tmp_path / "out" / "README.md").read_text()
    model, config = load_checkpoint(tmp_path / "out")
    assert config["unet_class"] == "UNet2DConditionModel" and model.unet.config.in_channels == 8
    assert config["image_size"] == 64


def test_multi_class_training_and_segmentation(tmp_path):
    """`--classes 128,255`: one class embedding per value; segment returns labels 0..2."""
    import argparse

    import numpy as np
    import SimpleITK as sitk
    import torch

    from DiffusionSegLib.contract.events import JobContext
    from DiffusionSegLib.methods.sdseg.method import Sdseg

    images, masks = write_png_pairs(tmp_path / "data", 4, size=32)
    for path in masks.iterdir():  # add an inner class: 255 core inside a 128 rim
        values = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
        rim = np.where(values > 0, 128, 0).astype(np.uint8)
        rim[values.shape[0] // 2 - 2:values.shape[0] // 2 + 2] = np.where(
            values[values.shape[0] // 2 - 2:values.shape[0] // 2 + 2] > 0, 255, 0)
        sitk.WriteImage(sitk.GetImageFromArray(rim), str(path))
    parser = argparse.ArgumentParser()
    Sdseg.add_train_arguments(parser)
    args = parser.parse_args(["--images", str(images), "--masks", str(masks), "--output", str(tmp_path / "out"),
                              "--classes", "128,255", *TINY[:-4], "--steps", "2", "--val-every", "2",
                              "--device", "cpu"])
    Sdseg.train(args, JobContext())
    method = Sdseg(model=str(tmp_path / "out"), params=Sdseg.info.resolve_params({}), prompt=None,
                   context=JobContext())
    method.load()
    assert method.image_size == 32 and method._n_classes == 2
    result = method.segment(torch.rand(2, 3, 32, 32), torch.ones(2, 32, 32, dtype=torch.bool))
    assert result.labels.shape == (2, 32, 32) and set(result.labels.unique().tolist()) <= {0, 1, 2}


def _train_args(tmp_path, *extra: str):
    import argparse

    from DiffusionSegLib.methods.sdseg.method import Sdseg

    parser = argparse.ArgumentParser()
    Sdseg.add_train_arguments(parser)
    return parser.parse_args(["--images", str(tmp_path / "i"), "--masks", str(tmp_path / "m"),
                              "--output", str(tmp_path / "out"), *extra])


def _fake_checkpoint(folder: Path, **config) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"format": "diffusionseg.sdseg", "kind": "sdseg",
                                                    "image_size": 32, **config}))
    return folder


@pytest.mark.parametrize("extra, needle", [
    (["--objective", "supervised", "--init-from", "CKPT"], "--objective supervised"),
    (["--objective", "supervised", "--pretrained", "some/ref"], "--objective supervised"),
    (["--pretrained", "some/ref", "--init-from", "CKPT"], "at most one"),
    (["--denoiser-skip", "--pretrained", "some/ref"], "--denoiser-skip"),
    (["--denoiser-skip", "--init-from", "CKPT"], "--denoiser-skip"),
    (["--vae-from", "CKPT", "--init-from", "CKPT"], "--vae-from"),
])
def test_conflicting_starting_points_are_invalid_requests(tmp_path, extra, needle):
    from DiffusionSegLib.contract.errors import InvalidRequest
    from DiffusionSegLib.contract.events import JobContext
    from DiffusionSegLib.methods.sdseg.train import run

    ckpt = _fake_checkpoint(tmp_path / "ckpt", denoiser_skip=False)
    args = _train_args(tmp_path, *[str(ckpt) if a == "CKPT" else a for a in extra])
    with pytest.raises(InvalidRequest, match=needle):
        run(args, JobContext(emit=lambda e: None))
    assert not (tmp_path / "out").exists()  # rejected before anything is written


def test_init_from_a_supervised_checkpoint_is_an_invalid_request(tmp_path):
    from DiffusionSegLib.contract.errors import InvalidRequest
    from DiffusionSegLib.methods.sdseg.train import check_starting_point

    ckpt = _fake_checkpoint(tmp_path / "baseline", kind="supervised")
    with pytest.raises(InvalidRequest, match="not an SDSeg"):
        check_starting_point(_train_args(tmp_path, "--init-from", str(ckpt)))
    skip = _fake_checkpoint(tmp_path / "skip", denoiser_skip=True)
    assert check_starting_point(_train_args(tmp_path, "--init-from", str(skip), "--denoiser-skip"))["denoiser_skip"]


@pytest.mark.parametrize("extra, expected", [
    ([], True),                                   # from scratch: the skip is the default
    (["--no-denoiser-skip"], False),              # the paper's parameterisation on request
    (["--pretrained", "some/ref"], False),        # pretrained keeps the paper's parameterisation
    (["--objective", "supervised"], False),       # the baseline has no denoiser
])
def test_denoiser_skip_defaults(tmp_path, extra, expected):
    from DiffusionSegLib.methods.sdseg.train import check_starting_point

    args = _train_args(tmp_path, *extra)
    check_starting_point(args)
    assert args.denoiser_skip is expected


def test_init_from_inherits_the_parameterisation_and_refuses_to_change_it(tmp_path):
    from DiffusionSegLib.contract.errors import InvalidRequest
    from DiffusionSegLib.methods.sdseg.train import check_starting_point

    skip = _fake_checkpoint(tmp_path / "skip", denoiser_skip=True)
    args = _train_args(tmp_path, "--init-from", str(skip))
    check_starting_point(args)
    assert args.denoiser_skip is True
    with pytest.raises(InvalidRequest, match="--no-denoiser-skip"):
        check_starting_point(_train_args(tmp_path, "--init-from", str(skip), "--no-denoiser-skip"))


def test_multi_class_training_samples_a_class_present_in_the_slice():
    import torch

    from DiffusionSegLib.methods.sdseg.train import present_classes

    masks = torch.zeros(3, 8, 8, dtype=torch.long)
    masks[0, :2] = 3             # only class 3 present
    masks[1, :2], masks[1, 4:] = 1, 2
    generator = torch.Generator().manual_seed(0)
    draws = torch.stack([present_classes(masks, 3, generator) for _ in range(200)])
    assert (draws[:, 0] == 3).all()
    assert set(draws[:, 1].tolist()) == {1, 2}
    assert set(draws[:, 2].tolist()) == {1, 2, 3}  # an empty slice: any class (its target is empty)
