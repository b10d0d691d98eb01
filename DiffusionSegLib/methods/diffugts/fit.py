"""Training the DiffuGTS heads on labelled slices, in memory (the CLI wrapper is train.py).

The backbone is frozen, so its outputs are computed once per slice and cached, and only the small
heads see gradients:

1. AOVA adapter: frozen VAE-encoder features of I + pooled text vectors of the prompt pair →
   anomaly logit; Dice + BCE against the tumour mask inside the body region.
2. Residual head: the full pipeline is run with the trained adapter (so the inpainting regions and
   residuals are the ones inference will see), then the head learns [P, F, R, anomaly] → mask
   inside the dilated region.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from .heads import AOVAAdapter, ResidualHead, residual_inputs
from .stages import DiffuGTSPipeline


@dataclass
class FitOptions:
    adapter_epochs: int = 30
    head_epochs: int = 30
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-5
    adapter_dim: int = 64
    seed: int = 0
    train_residual_head: bool = True


def heads_config(pipeline: DiffuGTSPipeline, model: str) -> dict:
    """What inference must match for the heads to apply: base model, size, feature taps, prompts."""
    s = pipeline.settings
    return {"model": model, "image_size": pipeline.parts.image_size, "prompt": pipeline.prompts.anomaly,
            "normal_prompt": pipeline.prompts.normal, "encoder_blocks": list(s.encoder_blocks),
            "feature_blocks": list(s.feature_blocks), "aova_timesteps": list(s.aova_timesteps),
            "adapter_features": s.adapter_features,
            "strength": s.strength, "inpaint_steps": s.steps, "dilation": s.dilation}


def dice_bce_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Soft Dice (over the batch, inside `weight`) + BCE: Dice copes with small tumours, BCE keeps
    gradients alive on slices without tumour (where Dice alone is undefined)."""
    weight = weight.float()
    prob = torch.sigmoid(logits) * weight
    target = target.float() * weight
    dice = 1.0 - (2.0 * (prob * target).sum() + 1.0) / (prob.sum() + target.sum() + 1.0)
    bce = (F.binary_cross_entropy_with_logits(logits, target, reduction="none") * weight).sum() \
        / weight.sum().clamp_min(1.0)
    return dice + bce


@torch.no_grad()
def backbone_cache(pipeline: DiffuGTSPipeline, images: torch.Tensor, valid: torch.Tensor, batch_size: int,
                   progress: Callable[[int, int], None] | None = None, stop: Callable[[], bool] | None = None
                   ) -> dict[str, object]:
    """The adapter's frozen inputs (VAE encoder features) and the body region of every slice,
    computed by the same `frozen_inputs` call inference uses; `stop` (a time budget) ends it
    after a batch, keeping the first slices."""
    features: list[list[torch.Tensor]] = []
    regions, gates, latents = [], [], []
    for start in range(0, images.shape[0], batch_size):
        indices = list(range(start, min(start + batch_size, images.shape[0])))
        frozen = pipeline.frozen_inputs(images[start:start + batch_size], valid[start:start + batch_size], indices)
        features.append([f.cpu() for f in frozen.encoder_features])
        regions.append(frozen.region)
        gates.append(frozen.gate)
        latents.append(frozen.latents.cpu())
        if progress:
            progress(min(start + batch_size, images.shape[0]), images.shape[0])
        if stop is not None and stop():
            break
    return {"features": [torch.cat(level) for level in zip(*features)], "region": torch.cat(regions),
            "gate": torch.cat(gates), "latents": torch.cat(latents)}


def adapter_inputs(pipeline: DiffuGTSPipeline, cache: dict, index: torch.Tensor,
                   generator: torch.Generator | None) -> list[torch.Tensor]:
    """The adapter's inputs for the slices `index`: cached VAE-encoder features, or the frozen UNet's
    decoder features of I recomputed with FRESH noise (from `generator`) at every call, so the
    adapter cannot memorise one draw as a position code; generator None gives the seeded draw per
    slice that inference uses."""
    if pipeline.settings.adapter_features != "unet":
        return [f[index] for f in cache["features"]]
    from .features import unet_features

    parts, s = pipeline.parts, pipeline.settings
    latents = cache["latents"][index].to(parts.device, parts.unet.dtype)
    if generator is None:
        noise = pipeline._noise(latents, [int(i) for i in index])
    else:
        noise = torch.randn(latents.shape, generator=generator).to(latents)
    with torch.no_grad():
        features = unet_features(parts.unet, pipeline.scheduler, latents, pipeline.text_context[1:],
                                 s.aova_timesteps[0], noise, s.feature_blocks)
    return [f.float().cpu() for f in features]


@torch.no_grad()
def image_head_inputs(pipeline: DiffuGTSPipeline, cache: dict, size: tuple[int, int], batch_size: int
                      ) -> torch.Tensor:
    """The image-level head's statistics for every cached slice, from the trained adapter."""
    from .image_head import image_statistics

    region: torch.Tensor = cache["region"]  # type: ignore[assignment]
    device = next(pipeline.adapter.parameters()).device
    rows = []
    for start in range(0, region.shape[0], batch_size):
        index = torch.arange(start, min(start + batch_size, region.shape[0]))
        batch = [f.to(device) for f in adapter_inputs(pipeline, cache, index, None)]
        probability = pipeline.adapter_probability(batch, size) * region[start:start + batch_size]
        rows.append(image_statistics(probability, region[start:start + batch_size],
                                     cache["gate"][start:start + batch_size]))
    return torch.cat(rows)


