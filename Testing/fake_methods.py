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

    def segment(self, images: torch.Tensor, valid: torch.Tensor) -> SliceSegmentation:
        assert images.shape[-1] == self.image_size and images.min() >= 0 and images.max() <= 1
        self.seen_valid.append(valid.clone())
        self.context.check_cancelled()
        labels = (images.mean(1) > self.params["threshold"]).long()
        return SliceSegmentation(labels=labels)


class CancelsItself(BrightThreshold):
    info = MethodInfo(name="cancels-itself", label="Cancel (test)", description="cancels during a batch",
                      prompt="none", needs_checkpoint=False, default_model=None,
                      params=BrightThreshold.info.params)

    def segment(self, images, valid):
        self.context.cancel_token.cancel()
        return super().segment(images, valid)


class PromptThreshold(BrightThreshold):
    """Prompt-driven test method: the prompt 'above 0.4' keeps pixels brighter than 0.4, so
    several prompts give different, nested masks."""

    info = MethodInfo(name="prompt-threshold", label="Prompt threshold (test)", description="test method",
                      prompt="required", needs_checkpoint=False, default_model=None, params=BrightThreshold.info.params)

    def segment(self, images: torch.Tensor, valid: torch.Tensor) -> SliceSegmentation:
        level = float(self.prompt.split()[-1])
        return SliceSegmentation(labels=(images.mean(1) > level).long())
