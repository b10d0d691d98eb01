"""Driving the web app in headless Chromium (Playwright) for Testing/test_web_browser.py: start the
app, read the page state, look at view pixels, pick options, stroke with Segment Editor tools,
and the checks every scenario shares (no JSON on the page, results and messages in view)."""

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
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("DIFFUSIONSEG_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1366, "height": 768}   # a laptop: results and messages must be in view
JOB_TIMEOUT_MS = 900_000   # a tiny model, but a loaded 2-core CI machine


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def runningWebApp(tmp_path, allowRoots=()):
    """`python -m DiffusionSegWeb` on a free port from a folder outside the source tree:
    (url, process, log path); stopped with SIGTERM at the end. `allowRoots`: server folders the
    page may open (and name models in)."""
    port = freePort()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               PYTHONUNBUFFERED="1")
    logPath = tmp_path / "app.log"
    with open(logPath, "w") as logFile:
        roots = [argument for root in allowRoots for argument in ("--allow-root", str(root))]
        process = subprocess.Popen([sys.executable, "-m", "DiffusionSegWeb", "--port", str(port), *roots],
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
    try:
        yield url, process, logPath
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


def viewPixels(page, nth: int = 0) -> np.ndarray:
    """A view as an RGB array (from a screenshot of its <img>); 0 is the red (axial) view."""
    from PIL import Image

    view = page.locator("img.image-display-area").nth(nth)
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


def stroke(page, tool_icon: str):
    """Pick a Segment Editor effect by its icon (in the editor's drawer) and drag across the middle
    of the red view."""
    page.locator(f"#ds-editor button:has(i.{tool_icon})").first.click()
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




def uploadVolume(page, path) -> None:
    page.set_input_files("#ds-upload", str(path))
    page.wait_for_function(f"() => window.trame.state.get('ds_volume_name') === {Path(path).name!r}")
    page.wait_for_function("() => !window.trame.state.get('ds_busy')")


def stateSent(page) -> None:
    """Wait until the page has sent every changed value to the server. trame's client holds
    changes back while a request is pending (`flush` skips while the client is busy) but sends a
    click's trigger at once, so an Apply clicked right after typing could reach the server first
    and start the job with the old model or prompt."""
    page.wait_for_function("() => window.trame.state.dirtyKeys.size === 0")


def clickApply(page) -> None:
    stateSent(page)
    page.locator("#ds-apply").click()


def usePlantedModel(page) -> None:
    """ADZUS on the planted model (a stand-in for Stable Diffusion with a known answer: the bright
    structure) at the shipped defaults: the job finds the CT's bright blob."""
    page.locator("#ds-model").fill("planted")
    page.wait_for_function("() => window.trame.state.get('ds_model') === 'planted'")


JSON_IN_TEXT = re.compile(r'[{\[]\s*"[^"]+"\s*:')


def assertNoJsonOnPage(page) -> None:
    """What a person reads holds no JSON (the request, events): those belong in the log dialog."""
    text = page.locator("body").inner_text()
    assert not JSON_IN_TEXT.search(text), JSON_IN_TEXT.search(text).group(0)
    assert '"input"' not in text and "request {" not in text


def assertInView(page, *selectors: str) -> None:
    """Each element is fully inside the viewport, without scrolling anything."""
    for selector in selectors:
        box = page.locator(selector).first.bounding_box()
        assert box is not None, f"{selector} is not shown"
        assert box["y"] >= 0 and box["y"] + box["height"] <= VIEWPORT["height"] + 0.5, (selector, box)
        assert box["x"] >= 0 and box["x"] + box["width"] <= VIEWPORT["width"] + 0.5, (selector, box)


def dragSliderTo(page, fraction: float) -> None:
    """Drag the result's threshold slider to a fraction of its track (the page re-selects on release)."""
    track = page.locator("#ds-threshold .v-slider-track").first.bounding_box()
    thumb = page.locator("#ds-threshold .v-slider-thumb").first.bounding_box()
    page.mouse.move(thumb["x"] + thumb["width"] / 2, thumb["y"] + thumb["height"] / 2)
    page.mouse.down()
    page.mouse.move(track["x"] + fraction * track["width"], track["y"] + track["height"] / 2, steps=8)
    page.mouse.up()
