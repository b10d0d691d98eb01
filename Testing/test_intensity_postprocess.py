import numpy as np
import pytest

from DiffusionSegLib.contract.errors import InvalidRequest
from DiffusionSegLib.imaging.intensity import choose_mapping, has_tissue, looks_like_ct
from DiffusionSegLib.imaging.postprocess import (
    fill_holes,
    keep_largest_component,
    match_labels_across_slices,
)


def test_ct_is_detected_and_windowed():
    ct = np.full((2, 10, 10), -1000.0)
    ct[:, 3:7, 3:7] = 300.0
    assert looks_like_ct(ct)
    mapping = choose_mapping(ct, False, "auto")
    assert mapping.preset == "ct-soft-tissue" and (mapping.low, mapping.high) == (-160.0, 240.0)
    pixels = mapping.apply(ct[0])
    assert pixels.shape == (3, 10, 10) and pixels.min() == 0.0 and pixels.max() == 1.0
    lung = choose_mapping(ct, False, "ct-lung")
    assert (lung.low, lung.high) == (-1350.0, 150.0)


def test_mr_percentiles_ignore_zero_background():
    rng = np.random.default_rng(0)
    mr = np.zeros((4, 50, 50))
    mr[:, 10:40, 10:40] = rng.normal(500, 50, (4, 30, 30))
    mapping = choose_mapping(mr, False, "auto")
    assert mapping.preset == "mr" and mapping.low > 300  # background zeros do not set the low end


def test_rgb_is_used_as_is_and_presets_are_checked():
    rgb = np.random.default_rng(0).integers(0, 256, (1, 8, 8, 3)).astype(np.float32)
    mapping = choose_mapping(rgb, True, "auto")
    assert (mapping.low, mapping.high, mapping.rgb) == (0.0, 255.0, True)
    np.testing.assert_allclose(mapping.apply(rgb[0])[1], rgb[0, :, :, 1] / 255.0, rtol=1e-6)
    with pytest.raises(InvalidRequest, match="RGB"):
        choose_mapping(rgb, True, "ct-lung")
    with pytest.raises(InvalidRequest, match="Unknown"):
        choose_mapping(rgb, True, "xray-magic")


def test_tissue_test():
    assert not has_tissue(np.zeros((3, 20, 20), np.float32))
    slice_ = np.zeros((3, 20, 20), np.float32)
    slice_[:, 5:10, 5:10] = 0.6
    assert has_tissue(slice_)


def test_fill_holes_and_largest_component():
    labels = np.zeros((3, 12, 12), np.uint16)
    labels[1, 2:9, 2:9] = 1
    labels[1, 4:6, 4:6] = 0  # hole
    labels[1, 10:12, 10:12] = 1  # small separate component
    filled = fill_holes(labels, axis=0)
    assert filled[1, 4:6, 4:6].all()
    largest = keep_largest_component(filled)
    assert largest[1, 10:12, 10:12].sum() == 0 and largest[1, 2:9, 2:9].all()


def test_segment_ids_are_matched_across_slices():
    labels = np.zeros((3, 10, 10), np.uint16)
    labels[0, :5] = 1
    labels[0, 5:] = 2
    labels[1, :5] = 7  # same regions, swapped and arbitrary ids
    labels[1, 5:] = 3
    labels[2, :4] = 3
    labels[2, 4:] = 9
    matched = match_labels_across_slices(labels, axis=0)
    assert matched[0, 0, 0] == matched[1, 0, 0] == matched[2, 0, 0]
    assert matched[0, 9, 0] == matched[1, 9, 0] == matched[2, 9, 0]
    assert set(np.unique(matched)) == {1, 2}
