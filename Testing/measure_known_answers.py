"""The Dice figures of docs/zero-shot.md's known-answer table (not a test; run by hand, ~2 min on CPU):

    PYTHONPATH=. python Testing/measure_known_answers.py

ADZUS and DiffuGTS on the planted model at the shipped defaults, on the 96 px CT-like slices of
Testing/test_known_answers.py: a target covering a share of the image, and a lesion covering a
share of the body. Prints each case's Dice against the planted answer and any warning.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).parent))

from planted_cases import CT, ct_slice, dice, labels_of, truth_of, write  # noqa: E402

from DiffusionSegLib.contract.request import JobRequest, PipelineOptions  # noqa: E402
from DiffusionSegLib.jobs.runner import Runner  # noqa: E402

SIDE = 96
CASES = [("adzus", "lesion", "of the image", None, share) for share in (0.01, 0.05, 0.2, 0.5, 0.9)] + \
        [("adzus", "lesion", "of the body", 0.6, share) for share in (0.02, 0.5)] + \
        [("diffugts", "liver tumour", "of the body", 0.6, share) for share in (0.005, 0.02, 0.2, 0.5)]


def main() -> None:
    runner, folder = Runner(), Path(tempfile.mkdtemp())
    for method, prompt, what, body, share in CASES:
        path = write(sitk.GetImageFromArray(ct_slice(SIDE, body, share)[None].astype(np.float32)), folder / "in.nrrd")
        events: list[dict] = []
        runner.run(JobRequest(input=str(path), output=str(folder / "out.nrrd"), method=method, prompt=prompt,
                              model="planted", device="cpu", overwrite=True, pipeline=PipelineOptions(intensity=CT)),
                   events.append)
        warnings = [e["message"] for e in events if e["event"] == "warning"]
        score = dice(labels_of(folder / "out.nrrd"), truth_of(path, CT))
        print(f"{method:9s} target on {share:6.1%} {what}: Dice {score:.3f}" + (f"  warning: {warnings}" if warnings else ""),
              flush=True)


if __name__ == "__main__":
    main()
