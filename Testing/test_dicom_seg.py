"""DICOM in, DICOM SEG out: synthetic series (axial, oblique, gantry-tilted CT, MR) segmented by the
model-free threshold method; every SEG passes dciodvfy and reads back (highdicom) to exactly the
labelmap the same request writes as NRRD; codes, UIDs and the algorithm are the ones promised."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_data import write_series
from fake_methods import BrightThreshold

import DiffusionSegLib.methods as registry
from DiffusionSegLib.contract.errors import InvalidRequest
from DiffusionSegLib.contract.request import JobRequest
from DiffusionSegLib.io.dicom_seg import read_seg_labels
from DiffusionSegLib.io.terminology import segment_codes
from DiffusionSegLib.jobs.job import run_job

# dicom3tools 1.00~20220618 predates the Label Map Segmentation IOD (DICOM 2024): it cannot know
# its SOP class, and reads the label map's background segment 0 as a misnumbered binary segment.
LABELMAP_UNKNOWN_TO_DCIODVFY = ("Information Object Not found",
                                "SegmentNumber not monotonically increasing from one by one")


@pytest.fixture()
def threshold(monkeypatch):
    methods = dict(registry.available_methods())
    methods["bright-threshold"] = BrightThreshold
    monkeypatch.setattr(registry, "_REGISTRY", methods)


def segment(series_folder, output, **overrides) -> tuple[list[dict], object]:
    events = []
    request = JobRequest.from_dict({"input": str(series_folder), "output": str(output), "method": "bright-threshold",
                                    "device": "cpu", "params": {"threshold": 0.7}, **overrides})
    return events, run_job(request, events.append)


def dciodvfy_errors(path) -> list[str]:
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (dicom3tools) is not installed")
    done = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("Error")]


@pytest.mark.parametrize("kind", ["axial", "oblique", "tilted", "mr"])
def test_seg_passes_dciodvfy_and_reads_back_to_the_nrrd_labels(tmp_path, threshold, kind):
    options = {"axial": {}, "oblique": {"orientation": (0.8, 0.6, 0, -0.6, 0.8, 0)},
               "tilted": {"tilt_degrees": 15}, "mr": {"modality": "MR"}}[kind]
    series = write_series(tmp_path / "series", **options)
    prompt = {"prompt": "liver tumour"}
    events, seg = segment(series.folder, tmp_path / "seg.dcm", **prompt)
    _, labelmap = segment(series.folder, tmp_path / "labels.nrrd", **prompt)
    expected = sitk.GetArrayFromImage(sitk.ReadImage(labelmap.output))
    assert expected.any() and not expected.all()            # a real result, not an empty or full one
    assert dciodvfy_errors(seg.output) == []
    labels, segments = read_seg_labels(seg.output, [str(pydicom.dcmread(p).SOPInstanceUID) for p in series.files])
    np.testing.assert_array_equal(labels, expected)
    assert segments == [{"label": 1, "name": "liver tumour"}]
    warnings = [e["message"] for e in events if e["event"] == "warning"]
    assert any("gantry tilt of 15.00°" in w for w in warnings) == (kind == "tilted")

    ds = pydicom.dcmread(seg.output)
    assert ds.StudyInstanceUID == series.study and ds.FrameOfReferenceUID == pydicom.dcmread(series.files[0]).FrameOfReferenceUID
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == series.series
    assert {i.ReferencedSOPInstanceUID for i in ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence} == \
        {str(pydicom.dcmread(p).SOPInstanceUID) for p in series.files}
    item = ds.SegmentSequence[0]
    assert item.SegmentAlgorithmType == "AUTOMATIC"
    assert item.SegmentAlgorithmName.startswith("DiffusionSeg bright-threshold")
    assert (item.SegmentedPropertyTypeCodeSequence[0].CodeValue,
            item.AnatomicRegionSequence[0].CodeMeaning) == ("108369006", "Liver")   # SNOMED Neoplasm, in the liver
    assert ds.Manufacturer == "DiffusionSeg" and ds.SoftwareVersions[0] and "seed=0" in ds.DerivationDescription


def test_tilted_grid_is_exact_in_the_labelmap(tmp_path, threshold):
    """Each voxel of the labelmap sits at the patient position of its source pixel."""
    series = write_series(tmp_path / "series", tilt_degrees=20)
    _, result = segment(series.folder, tmp_path / "labels.nrrd")
    image = sitk.ReadImage(result.output)
    for k, path in enumerate(series.files):
        ds = pydicom.dcmread(path)
        for i, j in ((0, 0), (47, 0), (0, 39), (20, 30)):
            row, column = np.array(ds.ImageOrientationPatient[:3], float), np.array(ds.ImageOrientationPatient[3:], float)
            expected = np.array(ds.ImagePositionPatient, float) + i * float(ds.PixelSpacing[1]) * row \
                + j * float(ds.PixelSpacing[0]) * column
            np.testing.assert_allclose(image.TransformIndexToPhysicalPoint((i, j, k)), expected, atol=1e-4)
    with pytest.raises(InvalidRequest, match="NIfTI cannot hold it exactly"):
        segment(series.folder, tmp_path / "tilted.nii.gz")
    assert not (tmp_path / "tilted.nii.gz").exists()


def test_labelmap_seg_option_reads_back(tmp_path, threshold):
    series = write_series(tmp_path / "series")
    _, seg = segment(series.folder, tmp_path / "seg.dcm", seg_type="labelmap")
    _, binary = segment(series.folder, tmp_path / "binary.dcm")
    ds = pydicom.dcmread(seg.output)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.7" and ds.SegmentationType == "LABELMAP"
    uids = [str(pydicom.dcmread(p).SOPInstanceUID) for p in series.files]
    labels, _ = read_seg_labels(seg.output, uids)
    assert labels.any()
    np.testing.assert_array_equal(labels, read_seg_labels(binary.output, uids)[0])
    assert all(any(known in line for known in LABELMAP_UNKNOWN_TO_DCIODVFY) for line in dciodvfy_errors(seg.output))


def test_seg_needs_dicom_input_and_an_empty_result_writes_none(tmp_path, threshold):
    series = write_series(tmp_path / "series")
    volume = tmp_path / "ct.nrrd"
    sitk.WriteImage(sitk.ReadImage([str(p) for p in series.files]), str(volume))
    with pytest.raises(InvalidRequest, match="needs DICOM source images"):
        segment(volume, tmp_path / "seg.dcm")
    events, result = segment(series.folder, tmp_path / "empty.dcm", params={"threshold": 1.0})
    assert not (tmp_path / "empty.dcm").exists() and (tmp_path / "empty.provenance.json").exists()
    assert result.segments == [] and "labelmap" not in result.outputs
    assert any("no DICOM SEG was written" in e["message"] for e in events if e["event"] == "warning")
    assert next(e for e in events if e["event"] == "result")["output"] is None


def test_sdseg_probability_goes_out_as_a_fractional_seg(tmp_path, monkeypatch):
    """SDSeg's evidence is a probability: with a SEG output and --evidence it is also written as a
    PROBABILITY SEG beside the labels SEG, 8 bits, within half a step of the bundle's map."""
    from evidence_methods import SdsegStandIn

    from DiffusionSegLib.contract.errors import OutputExists
    from DiffusionSegLib.methods.sdseg.method import Sdseg

    assert Sdseg.info.probability_maps == SdsegStandIn.info.probability_maps == ("evidence",)
    monkeypatch.setattr(registry, "_REGISTRY", {**registry.available_methods(), "sdseg": SdsegStandIn})
    series = write_series(tmp_path / "series", orientation=(0.8, 0.6, 0, -0.6, 0.8, 0))
    request = {"version": 2, "evidence": True, "method": "sdseg", "prompt": "lesion"}
    events, result = segment(series.folder, tmp_path / "seg.dcm", **request, params={})
    path = tmp_path / "seg.evidence.dcm"
    assert result.outputs["evidence_seg"] == str(path) and path.is_file()
    ds = pydicom.dcmread(path)
    assert (ds.SegmentationType, ds.SegmentationFractionalType, ds.MaximumFractionalValue) == \
        ("FRACTIONAL", "PROBABILITY", 255)
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["lesion"] and ds.StudyInstanceUID == series.study
    assert dciodvfy_errors(path) == []

    from DiffusionSegLib.io.dicom_seg import read_probability

    uids = [str(pydicom.dcmread(p).SOPInstanceUID) for p in series.files]
    written = read_probability(path, uids)
    evidence = sitk.GetArrayFromImage(sitk.ReadImage(result.outputs["evidence"]))
    assert evidence.shape == written.shape and evidence.max() > 0.5 and evidence.std() > 0.05
    assert np.abs(written - np.clip(evidence, 0, 1)).max() <= 0.5 / 255 + 1e-6
    labels, _ = read_seg_labels(tmp_path / "seg.dcm", uids)
    inside, outside = written[labels > 0], written[labels == 0]
    assert inside.size and outside.size and inside.mean() > outside.mean() + 0.1   # labels where the probability is

    # a second run without --overwrite: refused before any work, nothing replaced
    before = path.read_bytes()
    path.with_name("other.evidence.dcm").write_bytes(b"mine")
    with pytest.raises(OutputExists, match="evidence SEG"):
        segment(series.folder, tmp_path / "other.dcm", **request, params={})
    assert path.read_bytes() == before and path.with_name("other.evidence.dcm").read_bytes() == b"mine"
    assert not (tmp_path / "other.dcm").exists()


