"""A DICOM study in the browser and back out as a DICOM SEG (headless Chromium, Playwright).

As a radiologist would: upload a zip of a CT series, Apply ADZUS on the planted model (a stand-in
for Stable Diffusion with a known answer: the series' bright disc) at the shipped defaults, Save,
press "Download DICOM SEG". The downloaded file is a SEG of that study that highdicom reads back,
on the uploaded images, to exactly the downloaded `.seg.nrrd`'s voxels, which hold the disc.
"""

from __future__ import annotations

import zipfile

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_data import write_series
from web_page import CHROMIUM, FLAGS, JOB_TIMEOUT_MS, VIEWPORT, runningWebApp, state, usePlantedModel

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
pytest.importorskip("highdicom")

from DiffusionSegLib.io.dicom_seg import read_seg_labels  # noqa: E402
from DiffusionSegLib.io.dicom_series import read_dicom  # noqa: E402
from DiffusionSegLib.io.seg_export import labels_on_grid, read_seg_nrrd  # noqa: E402


def test_a_dicom_upload_comes_back_as_a_seg_of_its_study(tmp_path):
    from playwright.sync_api import sync_playwright

    series = write_series(tmp_path / "series", slices=8, rows=40, columns=48, orientation=(0.96, 0.28, 0, -0.28, 0.96, 0))
    upload = tmp_path / "abdomen-ct.zip"
    with zipfile.ZipFile(upload, "w") as archive:
        for path in series.files:
            archive.write(path, f"CT/{path.name}")

    with runningWebApp(tmp_path) as (url, _process, logPath), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_page(viewport=VIEWPORT, accept_downloads=True)
        page.set_default_timeout(120_000)
        try:
            page.goto(url)
            page.wait_for_selector("#ds-apply")
            page.set_input_files("#ds-upload", str(upload))
            page.wait_for_function("() => window.trame.state.get('ds_is_dicom') && !window.trame.state.get('ds_busy')")
            page.locator("#ds-prompts").fill("lesion")
            usePlantedModel(page)
            page.locator("#ds-apply").click()   # at once: the typed fields travel with the click
            page.wait_for_function("() => window.trame.state.get('ds_running')", timeout=30_000)
            page.wait_for_function("() => !window.trame.state.get('ds_running')", timeout=JOB_TIMEOUT_MS)
            status = state(page, "ds_status")
            assert status["state"] == "succeeded", (status, "\n".join(state(page, "ds_log")))
            assert page.locator("#ds-download-dicom").count() == 0    # not before Save

            page.locator("#ds-save").click()
            page.wait_for_function("() => window.trame.state.get('ds_dicom_ready')")
            message = state(page, "ds_status")["message"]
            assert "DICOM SEG" in message and "left out" not in message, message
            with page.expect_download() as nrrd:
                page.locator("#ds-download").click()
            nrrd.value.save_as(tmp_path / "downloaded.seg.nrrd")
            with page.expect_download() as dicom:
                page.locator("#ds-download-dicom").click()
            assert dicom.value.suggested_filename.endswith(".seg.dcm")
            dicom.value.save_as(tmp_path / "downloaded.dcm")
            page.screenshot(path=str(tmp_path / "dicom-seg.png"))
        finally:
            print(f"app log:\n{logPath.read_text()[-3000:]}")
            browser.close()

    ds = pydicom.dcmread(tmp_path / "downloaded.dcm")
    assert ds.Modality == "SEG" and ds.StudyInstanceUID == series.study
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["lesion"]
    referenced = {i.ReferencedSOPInstanceUID for s in ds.ReferencedSeriesSequence for i in s.ReferencedInstanceSequence}
    assert referenced == {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in series.files}

    image, source, _ = read_dicom(series.folder)
    seg, _ = read_seg_labels(tmp_path / "downloaded.dcm", source)
    nrrdLabels, segments = read_seg_nrrd(tmp_path / "downloaded.seg.nrrd")
    expected = labels_on_grid(nrrdLabels, image)
    disc = sitk.GetArrayFromImage(image) > 150          # the phantom's 250 HU disc: the planted answer
    assert disc.sum() > 50 and seg.sum() > 0
    assert np.array_equal(seg, expected)
    assert 2 * (seg.astype(bool) & disc).sum() / (seg.astype(bool).sum() + disc.sum()) >= 0.85
