"""Training data for SDSeg (and every trainable method): pairing, volumes, split, bad data."""

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from helpers import ct_like_volume
from sdseg_synthetic import write_png_pairs

from DiffusionSegLib.contract.errors import InvalidData
from DiffusionSegLib.training.data import load_slices, split_cases


def test_png_pairs_become_letterboxed_slices(tmp_path):
    images, masks = write_png_pairs(tmp_path, 4, size=40)
    data = load_slices(images, masks, 32)
    assert data.images.shape == (4, 3, 32, 32) and data.masks.shape == (4, 32, 32)
    assert data.cases == ["000", "001", "002", "003"]
    assert set(data.masks.unique().tolist()) == {0, 1} and data.images.min() >= 0 and data.images.max() <= 1


def test_size_mismatch_is_a_clear_error(tmp_path):
    images, masks = write_png_pairs(tmp_path, 3)
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((30, 32), np.uint8)), str(masks / "001.png"))
    with pytest.raises(InvalidData, match="001"):
        load_slices(images, masks, 32)


def test_no_masks_is_a_clear_error(tmp_path):
    images, masks = write_png_pairs(tmp_path, 2)
    for path in masks.iterdir():
        path.unlink()
    with pytest.raises(InvalidData, match="No masks"):
        load_slices(images, masks, 32)


def test_non_binary_masks_need_a_mapping(tmp_path):
    images, masks = write_png_pairs(tmp_path, 2)
    three = np.zeros((32, 32), np.uint8)
    three[4:10, 4:10], three[12:20, 12:20] = 128, 255
    sitk.WriteImage(sitk.GetImageFromArray(three), str(masks / "000.png"))
    with pytest.raises(InvalidData, match="not two"):
        load_slices(images, masks, 32)
    whole = load_slices(images, masks, 32, mask_map=">0")
    nucleus = load_slices(images, masks, 32, mask_map="255")
    assert whole.masks[0].sum() > nucleus.masks[0].sum() > 0
    multi = load_slices(images, masks, 32, class_values=[128.0, 255.0])
    assert set(multi.masks[0].unique().tolist()) == {0, 1, 2}


def test_all_empty_masks_are_refused(tmp_path):
    images, masks = write_png_pairs(tmp_path, 2)
    for path in masks.iterdir():
        sitk.WriteImage(sitk.GetImageFromArray(np.zeros((32, 32), np.uint8)), str(path))
    with pytest.raises(InvalidData, match="empty"):
        load_slices(images, masks, 32)


def write_volume_case(folder, name="case1", crop=True):
    """A CT-like volume and its label saved as Slicer does: .seg.nrrd cropped to the label's extent."""
    image = ct_like_volume()
    array = sitk.GetArrayFromImage(image)
    labels = np.zeros(array.shape, np.uint8)
    labels[3:6, 12:22, 18:30] = 1
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(folder / "images" / f"{name}.nrrd"))
    label_image = sitk.GetImageFromArray(labels)
    label_image.CopyInformation(image)
    if crop:  # Slicer writes segmentations with their effective extent and a shifted origin
        label_image = sitk.RegionOfInterest(label_image, size=[16, 14, 5], index=[16, 10, 2])
    sitk.WriteImage(label_image, str(folder / "masks" / f"{name}.seg.nrrd"))
    return labels


def test_label_volume_on_a_cropped_grid_is_resampled_onto_the_image(tmp_path):
    full = write_volume_case(tmp_path, crop=False)
    reference = load_slices(tmp_path / "images", tmp_path / "masks", 32, empty_slice_ratio=0.0, axis="k")
    (tmp_path / "masks" / "case1.seg.nrrd").unlink()
    write_volume_case(tmp_path, crop=True)
    cropped = load_slices(tmp_path / "images", tmp_path / "masks", 32, empty_slice_ratio=0.0, axis="k")
    assert len(cropped) == 3 == int((full.reshape(full.shape[0], -1).any(1)).sum())
    assert torch.equal(cropped.masks, reference.masks) and cropped.masks.sum() > 0
    with_empty = load_slices(tmp_path / "images", tmp_path / "masks", 32, empty_slice_ratio=1.0, axis="k")
    assert len(with_empty) == 6 and with_empty.cases == ["case1"] * 6


def test_split_is_sorted_deterministic_and_by_case():
    keys = [f"{i:03d}" for i in range(20)]
    shuffled = keys[::-1]
    assert split_cases(keys, 0.2, seed=3) == split_cases(shuffled, 0.2, seed=3)
    train, val = split_cases(keys + keys, 0.2, seed=3)  # slices of the same case never split
    assert len(val) == 4 and not set(train) & set(val) and sorted(train + val) == keys
    assert split_cases(keys, 0.2, seed=None) == (keys[:16], keys[16:])
    assert split_cases(keys, 0.2, seed=1) != split_cases(keys, 0.2, seed=2)
    with pytest.raises(InvalidData):
        split_cases(keys, 1.0)
