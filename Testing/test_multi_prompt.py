"""Several prompts in one job: one named segment per prompt, exactly the single-prompt masks
combined (first prompt wins overlaps), with ADZUS's shared proposals computed once per image.
On the planted model at the shipped defaults: "lesion" names the bright lesion, "healthy
tissue" the body (which holds the lesion: an overlap the first prompt wins)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from fake_methods import PromptThreshold
from helpers import ct_like_volume
from planted_cases import CT, ct_volume, dice, truth_of, write

from DiffusionSegLib.contract.errors import InvalidRequest
from DiffusionSegLib.contract.request import JobRequest, PipelineOptions
from DiffusionSegLib.jobs.runner import Runner
from DiffusionSegLib.volume.several_prompts import combine_masks

SHARED = {"proposals": "shared"}
PROMPTS = ["lesion", "healthy tissue"]
SLICES = 3


def request(tmp_path, name, **fields) -> JobRequest:
    if not (tmp_path / "ct.nrrd").exists():
        write(ct_volume(SLICES, 48, {1: 0.08}), tmp_path / "ct.nrrd")
    values = dict(input=str(tmp_path / "ct.nrrd"), output=str(tmp_path / name), method="adzus", model="planted",
                  device="cpu", params=dict(SHARED), pipeline=PipelineOptions(intensity=CT))
    values.update(fields)
    return JobRequest(**values)


def read(path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def test_combine_masks_first_prompt_wins_and_overlaps_are_counted():
    a = np.array([[1, 1, 0, 0]], bool)
    b = np.array([[0, 1, 1, 0]], bool)
    labels, overlaps = combine_masks([a, b], ["liver", "tumour"])
    np.testing.assert_array_equal(labels, [[1, 1, 2, 0]])
    assert overlaps == [{"prompts": ["liver", "tumour"], "voxels": 1}]


def test_two_prompts_give_the_single_prompt_masks_as_two_named_segments(tmp_path):
    runner = Runner()
    events = []
    result = runner.run(request(tmp_path, "both.nrrd", prompts=PROMPTS), events.append)
    # ADZUS's prompt-independent work ran once: the second prompt took each slice's proposals from the cache.
    assert runner.features.describe()["hits"]["adzus-proposals"] == SLICES
    assert runner.models.loads == 1
    both = read(tmp_path / "both.nrrd")
    singles = []
    for i, prompt in enumerate(PROMPTS):
        Runner().run(request(tmp_path, f"{i}.nrrd", prompt=prompt), lambda e: None)
        singles.append(read(tmp_path / f"{i}.nrrd") > 0)
    lesion = truth_of(tmp_path / "ct.nrrd", CT)
    assert dice(singles[0], lesion) >= 0.85                      # each prompt found what it names
    assert (singles[1] & ~singles[0]).sum() > 10 * lesion.sum()  # "healthy tissue": the body around it
    expected = np.where(singles[0], 1, np.where(singles[1], 2, 0))
    np.testing.assert_array_equal(both, expected)
    names = {s["label"]: s["name"] for s in result.segments}
    assert names == {1: "lesion", 2: "healthy tissue"}
    overlap = int((singles[0] & singles[1]).sum())
    assert overlap > 0 and events[-1]["overlaps"] == [{"prompts": PROMPTS, "voxels": overlap}]
    assert [e["done"] for e in events if e.get("stage") == "prompts"] == [1, 2]


def test_shared_proposals_from_the_cache_equal_fresh_ones(tmp_path):
    warm = Runner()
    warm.run(request(tmp_path, "first.nrrd", prompt="tumour"), lambda e: None)
    warm.run(request(tmp_path, "cached.nrrd", prompt="lesion"), lambda e: None)
    assert warm.features.describe()["hits"]["adzus-proposals"] == SLICES
    Runner().run(request(tmp_path, "fresh.nrrd", prompt="lesion"), lambda e: None)
    cached = read(tmp_path / "cached.nrrd")
    assert dice(cached > 0, truth_of(tmp_path / "ct.nrrd", CT)) >= 0.85
    np.testing.assert_array_equal(cached, read(tmp_path / "fresh.nrrd"))


def test_prompt_conditioned_proposals_are_not_shared(tmp_path):
    runner = Runner()
    params = {"proposals": "prompt"}
    runner.run(request(tmp_path, "a.nrrd", prompt="lesion", params=params), lambda e: None)
    runner.run(request(tmp_path, "b.nrrd", prompt="tumour", params=params), lambda e: None)
    stats = runner.features.describe()
    assert "adzus-proposals" not in stats["hits"] and "adzus-proposals" not in stats["misses"]
    assert stats["hits"]["vae-latent"] == SLICES  # the latents are still shared


def test_prompt_list_validation(tmp_path):
    base = dict(input="x.png", output="y.nrrd", method="adzus")
    with pytest.raises(InvalidRequest, match="twice"):
        JobRequest.from_dict({**base, "prompts": ["liver", "liver"]})
    with pytest.raises(InvalidRequest, match="either"):
        JobRequest.from_dict({**base, "prompt": "liver", "prompts": ["liver", "kidney"]})
    with pytest.raises(InvalidRequest, match="non-empty"):
        JobRequest.from_dict({**base, "prompts": ["liver", " "]})
    assert JobRequest.from_dict({**base, "prompts": [" liver ", "kidney"]}).prompt_list() == ["liver", "kidney"]


def test_several_prompts_refused_for_a_method_that_ignores_the_prompt(tmp_path):
    from DiffusionSegLib.jobs.job import run_job

    sitk.WriteImage(ct_like_volume(size=(30, 26, 3)), str(tmp_path / "cell.nrrd"))
    job = JobRequest(input=str(tmp_path / "cell.nrrd"), output=str(tmp_path / "o.nrrd"), method="sdseg",
                     model=str(tmp_path), prompts=["polyp", "lesion"], device="cpu")
    with pytest.raises(InvalidRequest, match="same mask"):
        run_job(job, lambda e: None)
    assert not (tmp_path / "o.nrrd").exists()


def test_overlapping_prompts_first_listed_wins(tmp_path, monkeypatch):
    import DiffusionSegLib.methods as registry

    monkeypatch.setattr(registry, "_REGISTRY", {**registry.available_methods(), "prompt-threshold": PromptThreshold})
    image = ct_like_volume(size=(30, 26, 3))
    sitk.WriteImage(image, str(tmp_path / "ct.nrrd"))
    array = sitk.GetArrayFromImage(image)
    prompts = ["above 0.9", "above 0.4"]  # the bright blob inside the soft tissue: nested masks
    events = []
    job = JobRequest(input=str(tmp_path / "ct.nrrd"), output=str(tmp_path / "o.nrrd"), method="prompt-threshold",
                     prompts=prompts, device="cpu", pipeline=PipelineOptions(intensity="ct-abdomen", fill_holes=False))
    result = Runner().run(job, events.append)
    labels = read(tmp_path / "o.nrrd")
    assert {s["name"]: s["label"] for s in result.segments} == {"above 0.9": 1, "above 0.4": 2}
    blob, tissue = labels == 1, labels > 0
    assert blob.any() and (labels == 2).any()
    # the bright blob (HU ~190) kept its own label inside the soft tissue (HU ~40)
    assert np.median(array[blob]) > 150 and np.median(array[labels == 2]) < 100
    (overlap,) = events[-1]["overlaps"]
    assert overlap == {"prompts": prompts, "voxels": int(blob.sum())}
    assert tissue.sum() > blob.sum()


def test_repeated_prompt_option_makes_a_prompt_list():
    from DiffusionSegLib.cli.commands.segment import request_from_args
    from DiffusionSegLib.cli.main import build_parser

    base = ["segment", "--input", "a.png", "--output", "b.nrrd", "--method", "adzus"]
    several = request_from_args(build_parser().parse_args([*base, "--prompt", "liver", "--prompt", "kidney"]))
    assert several.prompts == ["liver", "kidney"] and several.prompt is None
    one = request_from_args(build_parser().parse_args([*base, "--prompt", "liver"]))
    assert one.prompt == "liver" and one.prompts is None
