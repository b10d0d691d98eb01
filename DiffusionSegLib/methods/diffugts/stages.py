"""The DiffuGTS stages together, on a batch of preprocessed slices.

encode → AOVA map (+ frozen features) → coarse mask (Otsu / threshold, or the trained adapter)
→ dilate → pseudo-healthy latent inpainting with the normal prompt → decode → pixel and feature
residuals → R = β1·P + β2·F → Otsu (or the trained residual head) → refined mask.

Each stage is timed under its own name (`encode`, `aova`, `otsu`, `inpaint`, `residual`) so
`benchmark` reports per-stage costs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from ...contract.events import JobContext
from ...decision.selection import SliceScores
from ...diffusion.attention import capture_attention
from ...runtime.seeding import slice_noise
from .aova import aggregate_token_maps, anomaly_difference, body_region, coarse_mask
from .features import (
    DEFAULT_ENCODER_BLOCKS,
    DEFAULT_FEATURE_BLOCKS,
    capture_block_outputs,
    noised,
    unet_features,
)
from .heads import AOVAAdapter, ResidualHead, residual_inputs
from .inpaint import dilate_mask, mask_to_latent, pseudo_healthy_inpaint
from .prompts import PromptPair, contrast_positions, pooled_positions
from .residual import feature_residual, fuse_residuals, otsu_mask, pixel_residual
from .slice_evidence import gate_statistic, slice_proposals
from .spec import INFO, parse_timesteps


def text_vectors(parts: Any, prompts: PromptPair, hidden: torch.Tensor | None = None) -> torch.Tensor:
    """The adapter's text input for a prompt pair, (1, 2, D): [normal, anomaly] vectors pooled over
    each prompt's own words (any pair: the prompts are inputs of the adapter, not classes)."""
    if hidden is None:
        hidden = parts.encode_prompt([prompts.anomaly, prompts.normal])
    positions_anomaly, positions_normal = contrast_positions(parts.tokenizer, prompts)
    return torch.stack([pooled_positions(hidden[1], positions_normal),
                        pooled_positions(hidden[0], positions_anomaly)])[None].float()


def _default(name: str) -> Any:
    """A parameter's default as the method's spec defines it (the one place defaults live)."""
    return INFO.param(name).default


@dataclass(frozen=True)
class DiffuGTSSettings:
    strength: float = _default("strength")
    steps: int = _default("steps")
    guidance_scale: float = _default("guidance_scale")
    dilation: int = _default("dilation")
    beta1: float = _default("beta1")
    beta2: float = _default("beta2")
    threshold_method: str = _default("threshold_method")  # auto: Otsu without adapter, fixed 0.5 on its probability
    threshold: float = _default("threshold")
    aova_timesteps: tuple[int, ...] = parse_timesteps(_default("aova_timesteps"))
    body_level: float = _default("body_level")
    anomaly_floor: float = _default("anomaly_floor")
    feature_blocks: tuple[int, ...] = DEFAULT_FEATURE_BLOCKS
    encoder_blocks: tuple[int, ...] = DEFAULT_ENCODER_BLOCKS
    # what the trained adapter reads: frozen VAE-encoder features, or the frozen UNet's decoder
    # features of I at the first AOVA timestep (the paper's choice; one seeded draw per slice)
    adapter_features: str = "vae"

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "DiffuGTSSettings":
        """From the method's resolved parameters (every name present: `MethodInfo.resolve_params`)."""
        return cls(strength=params["strength"], steps=params["steps"], guidance_scale=params["guidance_scale"],
                   dilation=params["dilation"], beta1=params["beta1"], beta2=params["beta2"],
                   threshold_method=params["threshold_method"], threshold=params["threshold"],
                   aova_timesteps=parse_timesteps(params["aova_timesteps"]), body_level=params["body_level"],
                   anomaly_floor=params["anomaly_floor"])


@dataclass
class DiffuGTSOutput:
    """All intermediate maps (B, S, S); kept so tests, training and users can inspect each stage."""

    region: torch.Tensor
    anomaly: torch.Tensor
    coarse: torch.Tensor
    dilated: torch.Tensor
    pseudo_healthy: torch.Tensor
    pixel: torch.Tensor
    feature: torch.Tensor
    fused: torch.Tensor
    refined: torch.Tensor
    probability: torch.Tensor
    features: list[torch.Tensor] = field(default_factory=list)
    encoder_features: list[torch.Tensor] = field(default_factory=list)
    gate: torch.Tensor | None = None            # (B,) image-level abnormality evidence
    proposals: torch.Tensor | None = None       # (B, S, S) components of `refined`, ids 1..K
    scores: list[SliceScores] = field(default_factory=list)  # their evidence (selection.py)


@dataclass
class FrozenInputs:
    """What the frozen model says about I before anything is trained on: shared by inference and
    by head training, so the heads see exactly the inputs they will get."""

    latents: torch.Tensor
    region: torch.Tensor
    attention_anomaly: torch.Tensor
    gate: torch.Tensor
    unet_features: list[torch.Tensor]
    encoder_features: list[torch.Tensor]


