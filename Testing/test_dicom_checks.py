"""Input checks before any model loads: a DICOM folder that would be read wrongly is refused with
what was found and what to do, or corrected exactly with a warning; a preset that does not fit
the intensities is refused (CT window on non-HU values) or warned about (percentiles on CT)."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_data import write_multiframe, write_series
from fake_methods import BrightThreshold

import DiffusionSegLib.methods as registry
from DiffusionSegLib.contract.errors import InvalidImage, InvalidRequest
from DiffusionSegLib.contract.request import JobRequest
from DiffusionSegLib.imaging.intensity import could_be_hounsfield
from DiffusionSegLib.io.images import read_volume
from DiffusionSegLib.jobs.job import run_job


class MustNotLoad(BrightThreshold):
    """Fails the test if a job gets as far as loading a model."""

    def load(self) -> None:
        raise AssertionError("the model was loaded before the input was refused")


@pytest.fixture()
def never_loads(monkeypatch):
    methods = dict(registry.available_methods())
    methods["bright-threshold"] = MustNotLoad
    monkeypatch.setattr(registry, "_REGISTRY", methods)


def job(folder, output, **overrides):
    events = []
    request = JobRequest.from_dict({"input": str(folder), "output": str(output), "method": "bright-threshold",
                                    "device": "cpu", **overrides})
    return events, run_job(request, events.append)


def test_series_is_read_in_slice_order_with_its_values_and_geometry(tmp_path):
    series = write_series(tmp_path / "ct", orientation=(0.8, 0.6, 0, -0.6, 0.8, 0))   # file names shuffled
    volume = read_volume(series.folder)
    np.testing.assert_array_equal(volume.array, series.hu)     # rescale applied, slices in order
    assert volume.dicom.files == tuple(map(str, series.files)) and volume.notes == []
    np.testing.assert_allclose(volume.spacing, (0.8, 0.7, 2.5), atol=1e-4)
    np.testing.assert_allclose(volume.direction[:, 0], (0.8, 0.6, 0), atol=1e-6)


@pytest.mark.parametrize("case,expected", [
    ("missing", r"gap of 5 mm between instance 3 .* about 1 slice\(s\) missing"),
    ("uneven", r"unevenly spaced slices"),
    ("two series", r"holds 2 image series: CT 'synthetic CT', 8 object\(s\)"),
    ("4d", r"up to 2 share one position .* 4D"),
    ("orientations", r"lie in 2 orientations: 8 axial .*, 3 coronal"),
    ("multiframe", r"multi-frame object \(8 frames"),
])
def test_bad_series_are_refused_with_what_was_found(tmp_path, never_loads, case, expected):
    folder = tmp_path / "in"
    if case == "missing":
        write_series(folder, drop=3)
    elif case == "uneven":
        series = write_series(folder)
        ds = pydicom.dcmread(series.files[5])
        ds.ImagePositionPatient[2] = float(ds.ImagePositionPatient[2]) + 1.0
        ds.save_as(series.files[5])
    elif case == "two series":
        write_series(folder)
        write_series(folder / "x", modality="MR")
        for path in (folder / "x").iterdir():
            path.rename(folder / f"mr-{path.name}")
    elif case in ("4d", "orientations"):
        series = write_series(folder)
        other = write_series(tmp_path / "other", slices=8 if case == "4d" else 3,
                             orientation=(1, 0, 0, 0, 1, 0) if case == "4d" else (1, 0, 0, 0, 0, -1))
        for n, path in enumerate(other.files):
            ds = pydicom.dcmread(path)
            ds.SeriesInstanceUID, ds.StudyInstanceUID = series.series, series.study
            ds.save_as(folder / f"second-{n}.dcm")
    else:
        write_multiframe(folder, write_series(tmp_path / "single"))
    with pytest.raises(InvalidImage, match=expected) as error:
        job(folder, tmp_path / "out.nrrd")
    assert error.value.hint   # and what to do
    assert not (tmp_path / "out.nrrd").exists()


def test_localizer_is_dropped_and_other_objects_ignored_with_warnings(tmp_path, monkeypatch):
    methods = dict(registry.available_methods())
    methods["bright-threshold"] = BrightThreshold
    monkeypatch.setattr(registry, "_REGISTRY", methods)
    series = write_series(tmp_path / "ct", localizer=True)
    shutil.copy(series.files[0], tmp_path / "copy.dcm")
    sr = pydicom.dcmread(tmp_path / "copy.dcm")
    sr.Modality, sr.SOPInstanceUID, sr.SeriesInstanceUID = "SR", pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    sr.save_as(series.folder / "report.dcm")
    events, result = job(series.folder, tmp_path / "seg.nrrd", params={"threshold": 0.7})
    warnings = [e["message"] for e in events if e["event"] == "warning"]
    assert any("dropped 1 localizer image(s)" in w for w in warnings)
    assert any("ignored 1 object(s) that are not images to segment (1 SR)" in w for w in warnings)
    assert sitk.ReadImage(result.output).GetSize() == (48, 40, 8)


def test_intensity_preset_must_fit_the_values(tmp_path, never_loads):
    mr = write_series(tmp_path / "mr", modality="MR")
    with pytest.raises(InvalidRequest, match="'ct-soft-tissue' is a CT window in Hounsfield units.*says MR"):
        job(mr.folder, tmp_path / "out.nrrd", pipeline={"intensity": "ct-soft-tissue"})
    volume = sitk.GetImageFromArray(np.random.default_rng(0).uniform(0, 900, (4, 30, 30)).astype(np.float32))
    sitk.WriteImage(volume, str(tmp_path / "mr.nrrd"))
    with pytest.raises(InvalidRequest, match="which no CT holds"):
        job(tmp_path / "mr.nrrd", tmp_path / "out.nrrd", pipeline={"intensity": "ct-lung"})
    # a CT crop inside the body (a liver ROI: no air, no bone) is still Hounsfield units
    liver = np.random.default_rng(1).normal(60, 20, (4, 30, 30)).astype(np.float32)
    liver[:, 10:15, 10:15] = 180.0
    assert could_be_hounsfield(liver) and not could_be_hounsfield(liver + 500)


def test_percentiles_on_ct_warn(tmp_path, monkeypatch):
    methods = dict(registry.available_methods())
    methods["bright-threshold"] = BrightThreshold
    monkeypatch.setattr(registry, "_REGISTRY", methods)
    ct = write_series(tmp_path / "ct")
    events, _ = job(ct.folder, tmp_path / "out.nrrd", pipeline={"intensity": "mr"})
    assert any("looks like CT in Hounsfield units" in e["message"] for e in events if e["event"] == "warning")
