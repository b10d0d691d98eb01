"""DiffuGTS: anomaly-aware open-vocabulary tumour segmentation with pseudo-healthy inpainting.

Registry entry only: metadata for the Slicer panel and CLI, parameter checks, and the hand-off
to `DiffusionSegLib.diffugts` (imported inside `load`, so reading `info` needs no torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import InvalidParameter
from .base import Method, MethodInfo, Param, SliceSegmentation

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ..events import JobContext


def parse_timesteps(text: str) -> tuple[int, ...]:
    """'100' or '100, 300' → (100, 300); each in [1, 999]."""
    try:
        values = tuple(int(v) for v in str(text).replace(";", ",").split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or any(not 1 <= v <= 999 for v in values):
        raise InvalidParameter(f"Parameter 'aova_timesteps' must be comma-separated integers in [1, 999]; "
                               f"got {text!r}.")
    return values


class DiffuGTS(Method):
    info = MethodInfo(
        name="diffugts",
        label="DiffuGTS",
        description="Tumour segmentation from a text prompt: anomaly-aware attention maps of a frozen "
                    "text-to-image diffusion model, pseudo-healthy inpainting, and residuals.",
        prompt="required",
        needs_checkpoint=False,
        default_model="CompVis/stable-diffusion-v1-4",
        trainable=True,
        prompt_examples=("liver tumour", "brain tumour", "kidney tumour", "lung tumour"),
        reference="Jiang et al., Generalizable Tumor Segmentation with Anomaly-Aware Open-Vocabulary "
                  "Attention Maps and Frozen Foundation Diffusion Models, CVPR 2025 (re-implemented "
                  "slice-wise on a 2D Stable-Diffusion-layout model; no official code exists).",
        params=(
            Param("organ", "str", "", "Organ the tumour lies in; the normal prompt becomes 'healthy <organ>'.",
                  label="Organ", advanced=False),
            Param("normal_prompt", "str", "", "Explicit normal (healthy) prompt; overrides 'organ'.",
                  label="Normal prompt", advanced=False),
            Param("heads", "str", "", "Folder of trained DiffuGTS heads (`train diffugts`); empty: "
                  "training-free attention maps and Otsu.", label="Trained heads", advanced=False),
            Param("strength", "float", 0.6, "Noise strength of the pseudo-healthy inpainting "
                  "(fraction of the schedule re-generated).", minimum=0.05, maximum=1.0),
            Param("steps", "int", 20, "Inference steps of the full schedule (about steps × strength "
                  "UNet calls per slice).", minimum=1, maximum=200),
            Param("dilation", "int", 3, "Dilation of the coarse mask before inpainting, in pixels of the "
                  "model grid.", minimum=0, maximum=64),
            Param("beta1", "float", 0.5, "Weight of the pixel residual |I - H|.", minimum=0.0, maximum=1.0),
            Param("beta2", "float", 0.5, "Weight of the feature residual (UNet feature cosine distance).",
                  minimum=0.0, maximum=1.0),
            Param("threshold_method", "choice", "auto", "Coarse-mask threshold: Otsu, or a fixed level; "
                  "auto = Otsu on the attention map, fixed 0.5 on a trained adapter's probability.",
                  choices=("auto", "otsu", "fixed")),
            Param("threshold", "float", 0.5, "Level for threshold_method=fixed.", minimum=0.0, maximum=1.0),
            Param("aova_timesteps", "str", "100", "Diffusion timesteps (comma-separated) whose "
                  "cross-attention is averaged; the first also gives the UNet features."),
            Param("body_level", "float", 0.05, "Normalised intensity above which a pixel is body/organ; "
                  "masks stay inside that region.", minimum=0.0, maximum=1.0),
        ),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Prompts and parameters are checked when the method is created, before the job reads the
        # image or any model: a missing organ fails in milliseconds, not after a model load.
        self._prompts()
        self._settings()

    def _prompts(self) -> Any:
        from ..diffugts.prompts import resolve_prompts

        return resolve_prompts(self.prompt, self.params.get("organ", ""), self.params.get("normal_prompt", ""))

    def load(self) -> None:
        prompts, settings = self._prompts(), self._settings()
        from ..diffugts.heads import load_heads
        from ..diffugts.pipeline import DiffuGTSPipeline
        from ..models import load_stable_diffusion

        self.context.log(f"DiffuGTS prompts: anomaly '{prompts.anomaly}', normal '{prompts.normal}'.")
        # Half precision only when asked for explicitly; otherwise the loader's choice (fp16 on CUDA).
        parts = load_stable_diffusion(self.model or self.info.default_model, self.context.device, self.context.dtype)
        adapter = residual_head = None
        heads = (self.params.get("heads") or "").strip()
        if heads:
            config, adapter, residual_head = load_heads(heads, parts.device)
            self._check_heads(config, parts)
        self.parts = parts  # read by `benchmark` (dtype) and by callers that reuse the model
        self.image_size = parts.image_size
        self.pipeline = DiffuGTSPipeline(parts, prompts, settings, self.context, adapter, residual_head)

    def _settings(self) -> Any:
        from ..diffugts.pipeline import DiffuGTSSettings

        p = self.params
        if p.get("beta1", 0.5) + p.get("beta2", 0.5) <= 0:
            raise InvalidParameter("beta1 + beta2 must be positive: the fused residual would be empty.")
        return DiffuGTSSettings(
            strength=p.get("strength", 0.6), steps=p.get("steps", 20), dilation=p.get("dilation", 3),
            beta1=p.get("beta1", 0.5), beta2=p.get("beta2", 0.5),
            threshold_method=p.get("threshold_method", "auto"), threshold=p.get("threshold", 0.5),
            aova_timesteps=parse_timesteps(p.get("aova_timesteps", "100")), body_level=p.get("body_level", 0.05))

    def _check_heads(self, config: dict, parts: Any) -> None:
        from ..errors import ModelLoadFailed

        blocks = parts.vae.encoder.down_blocks
        channels = [int(blocks[i].resnets[-1].conv2.out_channels) if i < len(blocks) else -1
                    for i in config.get("encoder_blocks", [])]
        adapter = config.get("adapter") or {}
        if adapter and channels != list(adapter.get("feature_channels", [])):
            raise ModelLoadFailed(
                f"The DiffuGTS heads were trained on VAE-encoder features with channels "
                f"{adapter.get('feature_channels')} (model '{config.get('model')}'), but this model's VAE encoder "
                f"gives {channels}.", hint="Use the base model the heads were trained with.")
        if config.get("image_size") and int(config["image_size"]) != parts.image_size:
            self.context.log(f"Heads were trained at {config['image_size']} px; the model runs at "
                             f"{parts.image_size} px.", level="warning")

    def segment(self, images: "torch.Tensor", valid: "torch.Tensor", indices: Any = None) -> SliceSegmentation:
        import torch

        out = self.pipeline(images, valid)
        return SliceSegmentation(labels=out.refined.to(torch.uint8), probabilities=out.probability,
                                 evidence=out.fused, anomaly=out.anomaly, pseudo_healthy=out.pseudo_healthy)

    @classmethod
    def add_train_arguments(cls, parser: Any) -> None:
        from ..diffugts.train import add_train_arguments

        add_train_arguments(parser)

    @classmethod
    def train(cls, args: Any, context: "JobContext") -> dict:
        from ..diffugts.train import train

        return train(args, context)
