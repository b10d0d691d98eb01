"""Make the pictures of the user interface from one real job, honestly labelled:

    python Resources/Screenshots/make_screenshots.py --sdseg-demo
    python Resources/Screenshots/make_screenshots.py --method adzus --model planted --prompt lesion \
        --input ct.nrrd --label "ADZUS on the planted test model (a known right answer)"

- docs/images/web-app.png: the browser app (headless Chromium, 1366×768) after the job, started
  as a user starts it, with the volume uploaded and the job run through its local service.
- Resources/Screenshots/DiffusionSeg-panel.png (the Extensions Manager screenshot): the Slicer
  panel after the same job — its .ui drawn by Qt 6 and filled in by the panel's own code with the
  real module logic and worker (panel_picture.py; Slicer itself cannot run here) — beside Slicer's
  axial slice view of the result as slicer-core renders it in the browser app, with a caption
  saying what the picture shows.

`--sdseg-demo` makes a labelled set of synthetic disc images, trains SDSeg on it for a few CPU
minutes (`train sdseg`, as the README's quick start) and segments a held-out image: a trained
result on synthetic data. Needs Chromium, Playwright and PySide6 (`pip install -e ".[screenshots]"`).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "Testing"), str(ROOT / "DiffusionSeg"), str(Path(__file__).parent)]

WEB_PICTURE = ROOT / "docs" / "images" / "web-app.png"
PANEL_PICTURE = ROOT / "Resources" / "Screenshots" / "DiffusionSeg-panel.png"


def sdsegDemo(folder: Path, models: Path, minutes: float) -> dict:
    """Synthetic labelled discs, SDSeg trained on them (into `models`, a folder people would keep
    models in: its path shows in the pictures), a held-out image to segment and its truth."""
    import shutil

    from DiffusionSegLib.testing.images import write_png_pairs

    write_png_pairs(folder / "train", 24, size=64, seed=0)
    images, masks = write_png_pairs(folder / "test", 4, size=64, seed=1)
    model = models / "sdseg-discs"
    if not (model / "config.json").is_file():
        subprocess.run([sys.executable, "-m", "DiffusionSegLib", "train", "sdseg", "--images",
                        str(folder / "train/images"), "--masks", str(folder / "train/masks"), "--mask-map", ">0",
                        "--output", str(model), "--max-minutes", str(minutes), "--quiet"],
                       check=True, stdout=subprocess.DEVNULL)
    image = folder / "held-out-disc.png"
    shutil.copy(images / "000.png", image)
    return {"method": "sdseg", "model": str(model), "prompt": "disc", "input": image, "truth": masks / "000.png",
            "label": f"SDSeg trained for {minutes:g} CPU minutes on 24 synthetic disc images (train sdseg), "
                     "on a held-out one"}


def webPicture(job: dict, folder: Path) -> Path:
    """The app after the job; returns the axial view's own picture (for the panel composite)."""
    from playwright.sync_api import sync_playwright
    from web_page import CHROMIUM, FLAGS, VIEWPORT, clickApply, runningWebApp, state, uploadVolume

    view = folder / "axial-view.png"
    with runningWebApp(folder) as (url, _process, _log), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_page(viewport=VIEWPORT)
        page.set_default_timeout(600_000)
        page.goto(url)
        page.wait_for_selector("#ds-apply")
        uploadVolume(page, job["input"])
        page.locator("#ds-method").click(force=True)
        page.get_by_role("option", name={"sdseg": "SDSeg", "adzus": "ADZUS", "diffugts": "DiffuGTS"}[job["method"]]).click()
        page.wait_for_function("() => !document.querySelector('.v-overlay--active')")
        page.locator("#ds-prompts").fill(job["prompt"])
        page.locator("#ds-model").fill(job["model"])
        page.wait_for_function(f"() => window.trame.state.get('ds_method') === {job['method']!r} && "
                               "window.trame.state.get('ds_model')")
        clickApply(page)
        page.wait_for_function("() => window.trame.state.get('ds_running')")
        page.wait_for_function("() => !window.trame.state.get('ds_running')")
        status = state(page, "ds_status")
        if status["state"] != "succeeded":
            raise SystemExit(f"the job did not succeed: {status}")
        time.sleep(3.0)   # the views' last frames
        page.screenshot(path=str(WEB_PICTURE))
        page.locator("img.image-display-area").first.screenshot(path=str(view))
        browser.close()
    return view


