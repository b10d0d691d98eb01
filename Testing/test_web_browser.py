"""The web app end to end in a real browser (headless Chromium driven by Playwright).

One scenario, as a radiologist would click it: start `python -m DiffusionSegWeb` on a free port
(it starts its own local `serve`), upload an oblique synthetic CT volume, choose ADZUS with a
tiny Stable Diffusion model, Apply, wait for the result; the segment must exist in the page state
and tint the slice view (pixel check on screenshots); in "click to add or remove a region" mode a
click on the segment must toggle the region under it (a second click and Undo restore it; with
the mode off the click changes nothing); erase and paint strokes must change its voxel count and
undo must restore it; the saved `.seg.nrrd`, downloaded through the browser, must
lie on the input's grid with the edited voxels; Cancel mid-job must leave the segmentation as it
was; the service token must not reach the page; on exit the app's private folder is gone.

Skipped only when Chromium is absent (CI installs Debian's `chromium`).
DIFFUSIONSEG_WEB_SCREENSHOT=path saves the result screenshot (docs/images/web-app.png).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from Testing.helpers import ct_like_volume

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("DIFFUSIONSEG_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
JOB_TIMEOUT_MS = 900_000   # a tiny model, but a loaded 2-core CI machine


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def webApp(tmp_path, tiny_sd_path):
    port = freePort()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               PYTHONUNBUFFERED="1")
    logPath = tmp_path / "app.log"
    with open(logPath, "w") as logFile:
        # the page may name models only inside the folders it may open: the tiny model's
        process = subprocess.Popen([sys.executable, "-m", "DiffusionSegWeb", "--port", str(port),
                                    "--allow-root", str(tiny_sd_path.parent)],
                                   cwd=tmp_path, env=env, stdout=logFile, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while True:
        try:
            urllib.request.urlopen(url, timeout=5).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"The web app did not serve {url}:\n{logPath.read_text()[-3000:]}")
            time.sleep(0.5)
    yield url, process, logPath
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def viewPixels(page) -> np.ndarray:
    """The red slice view as an RGB array (from a screenshot of its <img>)."""
    from PIL import Image

    view = page.locator("img.image-display-area").first
    return np.asarray(Image.open(io.BytesIO(view.screenshot())).convert("RGB"), dtype=np.float64)


def state(page, key):
    return page.evaluate(f"() => window.trame.state.get('{key}')")


def segmentVoxels(page) -> int:
    segments = state(page, "ds_segments")
    assert segments, "no segment in the page state"
    return int(segments[0]["voxels"])


def waitForVoxelsChange(page, before: int, timeout_s: float = 60.0) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        now = segmentVoxels(page)
        if now != before:
            return now
        time.sleep(0.3)
    return segmentVoxels(page)


def stroke(page, tool_icon: str, nth: int = 0):
    """Pick a Segment Editor effect by its icon and drag across the middle of the red view."""
    page.locator(f"button:has(i.{tool_icon})").nth(nth).click()
    time.sleep(1.0)
    box = page.locator("img.image-display-area").first.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx - 60, cy)
    page.mouse.down()
    for step in range(1, 25):
        page.mouse.move(cx - 60 + 5 * step, cy + (step % 3))
        time.sleep(0.05)
    page.mouse.up()


def chooseAdvanced(page, label: str, option: str):
    """Pick `option` in the select `label` of the (unfolded) Advanced panel."""
    field = page.get_by_label(label).first
    if not field.is_visible():
        page.get_by_text("Advanced").first.click()
        field.wait_for(state="visible")
    field.click(force=True)
    page.get_by_role("option", name=option).click()
    # A click while the menu is still closing only closes it: wait until it has gone.
    page.wait_for_function("() => !document.querySelector('.v-overlay--active')")


def waitForState(page, key, value):
    page.wait_for_function(f"() => window.trame.state.get('{key}') === {value}")


def clickModeRoundTrip(page, tinted: np.ndarray, voxels: int):
    """With "Click to add or remove a region" on, a click on the segment in the red view removes
    (or adds) the region under it, a second click restores the count, Undo undoes each click; with
    the mode off the same click changes nothing. `tinted`: the view pixels the segment colours."""
    from scipy import ndimage

    assert state(page, "ds_sel_kind") == "votes" and not state(page, "ds_sel_click")
    depth = ndimage.distance_transform_edt(np.pad(tinted, 1))[1:-1, 1:-1]
    row, col = np.unravel_index(np.argmax(depth), depth.shape)   # deepest inside the tint
    assert depth[row, col] >= 3, "no pixel well inside the segment to click"
    box = page.locator("img.image-display-area").first.bounding_box()
    x, y = box["x"] + col * box["width"] / tinted.shape[1], box["y"] + row * box["height"] / tinted.shape[0]

    page.locator("#ds-sel-click").click()
    waitForState(page, "ds_sel_click", "true")
    page.mouse.click(x, y)
    toggled = waitForVoxelsChange(page, voxels)
    message = re.fullmatch(r"Region (\d+) (added|removed): (\d+) voxel\(s\) changed\.", state(page, "ds_sel_message"))
    assert message and toggled != voxels, (state(page, "ds_sel_message"), voxels, toggled)
    region, verb, count = message.groups()
    assert int(count) == abs(toggled - voxels) and (verb == "removed") == (toggled < voxels)
    page.mouse.click(x, y)   # the same region again: back as it was
    assert waitForVoxelsChange(page, toggled) == voxels
    other = "added" if verb == "removed" else "removed"
    assert state(page, "ds_sel_message") == f"Region {region} {other}: {count} voxel(s) changed."
    page.locator("#ds-sel-undo").click()
    assert waitForVoxelsChange(page, voxels) == toggled
    page.locator("#ds-sel-undo").click()
    assert waitForVoxelsChange(page, toggled) == voxels
    print(f"click mode: region {region} {verb}, {voxels} -> {toggled} voxels, restored, undone twice")

    page.locator("#ds-sel-click").click()
    waitForState(page, "ds_sel_click", "false")
    page.mouse.click(x, y)   # the views' own interaction now: the selection stays
    time.sleep(3.0)
    assert segmentVoxels(page) == voxels and state(page, "ds_sel_message") == "Undone."


def test_segment_refine_and_save_in_a_real_browser(webApp, tmp_path, tiny_sd_path):
    from playwright.sync_api import sync_playwright

    url, process, logPath = webApp
    source = ct_like_volume(size=(40, 36, 5))
    inputPath = tmp_path / "oblique-ct.nrrd"
    sitk.WriteImage(source, str(inputPath))

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 900}, accept_downloads=True)
        page.set_default_timeout(120_000)
        try:
            page.goto(url)
            page.wait_for_selector("#ds-apply")
            page.set_input_files("#ds-upload", str(inputPath))
            page.wait_for_function("() => window.trame.state.get('ds_volume_name')")
            assert not state(page, "ds_error"), state(page, "ds_error")
            time.sleep(2.0)
            before = viewPixels(page)
            assert before.std() > 5, "the slice view shows no image after loading the volume"

            page.locator("#ds-prompts").fill("liver")
            page.locator("#ds-model").fill(str(tiny_sd_path))
            chooseAdvanced(page, "latent mode", "clean")
            # The tiny model has random weights: its prompt evidence is weak, and ADZUS rightly says
            # "not here" at the default absolute thresholds; lower them so the job selects something.
            for label in ("Vote threshold", "Seed threshold"):
                page.get_by_label(label).first.fill("0.8")
            page.wait_for_function("() => window.trame.state.get('ds_model') && "
                                   "window.trame.state.get('ds_p_adzus_latent_mode') === 'clean' && "
                                   "window.trame.state.get('ds_p_adzus_vote_threshold') == 0.8 && "
                                   "window.trame.state.get('ds_p_adzus_seed_threshold') == 0.8")
            started = time.monotonic()
            page.locator("#ds-apply").click()
            page.wait_for_function("() => window.trame.state.get('ds_running')", timeout=30_000)
            page.wait_for_function("() => !window.trame.state.get('ds_running')", timeout=JOB_TIMEOUT_MS)
            assert not state(page, "ds_error"), f"the job failed: {state(page, 'ds_error')}"
            page.wait_for_selector("#ds-segments")
            wall = time.monotonic() - started
            segments = state(page, "ds_segments")
            assert [s["name"] for s in segments] == ["liver"]
            voxels = segmentVoxels(page)
            assert voxels > 0

            # The overlay: the view's pixels move towards the segment's colour (the evidence overlay,
            # shown by default, is hidden for this check).
            page.locator("#ds-sel-overlay").uncheck()
            page.wait_for_function("() => !window.trame.state.get('ds_sel_overlay')")
            time.sleep(2.0)
            after = viewPixels(page)
            changed = np.abs(after - before).sum(axis=2) > 30
            assert changed.mean() > 0.01, f"no overlay visible: {changed.mean():.4f} of the view changed"
            color = np.array([int(segments[0]["color"][i:i + 2], 16) for i in (1, 3, 5)], float)
            shift = (after[changed] - before[changed]).mean(axis=0)
            towards = (color - before[changed].mean(axis=0))
            assert shift @ towards > 0, f"the change {shift} does not go towards the segment colour {color}"
            screenshot = os.environ.get("DIFFUSIONSEG_WEB_SCREENSHOT")
            if screenshot:
                page.get_by_text("Advanced").first.click()   # fold it: prompts and segments in view
                time.sleep(1.5)
                page.screenshot(path=screenshot)
            print(f"\nApply to overlay: {state(page, 'ds_last_seconds')} s in the app, {wall:.1f} s in the browser")

            # Click mode: a click where the segment tints the view toggles the proposal under it.
            clickModeRoundTrip(page, changed, voxels)

            # Refine: erase then paint a stroke; undo restores each count.
            stroke(page, "mdi-eraser")
            erased = waitForVoxelsChange(page, voxels)
            stroke(page, "mdi-brush", nth=1)   # nth 0 is the tool bar's Segment Editor button
            painted = waitForVoxelsChange(page, erased)
            print(f"voxels: result {voxels}, after erase {erased}, after paint {painted}")
            assert erased <= voxels and painted > erased, (voxels, erased, painted)
            page.locator("button:has(i.mdi-undo)").first.click()
            assert waitForVoxelsChange(page, painted) == erased

            # Save and download through the browser.
            page.locator("#ds-save").click()
            page.wait_for_function("() => window.trame.state.get('ds_download_ready')")
            with page.expect_download() as download:
                page.locator("#ds-download").click()
            savedPath = tmp_path / "downloaded.seg.nrrd"
            download.value.save_as(savedPath)
            # Cancel mid-job (a 1000-step inversion: minutes of UNet passes): the job stops, the
            # segmentation keeps exactly the segments and voxels it had.
            page.locator("#ds-prompts").fill("spleen")
            chooseAdvanced(page, "latent mode", "ddim_inversion")
            page.get_by_label("inversion steps").first.fill("1000")
            page.wait_for_function("() => window.trame.state.get('ds_p_adzus_inversion_steps') == 1000 && "
                                   "window.trame.state.get('ds_p_adzus_latent_mode') === 'ddim_inversion' && "
                                   "window.trame.state.get('ds_prompts') === 'spleen'")
            segmentsBefore = state(page, "ds_segments")
            page.locator("#ds-apply").click()
            page.wait_for_function("() => (window.trame.state.get('ds_stage') || '').startsWith('inversion')",
                                   timeout=JOB_TIMEOUT_MS)
            page.locator("#ds-cancel").click()
            page.wait_for_function("() => !window.trame.state.get('ds_running')", timeout=120_000)
            assert state(page, "ds_stage") == "cancelled", (state(page, "ds_stage"), state(page, "ds_error"))
            assert state(page, "ds_segments") == segmentsBefore

            # The service token stays on the server: not in the page, not in its state.
            folder = re.search(r"Private folder \(removed on exit\): (\S+)", logPath.read_text()).group(1)
            token = next(Path(folder).glob("DiffusionSeg-server-*/token")).read_text().strip()
            assert len(token) > 20
            pageState = page.evaluate("() => JSON.stringify(window.trame.state.state)")
            assert "ds_segments" in pageState
            assert token not in pageState and token not in page.content()
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"))
            print(f"screenshot: {tmp_path / 'failure.png'}\napp log:\n{logPath.read_text()[-3000:]}")
            raise
        finally:
            browser.close()

    saved = sitk.ReadImage(str(savedPath))
    assert saved.GetSize() == source.GetSize()
    np.testing.assert_allclose(saved.GetSpacing(), source.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(saved.GetOrigin(), source.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(saved.GetDirection(), source.GetDirection(), atol=1e-5)
    assert int(np.count_nonzero(sitk.GetArrayFromImage(saved))) == erased
    header = savedPath.read_bytes()[:4000].decode("latin-1")
    assert "Segment0_Name:=liver" in header

    assert Path(folder).is_dir()
    process.send_signal(signal.SIGTERM)
    process.wait(60)
    assert not Path(folder).exists(), "the app left its private folder (patient data) behind"