def train_adapter(pipeline: DiffuGTSPipeline, cache: dict, masks: torch.Tensor, options: FitOptions,
                  log: Callable[[dict], None] | None = None, stop: Callable[[], bool] | None = None,
                  pairs: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
                  initial: AOVAAdapter | None = None) -> AOVAAdapter:
    """Dice + BCE of the adapter's anomaly logit against the tumour mask inside the body region.
    `stop` is checked after every epoch (time budget); the adapter trained so far is returned.
    pairs: several prompt pairs as (text vectors (1, 2, D), masks (N, S, S)); each batch trains on
    one of them, drawn at random (default: the pipeline's pair and `masks`). `initial`: an adapter
    to train on (a resumed one that fell short), on the CPU like the cache; default a new one."""
    region: torch.Tensor = cache["region"]  # type: ignore[assignment]
    torch.manual_seed(options.seed)
    noise_generator = torch.Generator().manual_seed(options.seed + 7)
    if initial is None:
        probe = adapter_inputs(pipeline, cache, torch.arange(1), None)
        adapter = AOVAAdapter([f.shape[1] for f in probe], pipeline.text_vectors.shape[-1], options.adapter_dim)
    else:
        adapter = initial.cpu().requires_grad_(True)
    optimiser = torch.optim.AdamW(adapter.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, max(1, options.adapter_epochs))
    n, size = masks.shape[0], tuple(masks.shape[-2:])
    pairs = pairs or [(pipeline.text_vectors, masks)]
    generator = torch.Generator().manual_seed(options.seed)
    adapter.train()
    for epoch in range(options.adapter_epochs):
        order, total = torch.randperm(n, generator=generator), 0.0
        for start in range(0, n, options.batch_size):
            idx = order[start:start + options.batch_size]
            text, targets = pairs[int(torch.randint(len(pairs), (1,), generator=generator))]
            logits = adapter(adapter_inputs(pipeline, cache, idx, noise_generator),
                             text.cpu().expand(len(idx), -1, -1))
            logits = F.interpolate(logits[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
            loss = dice_bce_loss(logits, targets[idx], region[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(idx)
        schedule.step()
        if log:
            log({"stage": "adapter", "epoch": epoch + 1, "epochs": options.adapter_epochs, "loss": total / n})
        if stop is not None and stop():
            break
    return adapter.eval()


@torch.no_grad()
def residual_cache(pipeline: DiffuGTSPipeline, images: torch.Tensor, valid: torch.Tensor, batch_size: int,
                   progress: Callable[[int, int], None] | None = None, stop: Callable[[], bool] | None = None
                   ) -> dict[str, torch.Tensor]:
    """Run the whole pipeline (with the trained adapter) and keep the residual-head inputs
    (of the first slices only, when `stop` ends it early)."""
    inputs, inside, refined = [], [], []
    for start in range(0, images.shape[0], batch_size):
        indices = list(range(start, min(start + batch_size, images.shape[0])))
        out = pipeline(images[start:start + batch_size], valid[start:start + batch_size], indices)
        inputs.append(residual_inputs(out.pixel, out.feature, out.fused, out.anomaly))
        inside.append(out.dilated & out.region)
        refined.append(out.refined)
        if progress:
            progress(min(start + batch_size, images.shape[0]), images.shape[0])
        if stop is not None and stop():
            break
    return {"inputs": torch.cat(inputs), "inside": torch.cat(inside), "refined": torch.cat(refined)}


def train_residual_head(cache: dict[str, torch.Tensor], masks: torch.Tensor, options: FitOptions,
                        log: Callable[[dict], None] | None = None, stop: Callable[[], bool] | None = None
                        ) -> ResidualHead:
    """Dice + BCE of the head's logit inside the dilated region (the only place it may answer)."""
    torch.manual_seed(options.seed + 1)
    head = ResidualHead()
    optimiser = torch.optim.AdamW(head.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, max(1, options.head_epochs))
    inputs, inside = cache["inputs"], cache["inside"]
    n = inputs.shape[0]
    generator = torch.Generator().manual_seed(options.seed + 1)
    head.train()
    for epoch in range(options.head_epochs):
        order, total, stepped = torch.randperm(n, generator=generator), 0.0, False
        for start in range(0, n, options.batch_size):
            idx = order[start:start + options.batch_size]
            if not bool(inside[idx].any()):
                continue
            loss = dice_bce_loss(head(inputs[idx]), masks[idx], inside[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            stepped = True
            total += float(loss.detach()) * len(idx)
        if stepped:
            schedule.step()
        if log:
            log({"stage": "residual_head", "epoch": epoch + 1, "epochs": options.head_epochs, "loss": total / n})
        if stop is not None and stop():
            break
    return head.eval()


def fit_heads(pipeline: DiffuGTSPipeline, images: torch.Tensor, masks: torch.Tensor, valid: torch.Tensor,
              options: FitOptions, log: Callable[[dict], None] | None = None
              ) -> tuple[AOVAAdapter, ResidualHead | None]:
    """Both stages on (N, 3, S, S) images in [0, 1], (N, S, S) bool masks and valid masks."""
    cache = backbone_cache(pipeline, images, valid, options.batch_size)
    # Trained on the CPU-cached inputs; the pipeline feeds device features at inference.
    adapter = train_adapter(pipeline, cache, masks, options, log).to(pipeline.parts.device)
    if not options.train_residual_head:
        return adapter, None
    pipeline.adapter, pipeline.residual_head = adapter, None
    residuals = residual_cache(pipeline, images, valid, options.batch_size)
    head = train_residual_head(residuals, masks, options, log).to(pipeline.parts.device)
    pipeline.residual_head = head
    return adapter, head
