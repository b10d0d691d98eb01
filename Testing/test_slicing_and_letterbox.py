import numpy as np
import pytest
import torch
from helpers import ct_like_volume

from DiffusionSegLib.contract.errors import InvalidImage, InvalidRequest
from DiffusionSegLib.imaging.letterbox import Letterbox
from DiffusionSegLib.imaging.slicing import choose_axis, plan_slices
from DiffusionSegLib.io.images import volume_from_image


def _volume(direction=(1, 0, 0, 0, 1, 0, 0, 0, 1), size=(30, 20, 12)):
    return volume_from_image(ct_like_volume(size=size, direction=direction))


def test_axial_axis_follows_direction_not_array_order():
    # image K axis points along patient L: the axial slices are the I-planes (numpy axis 2)
    permuted = (0, 0, 1, 0, 1, 0, 1, 0, 0)
    assert choose_axis(_volume(permuted), "axial") == (2, "axial")
    assert choose_axis(_volume(), "axial") == (0, "axial")
    assert choose_axis(_volume(), "coronal") == (1, "coronal")
    assert choose_axis(_volume(), "i") == (2, "sagittal")


@pytest.mark.parametrize("axis", ["axial", "coronal", "sagittal"])
def test_extract_then_place_is_identity_with_flips(axis):
    # K axis pointing inferior and J anterior forces flips for display
    volume = _volume(direction=(-1, 0, 0, 0, -1, 0, 0, 0, -1))
    plan = plan_slices(volume, axis)
    rebuilt = np.zeros_like(volume.array)
    for index in plan.indices:
        plan.place(rebuilt, index, plan.extract(volume.array, index))
    np.testing.assert_array_equal(rebuilt, volume.array)


def test_coronal_slices_are_shown_superior_up():
    volume = _volume()  # K increases towards superior (LPS +z)
    plan = plan_slices(volume, "coronal")
    assert plan.flips[0]  # rows are K: flipped so the top row is the most superior slice
    marker = np.zeros_like(volume.array)
    marker[-1] = 1  # most superior K slice
    assert plan.extract(marker, plan.indices[0])[0].all()


def test_roi_and_slice_range_limit_work_and_are_validated():
    volume = _volume()
    plan = plan_slices(volume, "axial", roi={"ijk_min": [2, 3, 1], "ijk_max": [21, 15, 10]}, slice_range=[4, 6])
    assert plan.indices == (4, 5, 6)
    assert plan.slice_shape() == (13, 20)
    with pytest.raises(InvalidRequest, match="outside"):
        plan_slices(volume, "axial", roi={"ijk_min": [100, 0, 0], "ijk_max": [120, 5, 5]})
    with pytest.raises(InvalidRequest, match="slices"):
        plan_slices(volume, "axial", slice_range=[50, 60])
    with pytest.raises(InvalidImage, match="at least"):
        plan_slices(volume, "axial", roi={"ijk_min": [0, 0, 0], "ijk_max": [3, 15, 5]})


def test_letterbox_geometry_and_exact_inverse_of_labels():
    box = Letterbox.fit(30, 60, 64)
    assert (box.resized_height, box.resized_width, box.top, box.left) == (32, 64, 16, 0)
    valid = box.valid_mask()
    assert valid.sum() == 32 * 64 and not valid[:16].any() and not valid[48:].any()
    # labels drawn on the model grid come back as the same regions on the original grid
    labels = torch.zeros(1, 64, 64, dtype=torch.int64)
    labels[0, 16:32, :32] = 1  # top-left quarter of the image area
    restored = box.inverse_labels(labels)
    assert restored.shape == (1, 30, 60)
    expected = torch.zeros(1, 30, 60, dtype=torch.int64)
    expected[0, :15, :30] = 1
    assert torch.equal(restored, expected)


def test_letterbox_gives_the_model_square_millimetres():
    """A coronal slice of 0.7 × 0.7 × 5 mm CT: 14 rows of 5 mm and 48 columns of 0.7 mm are
    70 × 33.6 mm, so the slice fills the canvas's height and about half its width (by pixel
    counts it was squashed into a band 14/48 of the width high)."""
    box = Letterbox.fit(14, 48, 512, spacing=(5.0, 0.7))
    assert (box.resized_height, box.resized_width) == (512, round(33.6 / 70 * 512))
    assert box.left == (512 - box.resized_width) // 2 and box.top == 0
    assert Letterbox.fit(14, 48, 512) == Letterbox.fit(14, 48, 512, spacing=(0.7, 0.7))   # square pixels: as before
    labels = torch.zeros(1, 512, 512, dtype=torch.int64)
    labels[0, :256, box.left:box.left + box.resized_width] = 1   # the top 35 mm
    restored = box.inverse_labels(labels)
    assert restored.shape == (1, 14, 48) and restored[0, :7].all() and not restored[0, 7:].any()


def test_slice_plan_pixel_spacing_follows_the_displayed_rows_and_columns():
    volume = _volume(size=(30, 20, 12))   # spacing (0.7, 0.9, 3.0), identity direction
    assert plan_slices(volume, "axial").pixel_spacing(volume.spacing) == (0.9, 0.7)     # rows J, columns I
    coronal = plan_slices(volume, "coronal")
    assert coronal.pixel_spacing(volume.spacing) in ((3.0, 0.7), (0.7, 3.0))
    rows, cols = coronal.slice_shape()
    assert {rows, cols} == {12, 30}
    assert coronal.pixel_spacing(volume.spacing) == ((3.0, 0.7) if rows == 12 else (0.7, 3.0))


def test_letterbox_round_trip_of_smooth_image():
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 45), torch.linspace(0, 1, 80), indexing="ij")
    image = torch.stack([yy, xx, yy * xx])[None]
    box = Letterbox.fit(45, 80, 128)
    back = box.inverse_maps(box.forward(image))
    assert back.shape == image.shape
    assert (back - image).abs().max() < 0.02
    # padding repeats the edge rows instead of inventing a border
    padded = box.forward(image)
    assert torch.allclose(padded[0, :, 0], padded[0, :, box.top])


def test_sagittal_acquisition_is_shown_axially_with_rows_anterior_to_posterior():
    # I → posterior, J → inferior, K → left: the axial plane holds K (columns) and I (rows)
    volume = _volume(direction=(0, 0, 1, 1, 0, 0, 0, -1, 0), size=(30, 20, 12))
    plan = plan_slices(volume, "axial")
    assert plan.axis == 1 and plan.transpose and plan.slice_shape() == (30, 12)
    marker = np.zeros_like(volume.array)
    marker[..., -1] = 1  # most posterior I index
    assert plan.extract(marker, plan.indices[0])[-1].all()  # bottom row of the axial slice
    rebuilt = np.zeros_like(volume.array)
    for index in plan.indices:
        plan.place(rebuilt, index, plan.extract(volume.array, index))
    np.testing.assert_array_equal(rebuilt, volume.array)
