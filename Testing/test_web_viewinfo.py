"""What the page writes over its views (DiffusionSegWeb/viewinfo.py) and its CT window presets: the
orientation letters of Slicer's axial, coronal and sagittal views and of an oblique one, the slice
position, the window/level, and the presets applied to the app's own volume."""

from __future__ import annotations

import numpy as np
import pytest
import slicer_test_utils  # noqa: F401  (puts the module folder on sys.path)
import SimpleITK as sitk
from helpers import ct_like_volume, rgb_image

pytest.importorskip("trame_slicer")

from DiffusionSegWeb.viewinfo import orientationLetters, slicePosition  # noqa: E402

# Slicer's default SliceToRAS of its three views (vtkMRMLSliceNode: axial, coronal, sagittal)
AXIAL = [[-1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 12.5], [0, 0, 0, 1]]
CORONAL = [[-1, 0, 0, 0], [0, 0, 1, -30.0], [0, 1, 0, 0], [0, 0, 0, 1]]
SAGITTAL = [[0, 0, 1, 7.0], [-1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]]


def test_letters_and_positions_of_slicers_three_views():
    # radiological convention: the patient's right on the screen's left
    assert orientationLetters(AXIAL) == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    assert orientationLetters(CORONAL) == {"left": "R", "right": "L", "top": "S", "bottom": "I"}
    assert orientationLetters(SAGITTAL) == {"left": "A", "right": "P", "top": "S", "bottom": "I"}
    assert slicePosition(AXIAL) == "S 12.5 mm"
    assert slicePosition(SAGITTAL) == "R 7.0 mm"
    flipped = np.array(CORONAL, float)
    flipped[:3, 2] *= -1          # a normal pointing posterior: the position is still along A
    assert slicePosition(CORONAL) == slicePosition(flipped) == "A -30.0 mm"


def test_an_oblique_view_names_the_direction_it_mostly_faces():
    angle = np.radians(30)
    rotated = np.array(AXIAL, float)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    rotated[:3, :3] = rotation @ rotated[:3, :3]
    assert orientationLetters(rotated) == orientationLetters(AXIAL)
    rotated[:3, :3] = np.array([[0, 1, 0], [-1, 0, 0], [0, 0, 1]]) @ np.array(AXIAL, float)[:3, :3]
    # screen right now points anterior, screen up to the patient's right
    assert orientationLetters(rotated) == {"left": "P", "right": "A", "top": "R", "bottom": "L"}


@pytest.fixture()
def app(web_app):
    return web_app("off")


def test_the_app_labels_its_views_and_applies_ct_windows(app, tmp_path):
    sitk.WriteImage(ct_like_volume(size=(24, 20, 5)), str(tmp_path / "abdomen-ct.nrrd"))
    volume = app.loadVolume([str(tmp_path / "abdomen-ct.nrrd")])
    state = app.state
    assert state.ds_is_ct and state.ds_save_name == "abdomen-ct.seg.nrrd"
    red = state.ds_view_Red
    assert red["title"] == "Axial" and red["letters"] == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    assert red["position"].startswith("S ") and red["position"].endswith(" mm")
    app.setWindow("lung")
    display = volume.GetDisplayNode()
    assert (display.GetWindow(), display.GetLevel()) == (1400, -500) and state.ds_window == "lung"
    assert state.ds_view_Red["wl"] == "W 1400 L -500"   # the views' label follows the display
    app.setWindow("no-such-preset")
    assert (display.GetWindow(), display.GetLevel()) == (1400, -500)
    sitk.WriteImage(rgb_image(), str(tmp_path / "cell.nrrd"))
    app.loadVolume([str(tmp_path / "cell.nrrd")])
    assert not state.ds_is_ct and state.ds_window == "" and state.ds_save_name == "cell.seg.nrrd"
