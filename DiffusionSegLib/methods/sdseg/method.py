"""SDSeg as a registered method: segment with a checkpoint trained by `train sdseg`.

No torch at module level: the Slicer panel reads `Sdseg.info` in a light process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from ..base import Method, MethodInfo, Param, SliceSegmentation

if TYPE_CHECKING:  # pragma: no cover
    import torch


class Sdseg(Method):
    """Single-step latent diffusion segmentation (Lin et al., MICCAI 2024)."""

    info = MethodInfo(
        name="sdseg",
        label="SDSeg",
        description="Trained latent diffusion segmenter: one UNet step from noise to the mask latent, "
                    "conditioned on the image (needs a checkpoint from `train sdseg`).",
        prompt="optional",
        needs_checkpoint=True,
        default_model=None,
        trainable=True,
        prompt_conditioned=False,  # the prompt only names the segment
        probability_maps=("evidence",),   # the foreground probability, mean over the seeds
        reference="Lin et al., Stable Diffusion Segmentation for Biomedical Images with Single-step "
                  "Reverse Process, MICCAI 2024",
        params=(
            Param("sampler", "choice", "single-step", "single-step: one UNet call at t = 999 with latent "
                  "estimation (the paper); ddim: multi-step DDIM from t = 999", choices=("single-step", "ddim"),
                  advanced=False),
            Param("steps", "int", 10, "DDIM steps (only with sampler ddim)", minimum=2, maximum=1000),
            Param("eta", "float", 0.0, "DDIM eta (0: deterministic)", minimum=0.0, maximum=1.0),
            Param("threshold", "float", 0.5, "foreground threshold on the decoded, channel-averaged mask",
                  minimum=0.0, maximum=1.0),
            Param("seed", "int", -1, "seed of the initial noise x_T (-1: the job's seed)", minimum=-1),
            Param("seeds", "int", 1, "x_T draws (seeds seed, seed+1, …) averaged into the probability; their "
                  "standard deviation is the uncertainty map (each draw is one more sampler run)",
                  minimum=1, maximum=64),
        ),
    )

    def load(self) -> None:
        from pathlib import Path

        import torch

        from ...runtime.dtypes import resolve_policy, safetensors_parameters
        from .checkpoint import load_checkpoint

        device = torch.device(self.context.device)
        size = safetensors_parameters(Path(self.model) / "unet")  # auto keeps small UNets fp32 on CPU
        self.policy = resolve_policy(device, self.context.dtype, unet_parameters=size)
        self._model, self._config = load_checkpoint(self.model, device, self.policy.compute)  # VAE stays fp32
        self._device, self._dtype = device, self.policy.compute
        self.image_size = int(self._config["image_size"])
        self._n_classes = int(self._config.get("num_classes", 0))

    def segment(self, images: "torch.Tensor", valid: "torch.Tensor",
                indices: "Sequence[int] | None" = None) -> SliceSegmentation:
        """x_T (and DDIM's step noise) is one draw shared by every slice, so `indices` is not needed:
        a slice's result depends on the seed alone, whatever batch it is in."""
        import torch

        from .predict import labels_from_probabilities, predict_probabilities

        seed = self.params["seed"] if self.params["seed"] >= 0 else self.context.seed
        steps = 1 if self.params["sampler"] == "single-step" else int(self.params["steps"])
        x = images.to(self._device, self._dtype)
        draws = []
        with self.context.timed("diffusion"):
            for n in range(int(self.params["seeds"])):  # one x_T per draw, shared by the batch's slices
                self.context.check_cancelled()
                generator = torch.Generator(device=self._device).manual_seed(int(seed) + n)
                draws.append(predict_probabilities(self._model, x, self._n_classes, steps, generator,
                                                   float(self.params["eta"])).float().cpu())
        stacked = torch.stack(draws) * valid.unsqueeze(1)  # letterbox padding is never foreground
        probabilities = stacked.mean(dim=0)
        labels = labels_from_probabilities(probabilities, float(self.params["threshold"]))
        foreground = probabilities.max(dim=1).values
        spread = stacked.max(dim=2).values.std(dim=0, unbiased=False) if len(draws) > 1 else None
        return SliceSegmentation(labels=labels.to(torch.int64), probabilities=foreground,
                                 evidence=foreground, uncertainty=spread)

    @classmethod
    def add_train_arguments(cls, parser: Any) -> None:
        from .arguments import add_arguments

        add_arguments(parser)

    @classmethod
    def train(cls, args: Any, context: Any) -> dict:
        from .train import run

        return run(args, context)
