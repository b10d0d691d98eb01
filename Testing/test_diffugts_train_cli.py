"""`train diffugts` through the real CLI parser on synthetic tumour volumes, then a segmentation
job that uses the trained heads (tiny model; no data from outside the repository)."""

import json

import numpy as np
import SimpleITK as sitk
import torch

from DiffusionSegLib.cli.main import build_parser
from DiffusionSegLib.contract.events import JobContext
from DiffusionSegLib.contract.request import JobRequest
from DiffusionSegLib.jobs.job import run_job
from DiffusionSegLib.methods import get_method


def _write_case(folder, case, seed):
    """An MR-like volume (I, J, K) = (48, 48, 5) with a bright blob, and its label volume (2 = tumour)."""
    rng = np.random.default_rng(seed)
    k, j, i = np.mgrid[:5, :48, :48]
    brain = (i - 24) ** 2 + (j - 24) ** 2 < 20 ** 2
    ci, cj = rng.integers(16, 32, 2)
    tumour = ((i - ci) ** 2 + (j - cj) ** 2 < 36) & (k > 0)
    image = np.where(brain, 100.0, 0.0) + 120.0 * tumour + rng.normal(0, 3, brain.shape) * brain
    labels = np.where(tumour, 2, 0).astype(np.uint8)
    for sub, array in (("images", image.astype(np.float32)), ("masks", labels)):
        (folder / sub / case).mkdir(parents=True)
        volume = sitk.GetImageFromArray(array)
        volume.SetSpacing((1.0, 1.0, 2.0))
        sitk.WriteImage(volume, str(folder / sub / case / f"{sub}.nii.gz"))


def heads_run(tmp_path, model, device: str, *extra: str):
    """Three synthetic cases in tmp_path and parsed `train diffugts` arguments writing tmp_path/heads."""
    for n in range(3):
        _write_case(tmp_path, f"case{n}", seed=n)
    return build_parser().parse_args([
        "train", "diffugts", "--images", str(tmp_path / "images"), "--masks", str(tmp_path / "masks"),
        "--mask-map", ">0", "--output", str(tmp_path / "heads"), "--model", str(model), "--prompt", "brain tumour",
        "--val-fraction", "0.34", "--inpaint-steps", "4", "--device", device, "--batch-size", "4", *extra])


def test_train_cli_writes_heads_that_a_job_uses(tiny_sd_path, tmp_path):
    heads = tmp_path / "heads"
    args = heads_run(tmp_path, tiny_sd_path, "cpu", "--organ", "brain", "--adapter-epochs", "3", "--head-epochs", "2")
    events = []
    summary = get_method("diffugts").train(args, JobContext(emit=events.append, seed=0))
    config = json.loads((heads / "config.json").read_text())
    assert config["stage"] == "complete" and config["prompt"] == "brain tumour"
    split = config["split"]
    assert len(split["validation"]) == 1 and sorted(split["train"] + split["validation"]) == ["case0", "case1", "case2"]
    assert 0.0 <= summary["metrics"]["refined_dice"] <= 1.0
    assert "Validation metrics" in (heads / "README.md").read_text()
    stages = {e.get("stage") for e in events if e["event"] == "progress"}
    assert {"cache_backbone", "train_adapter", "train_image_head", "cache_residuals", "train_residual_head"} <= stages
    assert config["image_head"] == {"in_features": 5, "width": 16}  # the image-level anomaly head (BCE)

    output = tmp_path / "out.nii.gz"
    request = JobRequest(input=str(tmp_path / "images" / "case0" / "images.nii.gz"), output=str(output),
                         method="diffugts", prompt="brain tumour", model=str(tiny_sd_path), device="cpu",
                         params={"organ": "brain", "heads": str(heads), "steps": 4})
    job_events = []
    run_job(request, job_events.append)
    result = sitk.ReadImage(str(output))
    assert result.GetSize() == (48, 48, 5)
    assert any("DiffuGTS prompts" in e.get("message", "") for e in job_events)
    assert {"aova", "inpaint", "residual"} <= set(job_events[-1]["timings"])


def test_resume_extends_an_adapter_that_fell_short_and_reuses_one_that_passed(tiny_sd_path, tmp_path):
    for n in range(2):
        _write_case(tmp_path, f"case{n}", seed=n)
    heads = tmp_path / "heads"
    base = ["train", "diffugts", "--images", str(tmp_path / "images"), "--masks", str(tmp_path / "masks"),
            "--mask-map", ">0", "--output", str(heads), "--model", str(tiny_sd_path), "--prompt", "brain tumour",
            "--organ", "brain", "--val-fraction", "0", "--head-epochs", "1", "--inpaint-steps", "2", "--device",
            "cpu", "--no-residual-head"]
    train = get_method("diffugts").train
    short = train(build_parser().parse_args(base + ["--adapter-epochs", "2"]), JobContext())
    assert [(c["stage"], c["passed"]) for c in short["checks"]] == [("adapter", False), ("heads", False)]
    started = (heads / "heads.safetensors").read_bytes()

    events = []
    extended = train(build_parser().parse_args(base + ["--adapter-epochs", "10", "--resume"]),
                     JobContext(emit=events.append))
    assert any("fell short, so it trains on" in e.get("message", "") for e in events)
    assert [e["done"] for e in events if e.get("stage") == "train_adapter"][-1] == 10
    assert extended["checks"][0]["passed"]  # 2 + 10 epochs: the coarse Dice is above the floor now
    first = (heads / "heads.safetensors").read_bytes()
    assert first != started

    events = []
    train(build_parser().parse_args(base + ["--adapter-epochs", "10", "--resume"]), JobContext(emit=events.append))
    assert any("reusing the trained adapter" in e.get("message", "") for e in events)
    assert not any(e.get("stage") == "train_adapter" for e in events)
    from safetensors.torch import load

    before, after = load(first), load((heads / "heads.safetensors").read_bytes())
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


