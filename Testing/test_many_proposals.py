"""Proposal ids past 65 535 through the pipeline, the bundle and `reselect`: a long volume can
hold that many (the 65 536th used to raise OverflowError at the very end of the job, and the
bundle wrapped 70 000 to 4 464 and checked the write against the wrapped values)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from evidence_methods import ManyProposals

import DiffusionSegLib.methods as registry
from DiffusionSegLib.cli.commands.reselect import reselect_files
from DiffusionSegLib.contract.request import JobRequest
from DiffusionSegLib.imaging.postprocess import (
    compact_labels,
    match_labels_across_slices,
)
from DiffusionSegLib.io.images import write_labelmap
from DiffusionSegLib.jobs.job import run_job

DEPTH = 129   # × 512 bars = 66 048 proposals


def test_ids_past_16_bits_through_the_job_the_bundle_and_reselect(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", {"many-proposals": ManyProposals})
    yy, xx = np.mgrid[:64, :64]
    disc = (yy - 32) ** 2 + (xx - 32) ** 2 < 14 ** 2
    noise = np.random.default_rng(0).normal(0, 10, (DEPTH, 64, 64))
    volume = (np.where(disc, 900.0, 100.0)[None] + noise).astype(np.float32)
    sitk.WriteImage(sitk.GetImageFromArray(volume), str(tmp_path / "long.nrrd"))
    events: list[dict] = []
    run_job(JobRequest.from_dict({"input": str(tmp_path / "long.nrrd"), "output": str(tmp_path / "seg.nrrd"),
                                  "method": "many-proposals", "device": "cpu", "evidence": True,
                                  "pipeline": {"intensity": "minmax", "fill_holes": False}}), events.append)
    outputs = events[-1]["outputs"]
    proposals = sitk.GetArrayFromImage(sitk.ReadImage(outputs["proposals"]))
    assert proposals.dtype == np.uint32 and proposals.max() == DEPTH * 512 > 2**16
    assert len(np.unique(proposals)) == DEPTH * 512   # every bar its own id, none wrapped onto another
    labels = sitk.GetArrayFromImage(sitk.ReadImage(outputs["labelmap"]))
    assert labels.any() and not labels.all()
    same = reselect_files(outputs["labelmap"], tmp_path / "same.nrrd")
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(same["output"])), labels)


def test_matching_numbers_past_16_bits_and_compacts_into_the_narrowest_type():
    planes = np.zeros((3, 4, 70000 // 4 + 1), np.uint32)
    planes[0] = np.arange(planes[0].size).reshape(planes[0].shape) + 1
    matched = match_labels_across_slices(planes, 0)
    assert matched.dtype == np.uint32 and matched.max() == planes[0].size
    assert compact_labels(np.array([0, 5, 9], np.int64)).dtype == np.uint16


def test_a_label_the_file_type_cannot_hold_fails_the_write_check(tmp_path, monkeypatch):
    """The read-back check compares with the values it was given, not with a converted copy."""
    from DiffusionSegLib.io import images

    reference = sitk.GetImageFromArray(np.zeros((1, 2, 2), np.float32))
    labels = np.array([[[0, 70000], [1, 2]]], np.int64)
    monkeypatch.setattr(images, "labelmap_image",   # a writer that wraps, as the old one did
                        lambda values, ref, suffix=".nrrd": _wrapped(values, ref))
    with pytest.raises(Exception, match="differs"):
        write_labelmap(labels, reference, tmp_path / "wrapped.nrrd")
    assert not (tmp_path / "wrapped.nrrd").exists()


def _wrapped(values, reference):
    image = sitk.GetImageFromArray(values.astype(np.uint16))
    image.CopyInformation(reference)
    return image
