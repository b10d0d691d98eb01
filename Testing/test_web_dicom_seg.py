"""The web app's DICOM SEG (DiffusionSegWeb/saving.py, DiffusionSegLib io/seg_export.py): a volume
opened from a DICOM series is saved as `.seg.nrrd` and as a SEG of that series, which dciodvfy
accepts and which highdicom reads back, on the source images, to exactly the segments' voxels;
overlapping segments, a volume not from DICOM (no SEG) and a segment with no voxel."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import slicer_test_utils  # noqa: F401  (puts the module folder on sys.path)
from dicom_data import write_series

pytest.importorskip("trame_slicer")
pytest.importorskip("highdicom")

from DiffusionSegLib.io.dicom_seg import read_seg_labels
from DiffusionSegLib.io.dicom_series import read_dicom


@pytest.fixture()
def app(web_app):
    return web_app("off")


def paint(app, masks: dict[str, np.ndarray]):
    """Segments from masks (K, J, I) on the scene volume's grid, each imported as its own labelmap
    (so they may overlap), as the Segment Editor holds them."""
    import slicer
    from vtkmodules.util.numpy_support import numpy_to_vtk
    from vtkmodules.vtkCommonDataModel import vtkImageData
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    volume, segmentation = app.volumeNode, app.segmentationNode
    for name, mask in masks.items():
        if not mask.any():      # a segment the person added and has not painted yet
            segmentation.GetSegmentation().AddEmptySegment("", name)
            continue
        labelmap = app.slicerApp.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
        image = vtkImageData()
        image.SetDimensions(mask.shape[2], mask.shape[1], mask.shape[0])
        image.GetPointData().SetScalars(numpy_to_vtk(mask.astype(np.uint8).ravel(), deep=True))
        labelmap.SetAndObserveImageData(image)
        matrix = vtkMatrix4x4()
        volume.GetIJKToRASMatrix(matrix)
        labelmap.SetIJKToRASMatrix(matrix)
        before = segmentation.GetSegmentation().GetNumberOfSegments()
        assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, segmentation, "")
        segmentation.GetSegmentation().GetNthSegment(before).SetName(name)
        app.slicerApp.scene.RemoveNode(labelmap)
    app.jobs.madeWith = {"method": "adzus", "model": "planted", "prompt": "\n".join(masks)}


def sceneArray(app) -> np.ndarray:
    from vtkmodules.util.numpy_support import vtk_to_numpy

    image = app.volumeNode.GetImageData()
    dims = image.GetDimensions()
    return vtk_to_numpy(image.GetPointData().GetScalars()).reshape(dims[2], dims[1], dims[0])


@pytest.mark.parametrize("tilt", [0.0, 12.0])
def test_save_writes_a_seg_of_the_series_with_every_voxel_on_its_source_image(app, tmp_path, tilt):
    series = write_series(tmp_path / "series", slices=6, rows=30, columns=34, tilt_degrees=tilt,
                          orientation=(0.96, 0.28, 0, -0.28, 0.96, 0))
    app.loadVolume([str(p) for p in sorted(series.files)])
    assert app.state.ds_is_dicom and app.dicomFolder == series.folder
    values = sceneArray(app)
    bright = values > np.percentile(values, 85)
    core = np.zeros_like(bright)
    core[2:4, 10:20, 12:22] = True            # overlaps the bright region
    assert bright.sum() > 100 and (bright & core).any()
    paint(app, {"liver": bright, "liver tumour": core})

    app.saver.save()
    state = app.state
    assert state.ds_download_ready and state.ds_dicom_ready, state.ds_status
    assert state.ds_save_name == "3-synthetic-CT.seg.nrrd" and state.ds_dicom_name == "3-synthetic-CT.seg.dcm"
    seg = app.saver.savedDicom
    ds = pydicom.dcmread(seg)
    assert ds.Modality == "SEG" and ds.StudyInstanceUID == series.study
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["liver", "liver tumour"]
    assert {s.SegmentAlgorithmType for s in ds.SegmentSequence} == {"SEMIAUTOMATIC"}
    assert "adzus" in ds.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0].AlgorithmName

    # On the source images, in the backend's slice order: the segments exactly as painted. The
    # scene's grid and the series' may stack the slices differently; compare through the
    # backend's reading of the same files.
    image, source, _ = read_dicom(series.folder)
    labels, _ = read_seg_labels(seg, source)
    backend = sitk.GetArrayFromImage(image)
    order = [int(np.argmin([np.abs(backend[k].astype(float) - values[j]).sum() for j in range(len(values))]))
             for k in range(len(backend))]
    assert sorted(order) == list(range(len(values)))
    expected = np.where(core, 2, np.where(bright, 1, 0))[order]   # the later segment wins an overlap
    assert labels.shape == expected.shape and (labels > 0).sum() == (expected > 0).sum()
    assert np.array_equal(labels, expected)

    if shutil.which("dciodvfy"):
        check = subprocess.run(["dciodvfy", str(seg)], capture_output=True, text=True)
        assert "Error" not in check.stdout + check.stderr, (check.stdout + check.stderr)[-3000:]


def test_a_volume_not_from_dicom_saves_no_seg(app, tmp_path):
    from helpers import ct_like_volume

    sitk.WriteImage(ct_like_volume(size=(24, 20, 5)), str(tmp_path / "ct.nrrd"))
    app.loadVolume([str(tmp_path / "ct.nrrd")])
    assert not app.state.ds_is_dicom
    paint(app, {"liver": sceneArray(app) > 100})
    app.saver.save()
    assert app.state.ds_download_ready and not app.state.ds_dicom_ready
    assert app.state.ds_status["message"] == "Saved ct.seg.nrrd; press Download to get it."


def test_a_segment_without_voxels_is_left_out_and_named(app, tmp_path):
    series = write_series(tmp_path / "series", slices=4, rows=24, columns=24)
    app.loadVolume([str(p) for p in sorted(series.files)])
    values = sceneArray(app)
    paint(app, {"liver": values > np.percentile(values, 80), "spleen": np.zeros(values.shape, bool)})
    app.saver.save()
    assert app.state.ds_dicom_ready
    assert "spleen left out" in app.state.ds_status["message"]
    ds = pydicom.dcmread(app.saver.savedDicom)
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["liver"]
