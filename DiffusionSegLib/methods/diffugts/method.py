"""DiffuGTS: anomaly-aware open-vocabulary tumour segmentation with pseudo-healthy inpainting.

Registry entry only: metadata for the Slicer panel and CLI, parameter checks, and the hand-off
to `DiffusionSegLib.methods.diffugts` (imported inside `load`, so reading `info` needs no torch).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Sequence

from ...contract.errors import InvalidParameter
from ..base import Method, SliceSegmentation
from .spec import INFO

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ...contract.events import JobContext


ADAPTER_LEVEL = 0.5   # trained heads output probabilities: their decision level is 0.5


class DiffuGTS(Method):
    info = INFO

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Prompts and parameters are checked when the method is created, before the job reads the
        # image or any model: a missing organ fails in milliseconds, not after a model load.
        self._prompts()
        self._settings()

    def validate(self) -> None:
        """A prompt without an abnormality is allowed (the words may be new to the table) but said."""
        from .prompts import no_anomaly_warning

        warning = no_anomaly_warning(self._prompts())
        if warning:
            self.context.emit({"event": "warning", "message": warning})

    def _prompts(self) -> Any:
        from .prompts import resolve_prompts

        return resolve_prompts(self.prompt, self.params["organ"], self.params["normal_prompt"])

    def load(self) -> None:
        prompts, settings = self._prompts(), self._settings()
        from ...models.stable_diffusion import load_stable_diffusion
        from .heads import load_heads, load_image_head
        from .stages import DiffuGTSPipeline

        self.context.log(f"DiffuGTS prompts: anomaly '{prompts.anomaly}', normal '{prompts.normal}'.")
        # Half precision only when asked for explicitly; otherwise the loader's choice (fp16 on CUDA).
        parts = load_stable_diffusion(self.model or self.info.default_model, self.context.device, self.context.dtype)
        adapter = residual_head = image_head = None
        heads = (self.params["heads"] or "").strip()
        if heads:
            config, adapter, residual_head = load_heads(heads, parts.device)
            image_head = load_image_head(heads, parts.device) if adapter is not None else None
            self._check_heads(config, parts)
            # the adapter reads what it was trained on
            settings = dataclasses.replace(settings, adapter_features=config.get("adapter_features", "vae"))
        self._image_head = image_head is not None
        self.parts = parts  # read by `benchmark` (dtype) and by callers that reuse the model
        self.image_size = parts.image_size
        self.pipeline = DiffuGTSPipeline(parts, prompts, settings, self.context, adapter, residual_head, image_head)

    def _settings(self) -> Any:
        from .stages import DiffuGTSSettings

        if self.params["beta1"] + self.params["beta2"] <= 0:
            raise InvalidParameter("beta1 + beta2 must be positive: the fused residual would be empty.")
        return DiffuGTSSettings.from_params(self.params)

    def selection(self) -> Any:
        """The volume-level decision's parameters: absolute anomaly floor and seed, image gate.
        With a trained adapter the evidence is its probability, decided at ADAPTER_LEVEL."""
        from ...decision.selection import SelectionParams

        if (self.params["heads"] or "").strip():
            gate = self.params["gate_threshold"]
            gate_threshold = float(gate) if gate > 0 else None
            if gate_threshold is not None and getattr(self, "_image_head", False):
                gate_threshold = ADAPTER_LEVEL   # the trained image-level head's probability
            return SelectionParams(mode="anomaly", vote_threshold=ADAPTER_LEVEL, seed_threshold=ADAPTER_LEVEL,
                                   gate_threshold=gate_threshold)
        return SelectionParams.from_dict(self.params, mode="anomaly")

    def _check_heads(self, config: dict, parts: Any) -> None:
        from ...contract.errors import ModelLoadFailed

        unet = config.get("adapter_features", "vae") == "unet"
        blocks = parts.unet.up_blocks if unet else parts.vae.encoder.down_blocks
        taps = config.get("feature_blocks" if unet else "encoder_blocks", [])
        channels = [int(blocks[i].resnets[-1].conv2.out_channels) if i < len(blocks) else -1 for i in taps]
        adapter = config.get("adapter") or {}
        if adapter and channels != list(adapter.get("feature_channels", [])):
            raise ModelLoadFailed(
                f"The DiffuGTS heads were trained on {'UNet-decoder' if unet else 'VAE-encoder'} features with "
                f"channels {adapter.get('feature_channels')} (model '{config.get('model')}'), but this model "
                f"gives {channels}.", hint="Use the base model the heads were trained with.")
        if config.get("image_size") and int(config["image_size"]) != parts.image_size:
            self.context.log(f"Heads were trained at {config['image_size']} px; the model runs at "
                             f"{parts.image_size} px.", level="warning")

    def segment(self, images: "torch.Tensor", valid: "torch.Tensor",
                indices: "Sequence[int] | None" = None) -> SliceSegmentation:
        import torch

        from ...decision.selection import select_labels

        out = self.pipeline(images, valid, indices)
        selection = self.selection()
        # each slice's own decision here; the pipeline decides the volume from proposals + scores
        labels = torch.stack([torch.from_numpy(select_labels(p.numpy(), {0: t}, selection).astype("int64"))
                              for p, t in zip(out.proposals, out.scores)])
        return SliceSegmentation(labels=labels, probabilities=out.probability * (labels > 0),
                                 segment_map=out.proposals, scores=out.scores, selection=selection,
                                 evidence=out.fused, anomaly=out.anomaly, pseudo_healthy=out.pseudo_healthy)

    @classmethod
    def add_train_arguments(cls, parser: Any) -> None:
        from .train import add_train_arguments

        add_train_arguments(parser)

    @classmethod
    def train(cls, args: Any, context: "JobContext") -> dict:
        from .train import train

        return train(args, context)