def panelStandIn(job: dict, folder: Path):
    """The panel's code on the stand-in widgets with the real logic and worker; its ui after the job."""
    import types

    import qt_standin
    import slicer
    import SimpleITK as sitk
    from slicer_panel_standin import RecordingMessages, RecordingSliceViewer, StandInParameterNode, buildUi

    for name, module in qt_standin.modules().items():
        sys.modules[name] = module
    slicer.i18n = sys.modules["slicer.i18n"]
    from DiffusionSegSlicerLib.FineTuneWidget import FineTunePanel
    from DiffusionSegSlicerLib.Logic import DiffusionSegLogic
    from DiffusionSegSlicerLib.SelectionWidget import SelectionPanel
    from DiffusionSegSlicerLib.ServiceWidget import SETTINGS_KEY, ServicePanel
    from DiffusionSegSlicerLib.Widget import DiffusionSegPanel

    qt_standin.QSettings().setValue(SETTINGS_KEY + "/mode", "off")
    scene = slicer.vtkMRMLScene()
    slicer.mrmlScene = scene
    image = sitk.ReadImage(str(job["input"]))
    source = folder / (Path(job["input"]).stem + ".nrrd")
    sitk.WriteImage(image, str(source))
    volume = slicer.vtkMRMLVectorVolumeNode() if image.GetNumberOfComponentsPerPixel() == 3 \
        else slicer.vtkMRMLScalarVolumeNode()   # as Slicer loads a colour picture, or a grey volume
    volume.SetName(Path(job["input"]).name)
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(source))
    storage.ReadData(volume)
    scene.AddNode(volume)
    volume.CreateDefaultDisplayNodes()
    (folder / "slicer-temp").mkdir(exist_ok=True)
    logic = DiffusionSegLogic(scene, temporaryRoot=str(folder / "slicer-temp"))
    ui, messages, views = buildUi(), RecordingMessages(), RecordingSliceViewer()
    panel = DiffusionSegPanel(ui, logic, types.SimpleNamespace(ensureDependencies=lambda launcher: None),
                              messages, views, fineTune=FineTunePanel(ui, logic, messages),
                              service=ServicePanel(ui, logic), selection=SelectionPanel(ui, views, messages))
    node = StandInParameterNode()
    panel.setParameterNode(node)
    ui.inputVolumeSelector.setCurrentNode(volume)
    ui.methodComboBox.setCurrentIndex(ui.methodComboBox.findData(job["method"]))
    ui.promptTextEdit.plainText = job["prompt"]
    ui.modelPathLineEdit.currentPath = job["model"]
    ui.applyButton.click()
    while panel._pollTimer.isActive():
        panel._pollTimer.fire()
        time.sleep(0.1)
    if panel.job.state != panel.job.SUCCEEDED:
        raise SystemExit(f"the panel's job failed: {panel.job.error}")
    ui.outputsCollapsibleButton.collapsed = True   # what a reader looks at: inputs, result, status
    if job.get("truth"):
        job["dice"] = dice(panel.job, volume, job["truth"])
    return ui


def dice(job, volume, truthPath) -> float:
    """Dice of the job's segment against the truth mask, on the input's grid."""
    import numpy as np
    import SimpleITK as sitk
    import slicer
    import vtk
    from DiffusionSegSlicerLib.EvidenceImport import volumeArray

    labelmap = slicer.vtkMRMLLabelMapVolumeNode()
    job.scene.AddNode(labelmap)
    ids = vtk.vtkStringArray()
    ids.InsertNextValue(job.segmentIds[0])
    slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
        job.segmentationNode, ids, labelmap, volume, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY)
    found = volumeArray(labelmap)[0] > 0
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(truthPath))) > 0
    return float(2 * np.count_nonzero(found & truth) / (np.count_nonzero(found) + np.count_nonzero(truth)))


def composite(panel: Path, view: Path, label: str, out: Path) -> None:
    from PIL import Image, ImageDraw, ImageFont

    left, right = Image.open(panel).convert("RGB"), Image.open(view).convert("RGB")
    height = max(left.height, 480)
    right = right.resize((round(right.width * height / right.height), height))
    caption = 48
    canvas = Image.new("RGB", (left.width + right.width, height + caption), (32, 32, 32))
    canvas.paste(left, (0, 0))
    canvas.paste(right, (left.width, 0))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=15)
    draw.text((10, height + 6), label, fill=(255, 213, 79), font=font)
    draw.text((10, height + 26), "Left: the DiffusionSeg panel (its .ui in Qt 6, filled in by its code). Right: Slicer's "
              "axial view of the result (slicer-core).", fill=(220, 220, 220), font=font)
    canvas.convert("P", palette=Image.Palette.ADAPTIVE, colors=256).save(out, optimize=True)   # small PNG


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sdseg-demo", action="store_true", help="train SDSeg on synthetic discs and use it")
    parser.add_argument("--minutes", type=float, default=4.0, help="SDSeg training budget with --sdseg-demo")
    parser.add_argument("--models-dir", type=Path, default=Path.home() / "DiffusionSeg-models",
                        help="where --sdseg-demo keeps its trained model (reused when it is there)")
    for name in ("method", "model", "prompt", "input", "label"):
        parser.add_argument(f"--{name}")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="diffusionseg-screenshots-") as temporary:
        folder = Path(temporary)
        if args.sdseg_demo:
            job = sdsegDemo(folder / "discs", args.models_dir, args.minutes)
        else:
            job = {k: getattr(args, k) for k in ("method", "model", "prompt", "input", "label")}
            if not all(job.values()):
                parser.error("give --sdseg-demo, or all of --method --model --prompt --input --label")
        view = webPicture(job, folder)
        panel = folder / "panel.png"
        import panel_picture

        panel_picture.render(panelStandIn(job, folder), panel)
        label = job["label"] + (f"; Dice {job['dice']:.2f} against its truth" if "dice" in job else "")
        composite(panel, view, label, PANEL_PICTURE)
    print(f"wrote {WEB_PICTURE.relative_to(ROOT)} and {PANEL_PICTURE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
