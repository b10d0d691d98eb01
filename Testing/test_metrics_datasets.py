import argparse
import json

import numpy as np
import pytest
import SimpleITK as sitk
from fake_methods import BrightThreshold
from helpers import rgb_image

import DiffusionSegLib.methods as registry
from DiffusionSegLib.contract.errors import InvalidData, JobCancelled, OutputExists
from DiffusionSegLib.contract.events import CancelToken
from DiffusionSegLib.contract.request import JobRequest, PipelineOptions
from DiffusionSegLib.io.datasets import (
    pair_images_and_masks,
    parse_mask_mapping,
    read_mask,
)
from DiffusionSegLib.jobs.runner import Runner
from DiffusionSegLib.tools.evaluate import run_evaluation
from DiffusionSegLib.tools.metrics import dice, hd95, iou, oracle_selection


def test_dice_iou_conventions():
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    assert dice(a, b) == 1.0 and iou(a, b) == 1.0
    a[:4] = True
    b[2:6] = True
    assert dice(a, b) == pytest.approx(0.5) and iou(a, b) == pytest.approx(1 / 3)
    assert iou(a, b) <= dice(a, b)


def test_hd95_in_physical_units():
    a = np.zeros((1, 20, 20), bool)
    b = np.zeros((1, 20, 20), bool)
    a[0, 5:10, 5:10] = True
    b[0, 5:10, 8:13] = True  # shifted by 3 columns
    assert hd95(a, a) == 0.0
    assert hd95(a, b) == pytest.approx(3.0)
    assert hd95(a, b, spacing=(1.0, 1.0, 0.5)) == pytest.approx(1.5)
    assert hd95(a, np.zeros_like(a)) is None


def test_oracle_picks_the_segments_that_make_up_the_truth():
    segments = np.zeros((1, 10, 10), np.uint16)
    segments[0, :, :3] = 1
    segments[0, :, 3:6] = 2
    segments[0, :, 6:] = 3
    truth = np.zeros((1, 10, 10), bool)
    truth[0, :, 3:] = True
    chosen = oracle_selection(segments, truth)
    assert np.array_equal(chosen, truth)


def test_pairing_by_stem_suffix_folder_and_regex(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    for name in ("001.bmp", "002.bmp", "IMD003.png"):
        (images / name).write_bytes(b"x")
    for name in ("001.png", "002.png", "IMD003_lesion.png", "999.png"):
        (masks / name).write_bytes(b"x")
    (images / "case7").mkdir()
    (masks / "case7").mkdir()
    pairs = pair_images_and_masks(images, masks)
    assert [(p.key, p.mask.name) for p in pairs] == [
        ("001", "001.png"), ("002", "002.png"), ("IMD003", "IMD003_lesion.png"), ("case7", "case7")]
    (images / "21_training.png").write_bytes(b"x")
    (masks / "21_manual1.gif").write_bytes(b"x")
    keyed = pair_images_and_masks(images, masks, key=r"^(\d+)_")
    assert [p.key for p in keyed] == ["21"]
    (tmp_path / "no-masks").mkdir()
    with pytest.raises(InvalidData, match="No masks"):
        pair_images_and_masks(images, tmp_path / "no-masks")
    with pytest.raises(InvalidData, match="matching name"):
        pair_images_and_masks(images, masks, key=r"^(zzz)")


def test_mask_mappings_and_non_binary_masks(tmp_path):
    mask = np.array([[0, 128, 255], [0, 0, 255]], np.uint8)
    path = tmp_path / "m.png"
    sitk.WriteImage(sitk.GetImageFromArray(mask), str(path))
    whole, _ = read_mask(path, parse_mask_mapping(">0"))
    assert whole.sum() == 3
    nucleus, _ = read_mask(path, parse_mask_mapping("255"))
    assert nucleus.sum() == 2
    assert read_mask(path, parse_mask_mapping("100-200"))[0].sum() == 1
    with pytest.raises(InvalidData, match="mask mapping"):
        read_mask(path, None)
    empty = tmp_path / "empty.png"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 4), np.uint8)), str(empty))
    assert read_mask(empty, None)[0].sum() == 0
    with pytest.raises(InvalidData, match="Cannot read"):
        parse_mask_mapping("lots")


