"""The web app end to end in a real browser (headless Chromium driven by Playwright) at 1366×768.

As a radiologist would click it: start `python -m DiffusionSegWeb` from a folder outside the
source tree (it starts its own local `serve`), upload an oblique synthetic CT volume, choose
ADZUS with a tiny Stable Diffusion model, Apply. While the job runs the finished slices must
show in the views (the preview label layer) and the page must show no JSON; when it ends the
worker's warning must be on the page, and the status, warning, segments and Save must be in view
without scrolling. The segment must tint the slice view (pixel check); in "click regions in or
out" mode a click on the segment toggles the region under it (a second click and Undo restore
it; with the mode off the click changes nothing); erase and paint strokes change its voxel count
and undo restores it; Save and Download share one file name, and the downloaded `.seg.nrrd` lies
on the input's grid with the edited voxels; Cancel mid-job leaves the segmentation as it was; the
service token never reaches the page; on exit the app's private folder is gone.

A second scenario: ADZUS, then SDSeg into the same segmentation: the slider is SDSeg's
probability threshold and never rewrites the ADZUS segment; opening another volume clears the
status, warnings, segments and slider.

Skipped only when Chromium is absent (CI installs Debian's `chromium`). The random-weight model
makes no picture for the docs: Resources/Screenshots/make_screenshots.py makes those from a trained
model.
"""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from web_page import (
    CHROMIUM,
    FLAGS,
    JOB_TIMEOUT_MS,
    VIEWPORT,
    assertInView,
    assertNoJsonOnPage,
    chooseAdvanced,
    clickApply,
    clickModeRoundTrip,
    dragSliderTo,
    runningWebApp,
    segmentVoxels,
    usePlantedModel,
    state,
    stroke,
    uploadVolume,
    viewPixels,
    waitForVoxelsChange,
)

from Testing.helpers import ct_like_volume

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")


@pytest.fixture
def browserPage(tmp_path, tiny_sdseg_path):
    from playwright.sync_api import sync_playwright

    with runningWebApp(tmp_path, allowRoots=[tiny_sdseg_path.parent]) as (url, process, logPath), \
            sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_page(viewport=VIEWPORT, accept_downloads=True)
        page.set_default_timeout(120_000)
        page.goto(url)
        page.wait_for_selector("#ds-apply")
        try:
            yield page, process, logPath
        finally:   # what the page showed last, its log dialog and the app's log, for a failure's report
            page.screenshot(path=str(tmp_path / "last.png"))
            print(f"screenshot: {tmp_path / 'last.png'}\npage log:\n" + "\n".join(state(page, "ds_log") or [])
                  + f"\napp log:\n{logPath.read_text()[-3000:]}")
            browser.close()


def applyAndWatch(page, coronalBefore: np.ndarray) -> dict:
    """Apply; while the job runs, the page shows no JSON and the finished slices appear in the
    coronal view (the preview label layer); returns what was seen."""
    clickApply(page)
    page.wait_for_function("() => window.trame.state.get('ds_running')", timeout=30_000)
    seen = {"preview": 0, "changed": 0.0, "running": True}
    deadline = time.monotonic() + JOB_TIMEOUT_MS / 1000
    while state(page, "ds_running") and time.monotonic() < deadline:
        assertNoJsonOnPage(page)
        if state(page, "ds_preview_slices") and not seen["preview"]:
            time.sleep(1.0)    # the label layer's next frame
            during = viewPixels(page, 2)
            seen["running"] = bool(state(page, "ds_running"))
            seen["preview"] = state(page, "ds_preview_slices")
            seen["changed"] = float((np.abs(during - coronalBefore).sum(axis=2) > 30).mean())
            seen["line"] = state(page, "ds_status")["line"]
        time.sleep(0.3)
    page.wait_for_function("() => !window.trame.state.get('ds_running')", timeout=JOB_TIMEOUT_MS)
    return seen


