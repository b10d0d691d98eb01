"""A deterministic non-diffusion method for testing the pipeline around the models."""

from __future__ import annotations

import torch

from DiffusionSegLib.methods.base import Method, MethodInfo, Param, SliceSegmentation


class BrightThreshold(Method):
    """Label 1 where the image is brighter than a threshold (model-free, exact expectations)."""

    info = MethodInfo(name="bright-threshold", label="Threshold (test)", description="test method",
                      prompt="optional", needs_checkpoint=False, default_model=None,
                      params=(Param("threshold", "float", 0.5, "cut-off", minimum=0.0, maximum=1.0),
                              Param("size", "int", 32, "model side", minimum=8, maximum=512)))
    seen_valid: list = []

    def load(self) -> None:
        self.image_size = self.params["size"]

    def segment(self, images: torch.Tensor, valid: torch.Tensor, indices=None) -> SliceSegmentation:
        assert images.shape[-1] == self.image_size and images.min() >= 0 and images.max() <= 1
        self.seen_valid.append(valid.clone())
        self.context.check_cancelled()
        labels = (images.mean(1) > self.params["threshold"]).long()
        return SliceSegmentation(labels=labels)


class CancelsItself(BrightThreshold):
    info = MethodInfo(name="cancels-itself", label="Cancel (test)", description="cancels during a batch",
                      prompt="none", needs_checkpoint=False, default_model=None,
                      params=BrightThreshold.info.params)

    def segment(self, images, valid, indices=None):
        self.context.cancel_token.cancel()
        return super().segment(images, valid)


class PlantedEvidence(BrightThreshold):
    """Proposals = the four quadrants of the model grid; prompt evidence per pixel = brightness².

    A stand-in for a zero-shot method's attention with exactly known evidence: it returns its
    proposals and scores the way ADZUS does, so the pipeline's volume-level selection and the
    job's warning are exercised without a diffusion model."""

    info = MethodInfo(name="planted-evidence", label="Planted (test)", description="planted evidence",
                      prompt="optional", needs_checkpoint=False, default_model=None,
                      params=BrightThreshold.info.params + (
                          Param("foreground", "choice", "prompt", "mode", choices=("prompt", "border", "all")),
                          Param("vote_threshold", "float", 1.5, "vote", minimum=0.0, maximum=100.0),
                          Param("seed_threshold", "float", 2.0, "seed", minimum=0.0, maximum=100.0)))

    def segment(self, images, valid, indices=None):
        import numpy as np

        from DiffusionSegLib.decision.selection import (
            SelectionParams,
            SliceScores,
            background_level,
            proposal_table,
            select_labels,
        )

        size = images.shape[-1]
        half = size // 2
        quadrants = torch.ones(size, size, dtype=torch.int64)
        quadrants[:half, half:], quadrants[half:, :half], quadrants[half:, half:] = 2, 3, 4
        params = SelectionParams.from_dict(self.params)
        labels, maps, tables = [], [], []
        for image, mask in zip(images, valid):
            proposals = (quadrants * mask).numpy()
            evidence = (image.mean(0) ** 2).numpy()
            m = mask.numpy()
            scores = proposal_table(proposals, evidence, m, statistic="median")
            table = SliceScores(scores, reference=background_level(scores))
            tables.append(table)
            maps.append(torch.from_numpy(proposals))
            labels.append(torch.from_numpy(select_labels(proposals, {0: table}, params).astype(np.int64)))
        return SliceSegmentation(labels=torch.stack(labels), segment_map=torch.stack(maps),
                                 consistent_ids=params.mode != "all", scores=tables, selection=params)


class PromptThreshold(BrightThreshold):
    """Prompt-driven test method: the prompt 'above 0.4' keeps pixels brighter than 0.4, so
    several prompts give different, nested masks."""

    info = MethodInfo(name="prompt-threshold", label="Prompt threshold (test)", description="test method",
                      prompt="required", needs_checkpoint=False, default_model=None, params=BrightThreshold.info.params)

    def segment(self, images: torch.Tensor, valid: torch.Tensor, indices=None) -> SliceSegmentation:
        level = float(self.prompt.split()[-1])
        return SliceSegmentation(labels=(images.mean(1) > level).long())


class SlowLoad(BrightThreshold):
    """Loads like a big diffusers model: a long stretch of library code without any safe point
    (sleep resumes after a signal handler, PEP 475) and an exception wrapper like diffusers'
    around it, so a cancel can only end it through the protocol's watchdog."""

    info = MethodInfo(name="slow-load", label="Slow load (test)", description="never checks cancel while loading",
                      prompt="optional", needs_checkpoint=False, default_model=None,
                      params=BrightThreshold.info.params + (
                          Param("load_seconds", "float", 30.0, "load time", minimum=0.0, maximum=600.0),))

    def load(self) -> None:
        import time

        from DiffusionSegLib.runtime.model_cache import cached_load

        def slow() -> dict:
            try:
                time.sleep(self.params["load_seconds"])
            except Exception as error:  # what diffusers does to errors inside a load
                raise OSError(f"Error no file named diffusion_pytorch_model.bin found: {error}") from error
            return {"weights": "slow"}

        # through the runner's model cache, like a real load: a warm worker keeps it
        cached_load(("slow-load", self.params["load_seconds"]), slow)
        super().load()


FAKE_CLI_CODE = (
    "import sys; sys.path.insert(0, {testing!r}); import fake_methods as f; from DiffusionSegLib import methods as m; "
    "r = dict(m.available_methods()); r.update({{c.info.name: c for c in (f.BrightThreshold, f.SlowLoad)}}); "
    "m._REGISTRY = r; from DiffusionSegLib.cli.main import main; sys.exit(main(sys.argv[1:]))")


def fake_cli_command(*arguments: str) -> list[str]:
    """`python -m DiffusionSegLib ARGS` with the model-free test methods registered (a real CLI
    process: argument parsing, protocol, signals, job, image IO)."""
    import sys
    from pathlib import Path

    return [sys.executable, "-c", FAKE_CLI_CODE.format(testing=str(Path(__file__).resolve().parent)),
            *map(str, arguments)]
