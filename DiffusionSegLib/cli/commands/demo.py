"""`demo`: a plumbing check that runs offline in about a minute on a CPU.

It writes a synthetic RGB photo and an oblique CT-like volume, builds small models with RANDOM
weights (a Stable-Diffusion-shaped one for ADZUS and DiffuGTS, an SDSeg checkpoint) and runs
every method end to end through the same runner as `segment`: read, slice, normalise, model,
post-process, write on the input's grid. What it shows is that the installation works; the
segmentations themselves mean nothing, and it says so. It ends with the commands of the real
path: train SDSeg on your own labelled folder, segment, evaluate.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from ...contract.choices import DEVICES
from ...contract.errors import EXIT_BAD_REQUEST, EXIT_OK, DiffusionSegError
from ...contract.request import JobRequest

# (method, input, prompt, params): every method, on the kinds of input it is meant for
JOBS = (
    ("adzus", "cell.png", "white blood cell", {"inversion_steps": 10}),  # DDIM inversion, 3 UNet calls
    ("adzus", "ct.nrrd", "liver", {"latent_mode": "clean"}),
    ("diffugts", "ct.nrrd", "liver tumour", {"organ": "liver", "steps": 4}),
    ("sdseg", "cell.png", None, {}),
)

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
    # the tiny models need no "install accelerate" advice nor loading bars: keep the page readable
    # (read by the libraries when they are imported, inside run_demo)
    for name, value in (("TQDM_DISABLE", "1"), ("DIFFUSERS_VERBOSITY", "error"), ("TRANSFORMERS_VERBOSITY", "error")):
        os.environ.setdefault(name, value)
    def say(text: str) -> None:  # --quiet: failures only
        if not args.quiet or "FAILED" in text:
            print(text)

    say("DiffusionSeg demo: a plumbing check, not a result. The models have RANDOM weights, so the "
        "segmentations below only show that every stage runs on this machine.\n")
    began = time.monotonic()
    failures = run_demo(folder, args.device, say)
    print(f"{'' if args.quiet else chr(10)}{len(JOBS) - failures} of {len(JOBS)} jobs ran end to end in "
          f"{time.monotonic() - began:.0f} s; inputs, models and results are in {folder}.")
    say("\n" + NEXT_STEPS)
    return EXIT_OK if failures == 0 else 1


def run_demo(folder: Path, device: str, say) -> int:
    """Write inputs and models into `folder`, run every job, report each with `say`; returns the
    number of jobs that failed (each failure is reported with its message and hint)."""
    from ...jobs.runner import Runner
    from ...testing.images import write_demo_inputs
    from ...testing.models import save_tiny_sdseg, save_tiny_stable_diffusion
    from ..summary import segment_sentence

    started = time.monotonic()
    write_demo_inputs(folder)
    models = {"adzus": save_tiny_stable_diffusion(folder / "models" / "tiny-sd"),
              "sdseg": save_tiny_sdseg(folder / "models" / "tiny-sdseg")}
    models["diffugts"] = models["adzus"]
    say(f"wrote cell.png, ct.nrrd, a labelled set of disc images (labelled/) and two random-weight models "
        f"in {time.monotonic() - started:.1f} s")
    failures = 0
    runner = Runner()   # one warm runner, as `serve` and `batch` use: each model loads once
    for method, name, prompt, params in JOBS:
        output = folder / f"{Path(name).name.split('.')[0]}-{method}.nrrd"
        request = JobRequest(input=str(folder / name), output=str(output), method=method, prompt=prompt,
                             model=str(models[method]), device=device, params=dict(params))
        started = time.monotonic()
        try:
            request.validate()
            result = runner.run(request, lambda event: None)
        except DiffusionSegError as error:
            failures += 1
            say(f"{method:9s} {name:9s} FAILED: {error}")
            continue
        say(f"{method:9s} {name:9s} -> {output.name} in {time.monotonic() - started:.1f} s; "
            f"{segment_sentence(result.segments, result.output)}")
    return failures