class DiffuGTSPipeline:
    def __init__(self, parts: Any, prompts: PromptPair, settings: DiffuGTSSettings,
                 context: JobContext | None = None, adapter: AOVAAdapter | None = None,
                 residual_head: ResidualHead | None = None, image_head: Any = None):
        self.parts, self.prompts, self.settings = parts, prompts, settings
        self.context = context or JobContext()
        self.adapter, self.residual_head, self.image_head = adapter, residual_head, image_head
        hidden = parts.encode_prompt([prompts.anomaly, prompts.normal])
        self.text_context = hidden  # (2, 77, D): [anomaly, normal]
        self.positions_anomaly, self.positions_normal = contrast_positions(parts.tokenizer, prompts)
        self.text_vectors = text_vectors(parts, prompts, hidden)
        self.scheduler = type(parts.scheduler).from_config(parts.scheduler.config)

    # -- stage helpers -------------------------------------------------------------------------
    def _noise(self, latents: torch.Tensor, indices: Sequence[int], stream: int = 0) -> torch.Tensor:
        """Per-slice noise from (seed, slice index, stream): independent of the batch."""
        return slice_noise(latents.shape[1:], self.context.seed, indices, stream, latents.device, latents.dtype)

    @torch.no_grad()
    def attention_maps(self, latents: torch.Tensor, region: torch.Tensor, indices: Sequence[int] | None = None
                       ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Training-free signed AOVA difference (B, S, S) on the CPU, in absolute units (see
        `aova.anomaly_difference`), and the frozen UNet decoder features of I.

        One UNet call per timestep on the batch [I + anomaly prompt, I + normal prompt]; the
        normal-prompt half of the first call also yields the decoder features that the feature
        residual compares with H's (same t, same noise, same prompt)."""
        batch, size = latents.shape[0], tuple(region.shape[-2:])
        noise = self._noise(latents, _indices(indices, batch))
        context = torch.cat([self.text_context[:1].expand(batch, -1, -1),
                             self.text_context[1:].expand(batch, -1, -1)])
        abnormal = normal = None
        features: list[torch.Tensor] = []
        for k, t in enumerate(self.settings.aova_timesteps):
            blocks = self.settings.feature_blocks if k == 0 else ()
            with capture_attention(self.parts.unet, kinds=("cross",)) as store, \
                    capture_block_outputs(self.parts.unet.up_blocks, blocks) as outputs:
                z_t = noised(self.scheduler, torch.cat([latents, latents]), torch.cat([noise, noise]), t)
                dtype = self.parts.unet.dtype
                self.parts.unet(z_t.to(dtype), int(t), encoder_hidden_states=context.to(dtype))
            cross = list(store.maps("cross").values())
            a = aggregate_token_maps([m[:batch] for m in cross], self.positions_anomaly, size)
            n = aggregate_token_maps([m[batch:] for m in cross], self.positions_normal, size)
            abnormal = a if abnormal is None else abnormal + a
            normal = n if normal is None else normal + n
            if k == 0:
                features = [outputs[i][batch:].float() for i in blocks]
            self.context.check_cancelled()
        return anomaly_difference(abnormal.float(), normal.float(), region).cpu(), features

    @torch.no_grad()
    def frozen_inputs(self, images: torch.Tensor, valid: torch.Tensor,
                      indices: Sequence[int] | None = None) -> FrozenInputs:
        """encode (capturing VAE encoder features) and the AOVA pass, each timed."""
        s, ctx, parts = self.settings, self.context, self.parts
        with ctx.timed("encode"):
            with capture_block_outputs(parts.vae.encoder.down_blocks, s.encoder_blocks) as encoder:
                # fp32 latents (dtypes.py): schedulers and residuals in fp32, cast at each UNet call.
                # Not from the runner's latent cache: the encoder must run for its inner features.
                latents = parts.encode_image(images, use_cache=False, for_reconstruction=True)
        region = body_region(images, valid, s.body_level)
        with ctx.timed("aova"):
            difference, features = self.attention_maps(latents, region, indices)
        return FrozenInputs(latents, region, difference.clamp_min(0.0), gate_statistic(difference, region), features,
                            [encoder[i].float() for i in s.encoder_blocks])

    def adapter_probability(self, features: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """Trained AOVA map: sigmoid of the adapter's anomaly logit, upsampled to the slice."""
        text = self.text_vectors.to(features[0].device).expand(features[0].shape[0], -1, -1)
        logits = self.adapter(features, text)
        logits = F.interpolate(logits[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
        return torch.sigmoid(logits).float().cpu()

    def image_probability(self, probability: torch.Tensor, region: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """The image-level head's P(slice holds an anomaly), (B,) on the CPU."""
        from .image_head import image_statistics

        statistics = image_statistics(probability, region, gate)
        device = next(self.image_head.parameters()).device
        return torch.sigmoid(self.image_head(statistics.to(device))).float().cpu()

    # -- the whole method ------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(self, images: torch.Tensor, valid: torch.Tensor,
                 indices: Sequence[int] | None = None) -> DiffuGTSOutput:
        s, ctx, parts = self.settings, self.context, self.parts
        size = tuple(images.shape[-2:])
        indices = _indices(indices, images.shape[0])
        frozen = self.frozen_inputs(images, valid, indices)
        latents, region, anomaly, features = (frozen.latents, frozen.region, frozen.attention_anomaly,
                                              frozen.unet_features)
        gate = frozen.gate
        if self.adapter is not None:
            with ctx.timed("aova"):
                source = frozen.unet_features if s.adapter_features == "unet" else frozen.encoder_features
                anomaly = self.adapter_probability(source, size) * region
                if self.image_head is not None:  # the trained image-level decision replaces the statistic
                    gate = self.image_probability(anomaly, region, frozen.gate)
        with ctx.timed("otsu"):
            method = s.threshold_method
            if method == "auto":
                method = "fixed" if self.adapter is not None else "otsu"
            # the trained adapter's own decision level is probability 0.5
            floor = 0.5 if self.adapter is not None else s.anomaly_floor
            coarse = coarse_mask(anomaly, region, method, s.threshold, floor)
            dilated = dilate_mask(coarse, s.dilation) & valid.bool().cpu()
        healthy = images.clone().float().cpu()
        features_h = [f.clone() for f in features]
        todo = [b for b in range(images.shape[0]) if bool(dilated[b].any())]
        with ctx.timed("inpaint"):
            if todo:
                sub = latents[todo]
                latent_mask = mask_to_latent(dilated[todo], tuple(sub.shape[-2:]))
                z_h = pseudo_healthy_inpaint(
                    parts.unet, self.scheduler, sub, latent_mask, self.text_context[1:], s.strength, s.steps,
                    noise=self._noise(sub, [indices[b] for b in todo], stream=1),
                    negative_context=self.text_context[:1], guidance_scale=s.guidance_scale,
                    step_callback=lambda i, n: (ctx.progress("inpaint", i, n), ctx.check_cancelled()))
                healthy[todo] = parts.decode_latent(z_h).float().cpu()
        with ctx.timed("residual"):
            if todo:
                noise = self._noise(latents[todo], [indices[b] for b in todo])
                fh = unet_features(parts.unet, self.scheduler, z_h, self.text_context[1:],
                                   s.aova_timesteps[0], noise, s.feature_blocks)
                for f_all, f_h in zip(features_h, fh):
                    f_all[todo] = f_h.to(f_all)
            pixel = pixel_residual(images.float().cpu(), healthy, region)
            feature = feature_residual([f.cpu() for f in features], [f.cpu() for f in features_h], size)
            inside = dilated & region
            fused = fuse_residuals(pixel, feature, s.beta1, s.beta2, inside)
        with ctx.timed("otsu"):
            if self.residual_head is not None:
                logits = self.residual_head(residual_inputs(pixel, feature, fused, anomaly).to(latents.device))
                probability = torch.sigmoid(logits).float().cpu() * inside
                refined = probability > 0.5
            else:
                refined = otsu_mask(fused, inside, min_level=1e-6)
                probability = _otsu_probability(fused, refined, inside)
        proposals, scores = slice_proposals(refined, anomaly, valid, gate)
        return DiffuGTSOutput(region=region, anomaly=anomaly, coarse=coarse, dilated=dilated,
                              pseudo_healthy=healthy, pixel=pixel, feature=feature, fused=fused,
                              refined=refined, probability=probability, features=features,
                              encoder_features=frozen.encoder_features, gate=gate,
                              proposals=proposals, scores=scores)


def _indices(indices: Sequence[int] | None, batch: int) -> list[int]:
    if indices is None:
        return list(range(batch))
    if len(indices) != batch:
        raise ValueError(f"{len(indices)} slice indices for a batch of {batch}")
    return [int(i) for i in indices]


def _otsu_probability(fused: torch.Tensor, refined: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
    """A [0, 1] map that crosses 0.5 exactly at each slice's Otsu cut (piecewise-linear in R), so
    the pipeline's probability-based inverse resize reproduces the refined mask's boundary."""
    probability = torch.zeros_like(fused)
    for b in range(fused.shape[0]):
        if not bool(refined[b].any()):
            continue
        cut = float(fused[b][inside[b] & ~refined[b]].max()) if bool((inside[b] & ~refined[b]).any()) else 0.0
        top = float(fused[b].max())
        low = 0.5 * fused[b] / max(cut, 1e-6)
        high = 0.5 + 0.5 * (fused[b] - cut) / max(top - cut, 1e-6)
        probability[b] = torch.where(refined[b], high.clamp(0.5 + 1e-3, 1.0), low.clamp(0.0, 0.5)) * inside[b]
    return probability