import pytest  # noqa: E402


@pytest.mark.parametrize("extra, error, needle", [
    (["--strength", "1.5"], "InvalidParameter", "--strength"),
    (["--inpaint-steps", "0"], "InvalidParameter", "--inpaint-steps"),
    (["--dilation", "-1"], "InvalidParameter", "--dilation"),
    (["--batch-size", "0"], "InvalidRequest", "--batch-size"),
])
def test_out_of_range_options_are_rejected_before_loading(tmp_path, extra, error, needle):
    from DiffusionSegLib.contract import errors

    args = build_parser().parse_args([
        "train", "diffugts", "--images", str(tmp_path / "i"), "--masks", str(tmp_path / "m"),
        "--output", str(tmp_path / "heads"), "--model", str(tmp_path / "no-model"), "--prompt", "tumour", "--organ", "liver",
        "--device", "cpu", *extra])
    with pytest.raises(getattr(errors, error), match=needle):
        get_method("diffugts").train(args, JobContext())


def test_sdseg_rejects_a_batch_size_below_one(tmp_path):
    from DiffusionSegLib.contract.errors import InvalidRequest

    args = build_parser().parse_args(["train", "sdseg", "--images", str(tmp_path), "--masks", str(tmp_path),
                                      "--output", str(tmp_path / "out"), "--batch-size", "0"])
    with pytest.raises(InvalidRequest, match="--batch-size"):
        get_method("sdseg").train(args, JobContext())


def _write_subregion_case(folder, case, seed):
    """Like `_write_case`, with a core (label 1) inside an oedema ring (label 2)."""
    rng = np.random.default_rng(seed)
    k, j, i = np.mgrid[:4, :48, :48]
    brain = (i - 24) ** 2 + (j - 24) ** 2 < 20 ** 2
    ci, cj = rng.integers(18, 30, 2)
    r2 = (i - ci) ** 2 + (j - cj) ** 2
    labels = np.where(r2 < 16, 1, np.where(r2 < 49, 2, 0)) * (k > 0)
    image = np.where(brain, 100.0, 0.0) + 60.0 * (labels == 2) + 140.0 * (labels == 1) \
        + rng.normal(0, 3, brain.shape) * brain
    for sub, array in (("images", image.astype(np.float32)), ("masks", labels.astype(np.uint8))):
        (folder / sub / case).mkdir(parents=True)
        sitk.WriteImage(sitk.GetImageFromArray(array), str(folder / sub / case / f"{sub}.nii.gz"))


def test_manifest_trains_several_prompt_pairs_and_reports_the_held_out_one(tiny_sd_path, tmp_path):
    for n in range(2):
        _write_subregion_case(tmp_path, f"case{n}", seed=n)
    manifest = tmp_path / "pairs.json"
    manifest.write_text(json.dumps({"pairs": [
        {"prompt": "brain tumour", "normal_prompt": "healthy brain", "labels": [1, 2]},
        {"prompt": "tumour core", "normal_prompt": "healthy brain", "labels": [1]},
        {"prompt": "peritumoural oedema", "normal_prompt": "healthy brain", "labels": [2]}]}))
    heads = tmp_path / "heads"
    args = build_parser().parse_args([
        "train", "diffugts", "--images", str(tmp_path / "images"), "--masks", str(tmp_path / "masks"),
        "--output", str(heads), "--model", str(tiny_sd_path), "--prompt", "brain tumour",
        "--manifest", str(manifest), "--hold-out", "peritumoural oedema", "--val-fraction", "0",
        "--adapter-epochs", "2", "--head-epochs", "1", "--inpaint-steps", "2", "--device", "cpu",
        "--batch-size", "4", "--val-max-slices", "4"])
    events = []
    summary = get_method("diffugts").train(args, JobContext(emit=events.append, seed=0))
    metrics = summary["metrics"]
    assert metrics["unseen_prompt"] == "peritumoural oedema"
    assert 0.0 <= metrics["unseen_refined_dice"] <= 1.0 and 0.0 <= metrics["refined_dice"] <= 1.0
    config = json.loads((heads / "config.json").read_text())
    assert config["manifest"]["held_out"] == "peritumoural oedema" and len(config["manifest"]["pairs"]) == 3
    assert any("held out: peritumoural oedema" in e.get("message", "") for e in events)


def test_a_bad_manifest_or_hold_out_is_refused_before_loading(tmp_path):
    from DiffusionSegLib.contract.errors import InvalidRequest
    from DiffusionSegLib.methods.diffugts.manifest import read_manifest, split_pairs

    bad = tmp_path / "bad.json"
    bad.write_text('{"pairs": [{"prompt": "brain tumour", "labels": []}]}')
    with pytest.raises(InvalidRequest, match="no label values"):
        read_manifest(bad)
    good = tmp_path / "good.json"
    good.write_text('{"pairs": [{"prompt": "brain tumour", "labels": [1, 2]}, '
                    '{"prompt": "liver lesion", "labels": [3]}]}')
    pairs = read_manifest(good)
    assert pairs[0].prompts.normal == "healthy brain"  # prompt-only pairs work in manifests too
    with pytest.raises(InvalidRequest, match="--hold-out must differ"):
        split_pairs(pairs, "brain tumour", "brain tumour")
    with pytest.raises(InvalidRequest, match="not in the manifest"):
        split_pairs(pairs, "lung nodule", None)
