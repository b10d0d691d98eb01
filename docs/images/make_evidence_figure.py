"""Make docs/images/evidence-sdseg.png: SDSeg's evidence (mean foreground probability over x_T
seeds) and uncertainty (their standard deviation), as written by `segment --evidence`.

    python docs/images/make_evidence_figure.py --model CHECKPOINT --images IMAGES --masks MASKS \
        --output docs/images/evidence-sdseg.png [--seeds 8] [--count 3]

The maps come from the project's own command line (one `segment` run per image, in a
subprocess, exactly as a user runs it); this script only draws them (matplotlib, a docs-only
dependency).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk


def segment(image: Path, model: str, seeds: int, folder: Path) -> dict[str, np.ndarray]:
    output = folder / f"{image.stem}.nrrd"
    command = [sys.executable, "-m", "DiffusionSegLib", "segment", "--input", str(image), "--output", str(output),
               "--method", "sdseg", "--model", model, "--device", "cpu", "--param", f"seeds={seeds}", "--evidence"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"segment failed for {image}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    read = lambda path: sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.float32)  # noqa: E731
    return {"image": read(image), "labels": read(output), "evidence": read(folder / f"{image.stem}.evidence.nrrd"),
            "uncertainty": read(folder / f"{image.stem}.uncertainty.nrrd")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--images", required=True, type=Path)
    parser.add_argument("--masks", required=True, type=Path)
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--count", type=int, default=3)
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = sorted(args.images.glob("*.png"))[:args.count]
    fig, axes = plt.subplots(len(images), 3, figsize=(7.2, 2.35 * len(images)), squeeze=False)
    with tempfile.TemporaryDirectory() as folder:
        for row, path in zip(axes, images):
            maps = segment(path, args.model, args.seeds, Path(folder))
            truth = sitk.GetArrayFromImage(sitk.ReadImage(str(args.masks / path.name))) > 0
            rgb = maps["image"] / 255.0
            row[0].imshow(rgb)
            row[0].contour(truth, levels=[0.5], colors="white", linewidths=1.0, linestyles="dashed")
            row[1].imshow(rgb)
            evidence = np.ma.masked_less(maps["evidence"], 0.02)
            shown = row[1].imshow(evidence, cmap="inferno", vmin=0, vmax=1, alpha=0.6)
            row[1].contour(maps["evidence"], levels=[0.5], colors="cyan", linewidths=1.0)
            fig.colorbar(shown, ax=row[1], fraction=0.046, pad=0.03)
            spread = row[2].imshow(maps["uncertainty"], cmap="viridis", vmin=0)
            fig.colorbar(spread, ax=row[2], fraction=0.046, pad=0.03)
            for ax in row:
                ax.set_xticks([])
                ax.set_yticks([])
    axes[0][0].set_title("image (dashed: truth)", fontsize=9)
    axes[0][1].set_title(f"evidence: mean p over {args.seeds} seeds\n(cyan: p = 0.5, the mask)", fontsize=9)
    axes[0][2].set_title("uncertainty: std over seeds", fontsize=9)
    fig.tight_layout()
    fig.savefig(args.output, dpi=80)
    from PIL import Image  # a 256-colour palette keeps the picture small for the docs

    Image.open(args.output).convert("RGB").quantize(256).save(args.output, optimize=True)
    print(f"wrote {args.output} ({args.output.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