def test_segment_refine_and_save_in_a_real_browser(browserPage, tmp_path):
    page, process, logPath = browserPage
    source = ct_like_volume(size=(40, 36, 6))
    inputPath = tmp_path / "oblique-ct.nrrd"
    sitk.WriteImage(source, str(inputPath))
    assert "not a medical device" in page.locator("#ds-notice").inner_text()
    uploadVolume(page, inputPath)
    assert state(page, "ds_status")["state"] == "idle" and state(page, "ds_is_ct")
    time.sleep(2.0)
    before, coronalBefore = viewPixels(page), viewPixels(page, 2)
    assert before.std() > 5, "the slice view shows no image after loading the volume"
    assert page.locator(".ds-view-annotation").first.inner_text().split()[0] == "Axial"

    page.locator("#ds-prompts").fill("liver")
    usePlantedModel(page)
    started = time.monotonic()
    seen = applyAndWatch(page, coronalBefore)
    status = state(page, "ds_status")
    assert status["state"] == "succeeded", status
    assert seen["preview"] >= 1 and seen["running"], f"no partial result was shown while the job ran: {seen}"
    assert seen["changed"] > 0.005, f"the preview did not show in the coronal view: {seen}"
    assert re.match(r"\d+ of \d+ slices · ", seen["line"]), seen
    wall = time.monotonic() - started
    segments = state(page, "ds_segments")
    assert [s["name"] for s in segments] == ["liver"]
    voxels = segmentVoxels(page)
    # the planted model's right answer: the CT's bright blob, not the tissue around it; no warning
    blob = int((sitk.GetArrayFromImage(source) > 150).sum())
    assert 0.5 * blob < voxels < 2 * blob and not status["warnings"], (voxels, blob, status)
    assertInView(page, "#ds-message", "#ds-segments", "#ds-save", "#ds-threshold")
    assertNoJsonOnPage(page)
    page.locator("#ds-log-button").click()   # the details are one click away: the request is there
    page.wait_for_selector("#ds-log")
    assert '"method": "adzus"' in page.locator("#ds-log").inner_text()
    page.keyboard.press("Escape")
    page.wait_for_function("() => !window.trame.state.get('ds_log_open')")

    # The result tints the view towards the segment's colour (the evidence overlay starts off).
    assert not state(page, "ds_sel_overlay")
    time.sleep(2.0)
    after = viewPixels(page)
    changed = np.abs(after - before).sum(axis=2) > 30
    assert changed.mean() > 0.01, f"no overlay visible: {changed.mean():.4f} of the view changed"
    color = np.array([int(segments[0]["color"][i:i + 2], 16) for i in (1, 3, 5)], float)
    shift = (after[changed] - before[changed]).mean(axis=0)
    towards = (color - before[changed].mean(axis=0))
    assert shift @ towards > 0, f"the change {shift} does not go towards the segment colour {color}"
    print(f"\nApply to overlay: {state(page, 'ds_last_seconds')} s in the app, {wall:.1f} s in the browser")

    # The evidence on request, with its legend.
    page.locator("#ds-sel-overlay").check()
    page.wait_for_selector("#ds-legend")
    assert "Colour:" in page.locator("#ds-legend").inner_text()
    page.locator("#ds-sel-overlay").uncheck()
    page.wait_for_function("() => !window.trame.state.get('ds_sel_overlay')")
    time.sleep(1.5)

    clickModeRoundTrip(page, changed, voxels)

    # Refine beside the panel: the Segment Editor opens on the right, the panel stays.
    page.locator("#ds-edit").click()
    page.wait_for_function("() => window.trame.state.get('ds_editor_open')")
    assert page.locator("#ds-apply").is_visible()
    stroke(page, "mdi-eraser")
    erased = waitForVoxelsChange(page, voxels)
    stroke(page, "mdi-brush")
    painted = waitForVoxelsChange(page, erased)
    print(f"voxels: result {voxels}, after erase {erased}, after paint {painted}")
    assert erased <= voxels and painted > erased, (voxels, erased, painted)
    page.locator("button:has(i.mdi-undo)").first.click()
    assert waitForVoxelsChange(page, painted) == erased
    page.locator("#ds-editor-close").click()   # closing it puts the brush down
    page.wait_for_function("() => !window.trame.state.get('ds_editor_open')")

    # Save and download through the browser, under one name.
    page.locator("#ds-save").click()
    page.wait_for_function("() => window.trame.state.get('ds_download_ready')")
    assert state(page, "ds_save_name") == "oblique-ct.seg.nrrd"
    assert state(page, "ds_status")["message"] == "Saved oblique-ct.seg.nrrd; press Download to get it."
    with page.expect_download() as download:
        page.locator("#ds-download").click()
    assert download.value.suggested_filename == "oblique-ct.seg.nrrd"
    savedPath = tmp_path / "downloaded.seg.nrrd"
    download.value.save_as(savedPath)

    # A job that finds nothing (a vote threshold above any evidence): the worker's warning is on
    # the page, once, in view, and the segments stay as they were.
    segmentsBefore = state(page, "ds_segments")
    label = "Vote threshold (evidence a region needs)"
    if not page.get_by_label(label).first.is_visible():
        page.get_by_text("Advanced").first.click()
    page.get_by_label(label).first.fill("90")
    page.wait_for_function("() => window.trame.state.get('ds_p_adzus_vote_threshold') == 90")
    clickApply(page)
    page.wait_for_function("() => window.trame.state.get('ds_running')", timeout=30_000)
    page.wait_for_function("() => !window.trame.state.get('ds_running')", timeout=JOB_TIMEOUT_MS)
    status = state(page, "ds_status")
    assert len(status["warnings"]) == 1 and "empty" in page.locator("#ds-warnings").inner_text(), status
    assertInView(page, "#ds-message", "#ds-warnings")
    assertNoJsonOnPage(page)
    assert state(page, "ds_segments") == segmentsBefore
    page.get_by_label(label).first.fill("2")
    page.wait_for_function("() => window.trame.state.get('ds_p_adzus_vote_threshold') == 2")

    # Cancel mid-job (a 1000-step inversion: minutes of UNet passes): the job stops, the
    # segmentation keeps exactly the segments and voxels it had.
    page.locator("#ds-prompts").fill("spleen")
    chooseAdvanced(page, "Reach the timestep by", "DDIM inversion (deterministic)")
    page.get_by_label("Inversion steps (of 1000)").first.fill("1000")
    page.wait_for_function("() => window.trame.state.get('ds_p_adzus_inversion_steps') == 1000 && "
                           "window.trame.state.get('ds_p_adzus_latent_mode') === 'ddim_inversion' && "
                           "window.trame.state.get('ds_prompts') === 'spleen'")
    segmentsBefore = state(page, "ds_segments")
    clickApply(page)
    page.wait_for_function("() => (window.trame.state.get('ds_status').stage || '').startsWith('Inverting')",
                           timeout=JOB_TIMEOUT_MS)
    page.locator("#ds-cancel").click()
    page.wait_for_function("() => !window.trame.state.get('ds_running')", timeout=120_000)
    status = state(page, "ds_status")
    assert status["state"] == "cancelled" and "nothing was changed" in status["message"], status
    assert state(page, "ds_segments") == segmentsBefore

    # The service token stays on the server: not in the page, not in its state.
    folder = re.search(r"Private folder \(removed on exit\): (\S+)", logPath.read_text()).group(1)
    token = next(Path(folder).glob("DiffusionSeg-server-*/token")).read_text().strip()
    assert len(token) > 20
    pageState = page.evaluate("() => JSON.stringify(window.trame.state.state)")
    assert "ds_segments" in pageState
    assert token not in pageState and token not in page.content()

    saved = sitk.ReadImage(str(savedPath))
    assert saved.GetSize() == source.GetSize()
    np.testing.assert_allclose(saved.GetSpacing(), source.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(saved.GetOrigin(), source.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(saved.GetDirection(), source.GetDirection(), atol=1e-5)
    assert int(np.count_nonzero(sitk.GetArrayFromImage(saved))) == erased
    header = savedPath.read_bytes()[:4000].decode("latin-1")
    assert "Segment0_Name:=liver" in header
    startup = logPath.read_text().split("App running at")[0]
    assert "Warning" not in startup and "WARN" not in startup and "Traceback" not in startup, startup

    assert Path(folder).is_dir()
    process.send_signal(signal.SIGTERM)
    process.wait(60)
    assert not Path(folder).exists(), "the app left its private folder (patient data) behind"


@pytest.fixture(scope="module")
def tiny_sdseg_path(tmp_path_factory):
    from DiffusionSegLib.testing.models import save_tiny_sdseg

    return save_tiny_sdseg(tmp_path_factory.mktemp("tiny-sdseg") / "checkpoint")


def test_a_second_method_into_one_segmentation_and_a_new_volume(browserPage, tmp_path, tiny_sdseg_path):
    page, _, _ = browserPage
    first = tmp_path / "first-ct.nrrd"
    sitk.WriteImage(ct_like_volume(size=(36, 32, 3)), str(first))
    uploadVolume(page, first)
    page.locator("#ds-prompts").fill("liver")
    usePlantedModel(page)
    clickApply(page)
    page.wait_for_function("() => window.trame.state.get('ds_status').state === 'succeeded'", timeout=JOB_TIMEOUT_MS)
    assert state(page, "ds_sel_kind") == "votes" and page.locator("#ds-threshold").is_visible()
    adzus = {s["name"]: s["voxels"] for s in state(page, "ds_segments")}
    assert adzus.get("liver", 0) > 0

    # SDSeg into the same segmentation: ADZUS's vote threshold must not stay on screen, and
    # whatever slider there is steers the SDSeg segment only.
    page.locator("#ds-method").click(force=True)   # the select's inner field takes the click
    page.get_by_role("option", name="SDSeg").click()
    page.wait_for_function("() => !document.querySelector('.v-overlay--active')")
    page.locator("#ds-prompts").fill("lesion")
    page.locator("#ds-model").fill(str(tiny_sdseg_path))
    page.wait_for_function("(path) => window.trame.state.get('ds_method') === 'sdseg' && "
                           "window.trame.state.get('ds_model') === path", arg=str(tiny_sdseg_path))
    clickApply(page)
    page.wait_for_function("() => window.trame.state.get('ds_running')", timeout=30_000)
    page.wait_for_function("() => !window.trame.state.get('ds_running')", timeout=JOB_TIMEOUT_MS)
    assert state(page, "ds_status")["state"] in ("succeeded", "empty"), state(page, "ds_status")
    assert state(page, "ds_sel_kind") != "votes" and "The job used" not in page.locator("body").inner_text()
    print(f"SDSeg after ADZUS: {state(page, 'ds_status')['message']} slider {state(page, 'ds_sel_kind')!r}")
    if state(page, "ds_sel_kind") == "probability":
        rows = {s["name"]: s["voxels"] for s in state(page, "ds_segments")}
        for fraction in (0.05, 0.95):
            dragSliderTo(page, fraction)
            page.wait_for_function("() => !window.trame.state.get('ds_busy')")
            time.sleep(1.0)
            now = {s["name"]: s["voxels"] for s in state(page, "ds_segments")}
            assert now["liver"] == adzus["liver"], "moving SDSeg's slider changed the ADZUS segment"
        assert now != rows or "voxel(s) changed" in state(page, "ds_sel_message")
    else:   # random weights found nothing: nothing to steer, and ADZUS's slider is gone
        assert not page.locator("#ds-threshold").count()
    assertNoJsonOnPage(page)

    # Another volume: the last job's status, warnings, segments and slider are gone.
    second = tmp_path / "second-ct.nrrd"
    sitk.WriteImage(ct_like_volume(size=(30, 30, 3)), str(second))
    uploadVolume(page, second)
    status = state(page, "ds_status")
    assert status["state"] == "idle" and not status["warnings"] and not status["message"], status
    assert state(page, "ds_segments") == [] and state(page, "ds_sel_kind") == ""
    assert not page.locator("#ds-warnings").count() and not page.locator("#ds-segments").count()
    assert not state(page, "ds_log")
