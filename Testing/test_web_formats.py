"""Volumes opened in the web app: a zipped DICOM series, an RGB picture and NIfTI, each on the
right grid in the app's Slicer scene (no browser: the upload path and the scene, directly)."""

from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest
import SimpleITK as sitk

pytest.importorskip("trame_slicer")

from Testing.helpers import ct_like_volume, rgb_image  # noqa: E402

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


@pytest.fixture(scope="module")
def app():
    from DiffusionSegSlicerLib.ServiceManager import ServiceSettings
    from trame.app import get_server

    import DiffusionSegWeb  # noqa: F401  (the Slicer module's lib on the path)
    from DiffusionSegWeb.app import WebApp
    from DiffusionSegWeb.files import Workspace

    workspace = Workspace(50_000_000)
    web = WebApp(server=get_server("test-web-formats"), workspace=workspace,
                 serviceSettings=ServiceSettings(mode="local"))
    yield web
    workspace.remove()


def upload(app, path):
    from DiffusionSegWeb.files import readableBySlicer

    data = path.read_bytes()
    paths = app.workspace.receiveUpload([{"name": path.name, "size": len(data), "content": data}])
    return app.loadVolume([str(p) for p in readableBySlicer(paths)])


def ijkToRas(node) -> np.ndarray:
    import vtk

    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def expectedIjkToRas(image: sitk.Image) -> np.ndarray:
    direction = np.array(image.GetDirection()).reshape(3, 3) * np.array(image.GetSpacing())
    out = np.eye(4)
    out[:3, :3] = LPS_TO_RAS @ direction
    out[:3, 3] = LPS_TO_RAS @ np.array(image.GetOrigin())
    return out


def writeDicomSeries(volume: sitk.Image, folder) -> list[str]:
    d = volume.GetDirection()
    orientation = "\\".join(f"{v:.6f}" for v in (d[0], d[3], d[6], d[1], d[4], d[7]))
    files = []
    for k in range(volume.GetSize()[2]):
        slice2d = sitk.Cast(volume[:, :, k], sitk.sitkInt16)
        position = volume.TransformIndexToPhysicalPoint((0, 0, k))
        tags = {"0008|0060": "CT", "0008|0016": "1.2.840.10008.5.1.4.1.1.2", "0008|0018": f"1.2.826.0.1.3680043.9.7.{k + 1}",
                "0020|000d": "1.2.826.0.1.3680043.9.7", "0020|000e": "1.2.826.0.1.3680043.9.7.0",
                "0020|0013": str(k + 1), "0020|0032": "\\".join(f"{v:.6f}" for v in position),
                "0020|0037": orientation, "0018|0050": str(volume.GetSpacing()[2]),
                "0028|0030": f"{volume.GetSpacing()[1]}\\{volume.GetSpacing()[0]}"}
        for tag, value in tags.items():
            slice2d.SetMetaData(tag, value)
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        writer.SetFileName(os.path.join(folder, f"IM{k:03d}.dcm"))
        writer.Execute(slice2d)
        files.append(writer.GetFileName())
    return files


def test_zipped_oblique_dicom_series_lands_on_its_grid(app, tmp_path):
    volume = ct_like_volume(size=(40, 36, 6))
    files = writeDicomSeries(volume, tmp_path)
    with zipfile.ZipFile(tmp_path / "series.zip", "w") as archive:
        for path in reversed(files):   # archive order must not matter
            archive.write(path, "study/series/" + os.path.basename(path))
    node = upload(app, tmp_path / "series.zip")
    assert node.GetImageData().GetDimensions() == volume.GetSize()
    np.testing.assert_allclose(ijkToRas(node), expectedIjkToRas(volume), atol=1e-3)
    assert app.state.ds_volume_name and app.volumeNode is node


def test_rgb_picture_becomes_a_vector_volume(app, tmp_path):
    sitk.WriteImage(rgb_image(), str(tmp_path / "cell.png"))
    node = upload(app, tmp_path / "cell.png")
    assert node.IsA("vtkMRMLVectorVolumeNode")
    image = node.GetImageData()
    assert image.GetDimensions() == (70, 50, 1) and image.GetNumberOfScalarComponents() == 3


def test_nifti_volume_and_its_geometry(app, tmp_path):
    volume = ct_like_volume(size=(20, 18, 4))
    sitk.WriteImage(volume, str(tmp_path / "ct.nii.gz"))
    node = upload(app, tmp_path / "ct.nii.gz")
    np.testing.assert_allclose(ijkToRas(node), expectedIjkToRas(volume), atol=1e-4)


def test_upload_over_the_limit_is_dropped_chunk_by_chunk(app, tmp_path):
    import asyncio

    sitk.WriteImage(ct_like_volume(size=(8, 8, 2)), str(tmp_path / "small.nrrd"))
    before = app.volumeNode
    huge = {"name": "huge.nrrd", "size": 1, "content": b"x" * (app.workspace.maxUploadBytes + 1)}   # bytes count
    small = {"name": "small.nrrd", "size": 10, "content": (tmp_path / "small.nrrd").read_bytes()}
    for chunk in ([huge], [small], []):   # a later chunk of the same upload is dropped too
        asyncio.run(app._onUploadChunk(chunk))
    assert "limit" in app.state.ds_status["error"]   # the page's status model (DiffusionSegWeb/status.py)
    assert app.volumeNode is before