def test_segments_are_coded_from_the_shared_table():
    tumour = segment_codes("Liver Tumor")
    assert tumour.type == ("SCT", "108369006", "Neoplasm") and tumour.region == ("SCT", "10200004", "Liver")
    assert segment_codes("odd lesion blob").standard is False
    assert segment_codes("odd lesion blob").category == ("SCT", "49755003", "Morphologically Altered Structure")
    assert segment_codes("renal pelvis fat").type == ("SCT", "85756007", "Tissue")


def test_serve_returns_the_seg_when_asked_for_dcm(tmp_path, threshold):
    from DiffusionSegLib.jobs.runner import Runner
    from DiffusionSegLib.serve.jobs import JobService

    series = write_series(tmp_path / "data" / "ct")
    service = JobService(Runner(), tmp_path / "work", [tmp_path / "data"], max_upload_bytes=10**6)
    try:
        job = service.submit({"input": str(series.folder), "output": "result.dcm", "method": "bright-threshold",
                              "device": "cpu", "params": {"threshold": 0.7}})
        events, finished = job.wait_events(0, 60)
        while not finished:
            events, finished = job.wait_events(len(events), 60)
        assert job.state == "done", job.events[-1]
        assert job.files() == ["labelmap.dcm", "labelmap.provenance.json"]
        labels, _ = read_seg_labels(job.folder / "labelmap.dcm")
        assert labels.any() and dciodvfy_errors(job.folder / "labelmap.dcm") == []
    finally:
        service.close()