def evaluation_folders(tmp_path, cases=3):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    for n in range(cases):
        image = rgb_image(seed=n)
        sitk.WriteImage(image, str(images / f"{n:03d}.png"))
        gray = sitk.GetArrayFromImage(image).mean(-1)
        sitk.WriteImage(sitk.GetImageFromArray(((gray < 150) * 255).astype(np.uint8)), str(masks / f"{n:03d}.png"))
    return images, masks


def evaluation_args(images, masks, output, **overrides):
    values = dict(images=str(images), masks=str(masks), mask_map="255", key=None, output=str(output), limit=0,
                  cases=None, save_predictions=True, oracle=False, method="bright-threshold", prompt=None, model=None,
                  device="cpu", params={"threshold": "0.6"}, pipeline=PipelineOptions(), seed=0, dtype="auto",
                  threads=0, overwrite=False)
    values.update(overrides)
    return argparse.Namespace(**values)


def test_evaluate_writes_json_and_csv(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", {"bright-threshold": BrightThreshold})
    images, masks = evaluation_folders(tmp_path)
    summary = run_evaluation(evaluation_args(images, masks, tmp_path / "ev"), lambda e: None)
    report = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    # the method labels the bright background, the mask is the dark disc: Dice is low but defined
    assert summary["cases"] == 3 and len(report["cases"]) == 3
    assert 0.0 <= summary["metrics"]["dice"]["mean"] < 0.5
    assert summary["device"] == "cpu" and summary["dtype"] in ("float32", "bfloat16")
    assert (tmp_path / "ev" / "cases.csv").read_text().startswith("case,")
    assert sorted(p.name for p in (tmp_path / "ev").glob("*.nrrd")) == ["000.nrrd", "001.nrrd", "002.nrrd"]


def test_an_evaluated_case_is_the_labelmap_segment_writes(tmp_path, monkeypatch):
    """Every case is a job through the Runner: its labelmap equals `segment`'s, bit for bit."""
    monkeypatch.setattr(registry, "_REGISTRY", {"bright-threshold": BrightThreshold})
    images, masks = evaluation_folders(tmp_path, cases=2)
    pipeline = PipelineOptions(fill_holes=False)   # the dark disc stays a hole: a result with two values
    run_evaluation(evaluation_args(images, masks, tmp_path / "ev", pipeline=pipeline), lambda e: None)
    for case in ("000", "001"):
        request = JobRequest(input=str(images / f"{case}.png"), output=str(tmp_path / f"{case}.nrrd"),
                             method="bright-threshold", device="cpu", params={"threshold": "0.6"}, pipeline=pipeline)
        Runner().run(request, lambda e: None)
        segmented = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / f"{case}.nrrd")))
        evaluated = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "ev" / f"{case}.nrrd")))
        assert segmented.any() and not segmented.all()   # a real result, not an empty one
        assert segmented.dtype == evaluated.dtype and np.array_equal(segmented, evaluated)


def test_a_cancelled_evaluation_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", {"bright-threshold": BrightThreshold})
    images, masks = evaluation_folders(tmp_path)
    token, seen = CancelToken(), []

    def on_event(event):
        seen.append(event)
        if event.get("stage") == "evaluate":   # after the first case is measured
            token.cancel()

    with pytest.raises(JobCancelled):
        run_evaluation(evaluation_args(images, masks, tmp_path / "ev"), on_event, token)
    assert any(e.get("stage") == "evaluate" for e in seen)
    assert not (tmp_path / "ev").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "masks"]   # no staging folder left


def test_evaluate_keeps_earlier_results_without_overwrite(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", {"bright-threshold": BrightThreshold})
    images, masks = evaluation_folders(tmp_path, cases=1)
    (tmp_path / "ev").mkdir()
    (tmp_path / "ev" / "metrics.json").write_text("{}")
    with pytest.raises(OutputExists):
        run_evaluation(evaluation_args(images, masks, tmp_path / "ev"), lambda e: None)
    assert (tmp_path / "ev" / "metrics.json").read_text() == "{}"
    run_evaluation(evaluation_args(images, masks, tmp_path / "ev", overwrite=True), lambda e: None)
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["summary"]["cases"] == 1
