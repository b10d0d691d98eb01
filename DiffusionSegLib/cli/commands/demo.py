"""`demo`: every method end to end, offline, in about a minute on a CPU, with known answers.

It writes a fluorescence-microscopy-like photo and an oblique, anisotropic CT-like volume with a
bright lesion, and runs every method through the same runner as `segment`: read, slice,
normalise, model, decide, post-process, write on the input's grid.

ADZUS and DiffuGTS run on the planted model (`--model planted`, models/planted.py), a stand-in
for Stable Diffusion whose attention is planted from the image so that the right answer is
known: the pixels at 0.75 or more of the normalised intensity. The demo writes that truth next
to each input (`<name>.truth.nrrd`) and prints each result's Dice against it, so a newcomer
sees the real pipeline get a right answer at the shipped defaults. SDSeg runs on a random-weight
checkpoint: a plumbing check (train it on your own labelled images for a result). It ends with
the commands of the real path.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from ...contract.choices import DEVICES
from ...contract.errors import EXIT_BAD_REQUEST, EXIT_OK, DiffusionSegError
from ...contract.request import JobRequest

# (method, input, prompt, params, model): each method on the kinds of input it is meant for,
# at its shipped defaults; "planted" is the known-answer stand-in for Stable Diffusion
JOBS = (
    ("adzus", "cell.png", "cell", {}, "planted"),
    ("adzus", "ct.nrrd", "lesion", {}, "planted"),
    ("diffugts", "ct.nrrd", "liver tumour", {}, "planted"),
    ("sdseg", "cell.png", None, {}, "tiny-sdseg"),
)
TRUTH = "pixels at 0.75 or more of the normalised intensity"

NEXT_STEPS = """\
The real path, with your own labelled images (a folder of images and a folder of masks with
the same file names; volumes with label volumes work too; to try it first, use the demo's
labelled/train and labelled/test folders):
  python -m DiffusionSegLib train sdseg --images IMAGES/ --masks MASKS/ --mask-map '>0' \\
      --output my-sdseg --max-minutes 10
  python -m DiffusionSegLib segment --method sdseg --model my-sdseg --input IMAGE --output seg.nrrd
  python -m DiffusionSegLib evaluate --method sdseg --model my-sdseg --images TEST_IMAGES/ \\
      --masks TEST_MASKS/ --mask-map '>0' --output my-eval
Zero-shot methods (adzus, diffugts) need Stable Diffusion weights (about 4 GB, downloaded once
from the Hugging Face hub; see docs/install.md for offline machines)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", default="diffusionseg-demo",
                        help="folder for the synthetic inputs, models and results (new or empty)")
    parser.add_argument("--device", choices=DEVICES, default="auto", help="where to run (auto: CUDA when present)")
    parser.add_argument("--overwrite", action="store_true", help="reuse a non-empty --output folder")
    parser.add_argument("--quiet", action="store_true",
                        help="print only failed jobs and the closing count (exit 0 when every job ran)")


def main(args: argparse.Namespace) -> int:
    folder = Path(args.output).expanduser()
    if folder.exists() and any(folder.iterdir()) and not args.overwrite:
        print(f"{folder} is not empty; choose another --output or add --overwrite.")
        return EXIT_BAD_REQUEST
    # the small models need no "install accelerate" advice nor loading bars: keep the page readable
    # (read by the libraries when they are imported, inside run_demo)
    for name, value in (("TQDM_DISABLE", "1"), ("DIFFUSERS_VERBOSITY", "error"), ("TRANSFORMERS_VERBOSITY", "error")):
        os.environ.setdefault(name, value)
    def say(text: str) -> None:  # --quiet: failures only
        if not args.quiet or "FAILED" in text:
            print(text)

    say("DiffusionSeg demo. ADZUS and DiffuGTS run on the PLANTED model, a stand-in for Stable Diffusion "
        f"whose attention is planted from the image, so the right answer is known ({TRUTH}); each result "
        "is compared with it. SDSeg runs on a checkpoint with RANDOM weights: it only shows the stages run.\n")
    began = time.monotonic()
    failures = run_demo(folder, args.device, say)
    print(f"{'' if args.quiet else chr(10)}{len(JOBS) - failures} of {len(JOBS)} jobs ran end to end in "
          f"{time.monotonic() - began:.0f} s; inputs, truths, models and results are in {folder}.")
    say("\n" + NEXT_STEPS)
    return EXIT_OK if failures == 0 else 1


def run_demo(folder: Path, device: str, say) -> int:
    """Write inputs, truths and the SDSeg checkpoint into `folder`, run every job, report each with
    `say`; returns the number of jobs that failed (each with its message and hint)."""
    from ...jobs.runner import Runner
    from ...testing.images import write_demo_inputs
    from ...testing.models import save_tiny_sdseg
    from ..summary import segment_sentence

    started = time.monotonic()
    inputs = write_demo_inputs(folder)
    truths = {path.name: write_truth(path) for path in inputs}
    models = {"planted": "planted", "tiny-sdseg": str(save_tiny_sdseg(folder / "models" / "tiny-sdseg"))}
    say(f"wrote cell.png, ct.nrrd, their truths ({', '.join(p.name for p in truths.values())}), a labelled set of "
        f"disc images (labelled/) and a random-weight SDSeg checkpoint in {time.monotonic() - started:.1f} s")
    failures = 0
    runner = Runner()   # one warm runner, as `serve` and `batch` use: each model loads once
    for method, name, prompt, params, model in JOBS:
        output = folder / f"{Path(name).name.split('.')[0]}-{method}.nrrd"
        request = JobRequest(input=str(folder / name), output=str(output), method=method, prompt=prompt,
                             model=models[model], device=device, params=dict(params))
        started = time.monotonic()
        try:
            request.validate()
            result = runner.run(request, lambda event: None)
        except DiffusionSegError as error:
            failures += 1
            say(f"{method:9s} {name:9s} FAILED: {error}")
            continue
        line = (f"{method:9s} {name:9s} -> {output.name} in {time.monotonic() - started:.1f} s; "
                f"{segment_sentence(result.segments, result.output)}")
        if model == "planted":
            line += f" Dice {dice_against(result.output, truths[name]):.3f} against {truths[name].name}."
        say(line)
    return failures


def write_truth(image: Path) -> Path:
    """`<name>.truth.nrrd` beside `image`: the planted model's right answer on the input's grid."""
    from ...io.images import read_volume, write_labelmap
    from ...models.planted import planted_truth

    volume = read_volume(image)
    path = image.with_name(image.name.split(".")[0] + ".truth.nrrd")
    return write_labelmap(planted_truth(volume.array, volume.is_rgb).astype("uint8"), volume.reference, path)


def dice_against(labelmap: str | Path, truth: Path) -> float:
    import SimpleITK as sitk

    from ...tools.metrics import dice

    read = lambda path: sitk.GetArrayFromImage(sitk.ReadImage(str(path))) > 0  # noqa: E731
    return dice(read(labelmap), read(truth))
