"""Measurements quoted in docs/evidence.md (not a test; run by hand, takes minutes):

    PYTHONPATH=. python Testing/measure_evidence.py reselect      # reselect on 512 x 512 x 200
    PYTHONPATH=. python Testing/measure_evidence.py bundle FOLDER  # 512 x 512 x 300 CT, with and without --evidence

`bundle` runs each job in its own process (peak RSS per job) with a model-free method that
returns ADZUS-shaped outputs (proposals, scores, evidence), so the model's memory is not counted.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

TESTING = Path(__file__).resolve().parent


def drifting_proposals(depth: int, side: int = 512, count: int = 24, seed: int = 0) -> np.ndarray:
    """Voronoi proposals whose centres drift slowly through the stack, like DiffSeg segments."""
    rng = np.random.default_rng(seed)
    centres, drift = rng.uniform(0, side, (count, 2)), rng.normal(0, 0.6, (count, 2))
    yy, xx = np.mgrid[:side, :side]
    out = np.zeros((depth, side, side), np.uint16)
    for k in range(depth):
        c = centres + k * drift
        out[k] = ((yy[None] - c[:, 0, None, None]) ** 2 + (xx[None] - c[:, 1, None, None]) ** 2).argmin(0) + 1
    return out


def measure_reselect() -> None:
    from DiffusionSegLib.decision.reselection import (
        SelectionBundle,
        reselect_labels,
        scores_document,
        volume_proposals,
    )
    from DiffusionSegLib.decision.selection import (
        SelectionParams,
        SliceScores,
        proposal_table,
    )
    from DiffusionSegLib.imaging.postprocess import match_labels_across_slices

    local = drifting_proposals(200)
    valid = np.ones(local.shape[1:], bool)
    start = time.perf_counter()
    matched = match_labels_across_slices(local, 0)
    print(f"match_labels_across_slices (worker side): {time.perf_counter() - start:.2f} s")
    rng = np.random.default_rng(1)
    for case in ("organ", "scattered", "dense"):
        tables = {}
        for k in range(local.shape[0]):
            # background contrast ~1: 15 % spread (organ) or 50 % (scattered false candidates)
            level = rng.gamma(44.0, 0.01 / 44, 25) if case == "organ" else rng.gamma(4.0, 0.0025, 25)
            if case == "dense":
                level[1:11] *= 3.0
            elif 60 <= k < 140:
                level[[3, 7]] *= 3.0
            tables[k] = SliceScores(proposal_table(local[k], level[local[k]], valid), reference=0.01)
        proposals, renamed = volume_proposals(local, matched, 0, tables)
        document = scores_document(renamed, SelectionParams("prompt", 1.5, 2.0), 0, "adzus", True, False)
        bundle = SelectionBundle.from_document(proposals, document)
        wall, cpu = time.perf_counter(), time.process_time()
        graph = bundle.graph()  # once per bundle
        print(f"{case}: proposal graph ({graph.count} pieces, {len(graph.edges26)} contacts): "
              f"wall {time.perf_counter() - wall:.2f} s, CPU {time.process_time() - cpu:.2f} s")
        for vote in (2.5, 1.5):
            wall, cpu = time.perf_counter(), time.process_time()
            labels = reselect_labels(bundle, vote)
            print(f"{case}: vote {vote}: wall {time.perf_counter() - wall:.2f} s, "
                  f"CPU {time.process_time() - cpu:.2f} s, {labels.mean():.1%} foreground")
        wall = time.perf_counter()
        labels = reselect_labels(bundle, 1.5, include={3}, exclude={7})
        print(f"{case}: vote 1.5 with include/exclude: wall {time.perf_counter() - wall:.2f} s")


def one_job(folder: Path, evidence: bool) -> None:
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(TESTING))
    from evidence_methods import GreyProposals

    import DiffusionSegLib.methods as registry
    from DiffusionSegLib.contract.request import JobRequest
    from DiffusionSegLib.jobs.job import run_job

    registry._REGISTRY = {**registry.available_methods(), "grey-proposals": GreyProposals}
    events: list[dict] = []
    start = time.time()
    run_job(JobRequest.from_dict({"input": str(folder / "ct.nrrd"), "output": str(folder / f"seg{int(evidence)}.nrrd"),
                                  "method": "grey-proposals", "device": "cpu", "evidence": evidence, "overwrite": True,
                                  "params": {"size": 64}, "pipeline": {"batch_size": 16}}), events.append)
    print(json.dumps({"evidence": evidence, "peak_rss_MiB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                      "seconds": round(time.time() - start, 1),
                      "bytes": {k: os.path.getsize(v) for k, v in events[-1]["outputs"].items()}}))


def measure_bundle(folder: Path) -> None:
    import SimpleITK as sitk

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    k, j, i = np.ogrid[:300, :512, :512]
    body = ((i - 256) / 200.0) ** 2 + ((j - 256) / 160.0) ** 2 < 1
    organ = ((i - 200) / 70.0) ** 2 + ((j - 240) / 60.0) ** 2 + ((k - 150) / 80.0) ** 2 < 1
    hu = np.where(body, 40.0, -1000.0) + 60.0 * organ + rng.normal(0, 12, (300, 512, 512))
    image = sitk.GetImageFromArray(hu.astype(np.int16))
    image.SetSpacing((0.7, 0.7, 1.0))
    sitk.WriteImage(image, str(folder / "ct.nrrd"), True)
    for evidence in (False, True):
        subprocess.run([sys.executable, __file__, "job", str(folder), str(int(evidence))], check=True)


if __name__ == "__main__":
    if sys.argv[1] == "reselect":
        measure_reselect()
    elif sys.argv[1] == "bundle":
        measure_bundle(Path(sys.argv[2]))
    else:
        one_job(Path(sys.argv[2]), sys.argv[3] == "1")
