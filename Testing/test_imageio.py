import numpy as np
import pytest
import SimpleITK as sitk
from helpers import ct_like_volume, rgb_image

from DiffusionSegLib.contract.errors import InputNotFound, InvalidImage, InvalidRequest
from DiffusionSegLib.io.images import read_volume, write_labelmap


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz", ".mha"])
def test_labelmap_keeps_exact_geometry_of_oblique_anisotropic_volume(tmp_path, suffix):
    image = ct_like_volume()
    source = tmp_path / f"ct{suffix}"
    sitk.WriteImage(image, str(source))
    volume = read_volume(source)
    assert volume.shape == (9, 36, 40) and not volume.is_rgb
    labels = np.zeros(volume.shape, np.uint8)
    labels[3, 10:20, 5:9] = 2
    out = write_labelmap(labels, volume.reference, tmp_path / f"labels{suffix}")
    written = sitk.ReadImage(str(out))
    reference = sitk.ReadImage(str(source))
    assert written.GetSize() == reference.GetSize()
    # NIfTI stores the rotation as a float32 quaternion: exact to ~1e-9 there, to 1e-12 elsewhere
    tolerance = 1e-8 if suffix == ".nii.gz" else 1e-12
    np.testing.assert_allclose(written.GetSpacing(), reference.GetSpacing(), rtol=0, atol=tolerance)
    np.testing.assert_allclose(written.GetOrigin(), reference.GetOrigin(), rtol=0, atol=tolerance)
    np.testing.assert_allclose(written.GetDirection(), reference.GetDirection(), rtol=0, atol=tolerance)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written), labels)
    # a labelled voxel sits at the same physical point in both images
    point = reference.TransformIndexToPhysicalPoint((6, 12, 3))
    assert written.TransformPhysicalPointToIndex(point) == (6, 12, 3)
    assert written[6, 12, 3] == 2


def test_rgb_png_is_one_slice_volume_and_written_back_2d(tmp_path):
    path = tmp_path / "cell.png"
    sitk.WriteImage(rgb_image(), str(path))
    volume = read_volume(path)
    assert volume.is_rgb and volume.shape == (1, 50, 70) and volume.array.shape == (1, 50, 70, 3)
    out = write_labelmap(np.ones(volume.shape, np.uint8), volume.reference, tmp_path / "seg.nrrd")
    written = sitk.ReadImage(str(out))
    assert written.GetDimension() == 2 and written.GetSize() == (70, 50)


def test_bmp_jpg_tiff_and_dicom_series_are_read(tmp_path):
    rgb = rgb_image()
    for suffix in (".bmp", ".jpg", ".tif"):
        sitk.WriteImage(rgb, str(tmp_path / f"x{suffix}"))
        assert read_volume(tmp_path / f"x{suffix}").is_rgb
    series = tmp_path / "series"
    series.mkdir()
    image = ct_like_volume(direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))
    for k in range(image.GetSize()[2]):
        plane = image[:, :, k]
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        for key, value in (("0008|0060", "CT"), ("0020|000e", "1.2.3.4.5"), ("0020|000d", "1.2.3.4"),
                           ("0020|0032", "\\".join(map(str, image.TransformIndexToPhysicalPoint((0, 0, k))))),
                           ("0020|0037", "1\\0\\0\\0\\1\\0"), ("0020|0013", str(k)), ("0028|0030", "0.9\\0.7")):
            plane.SetMetaData(key, value)
        writer.SetFileName(str(series / f"{k:03d}.dcm"))
        writer.Execute(plane)
    volume = read_volume(series)
    assert volume.shape == (9, 36, 40)
    np.testing.assert_allclose(volume.spacing[2], 3.0, atol=1e-3)


def test_bad_inputs_have_clear_errors(tmp_path):
    with pytest.raises(InputNotFound, match="not found"):
        read_volume(tmp_path / "missing.nrrd")
    four_d = sitk.JoinSeries([ct_like_volume(), ct_like_volume(seed=1)])
    sitk.WriteImage(four_d, str(tmp_path / "4d.nrrd"))
    with pytest.raises(InvalidImage, match="4D"):
        read_volume(tmp_path / "4d.nrrd")
    sitk.WriteImage(sitk.Image(20, 20, 3, sitk.sitkFloat32), str(tmp_path / "empty.nrrd"))
    with pytest.raises(InvalidImage, match="empty"):
        read_volume(tmp_path / "empty.nrrd")
    array = np.random.default_rng(0).normal(size=(3, 20, 20)).astype(np.float32)
    array[1, 5, 5] = np.nan
    sitk.WriteImage(sitk.GetImageFromArray(array), str(tmp_path / "nan.nrrd"))
    with pytest.raises(InvalidImage, match="NaN"):
        read_volume(tmp_path / "nan.nrrd")
    (tmp_path / "junk.nrrd").write_text("not an image")
    with pytest.raises(InvalidImage, match="Could not read"):
        read_volume(tmp_path / "junk.nrrd")


def test_failed_write_leaves_nothing_behind(tmp_path):
    volume = read_volume(_save(tmp_path, ct_like_volume()))
    with pytest.raises(InvalidRequest):
        write_labelmap(np.zeros(volume.shape, np.uint8), volume.reference, tmp_path / "out.xyz")
    with pytest.raises(InvalidRequest, match="2D"):
        write_labelmap(np.zeros(volume.shape, np.uint8), volume.reference, tmp_path / "out.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.nrrd"]


def _save(folder, image):
    path = folder / "in.nrrd"
    sitk.WriteImage(image, str(path))
    return path
