"""Render Resources/Screenshots/DiffusionSeg-demo.png from the `demo` command's output.

    python Resources/Screenshots/render_demo.py [DEMO_FOLDER]

Without a folder it runs the demo into a temporary one first. Each tile is one of the demo's
jobs on the planted model (a stand-in for Stable Diffusion with a known right answer, see
DiffusionSegLib/models/planted.py): the synthetic input with the result drawn over it (yellow tint
and contour) and the right answer's outline (cyan), so the picture is made by the project's own
code from synthetic data and shows the pipeline getting a known answer, not accuracy on real
images. The SDSeg job (random weights) is left out: it shows nothing.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from DiffusionSegLib.cli.commands.demo import JOBS, run_demo  # noqa: E402

HEIGHT = 240
COLOURS = np.array([[0, 0, 0], [255, 200, 0], [0, 200, 255], [255, 80, 80]], dtype=float)
TRUTH = np.array([0, 230, 255], dtype=float)


def middle_slice(image: sitk.Image) -> sitk.Image:
    return image[:, :, image.GetSize()[2] // 2] if image.GetDimension() == 3 else image


def as_rgb(image: sitk.Image) -> np.ndarray:
    """uint8 (H, W, 3): RGB as is, CT through a soft-tissue window."""
    array = sitk.GetArrayFromImage(image).astype(float)
    if image.GetNumberOfComponentsPerPixel() == 3:
        return array
    grey = np.clip((array - (40 - 200)) / 400 * 255, 0, 255)
    return np.repeat(grey[..., None], 3, axis=-1)


def overlay(image: sitk.Image, labels: sitk.Image, truth: sitk.Image | None = None) -> np.ndarray:
    base, label = as_rgb(middle_slice(image)), middle_slice(labels)
    values = sitk.GetArrayFromImage(label)
    contour = sitk.GetArrayFromImage(sitk.LabelContour(label)) > 0
    colour = COLOURS[np.clip(values, 0, len(COLOURS) - 1)]
    tinted = np.where(values[..., None] > 0, 0.7 * base + 0.3 * colour, base)
    tinted[contour] = colour[contour]
    if truth is not None:   # the right answer's outline, over the result
        outline = sitk.GetArrayFromImage(sitk.LabelContour(middle_slice(truth) > 0)) > 0
        tinted[outline] = TRUTH
    tile = sitk.GetImageFromArray(tinted.astype(np.uint8), isVector=True)
    width = round(tile.GetWidth() * HEIGHT / tile.GetHeight())
    resized = sitk.Resample(tile, (width, HEIGHT), sitk.Transform(), sitk.sitkNearestNeighbor, (0, 0),
                            (tile.GetWidth() / width, tile.GetHeight() / HEIGHT))
    return sitk.GetArrayFromImage(resized)


def render(folder: Path, output: Path) -> Path:
    tiles = []
    for method, name, _, _, model in JOBS:
        if model != "planted":
            continue
        stem = name.split(".")[0]
        result, truth = folder / f"{stem}-{method}.nrrd", folder / f"{stem}.truth.nrrd"
        tiles += [overlay(sitk.ReadImage(str(folder / name)), sitk.ReadImage(str(result)), sitk.ReadImage(str(truth))),
                  np.full((HEIGHT, 8, 3), 255, np.uint8)]
    sitk.WriteImage(sitk.GetImageFromArray(np.concatenate(tiles[:-1], axis=1), isVector=True), str(output))
    return output


if __name__ == "__main__":
    target = Path(__file__).with_name("DiffusionSeg-demo.png")
    if len(sys.argv) > 1:
        print(render(Path(sys.argv[1]), target))
    else:
        with tempfile.TemporaryDirectory() as temp:
            run_demo(Path(temp), "cpu", print)
            print(render(Path(temp), target))
