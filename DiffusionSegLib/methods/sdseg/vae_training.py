"""The small VAE of the from-scratch path, trained on the training images AND masks.

SDSeg freezes its VAE and relies on it to encode/decode binary masks (the mask round trip Dice
is the ceiling of SDSeg's Dice); the conditioner starts from the same encoder, so the VAE must
also have seen images. Loss: L1 reconstruction + a small KL term (LDM's KL-f8 uses 1e-6 KL plus
LPIPS and a patch GAN; those buy photographic detail that masks do not need, and cost CPU time).

The stage ends with its check (training/quality.py): the mask round trip against the trivial
answers. Its weights, optimizer state and check are saved as soon as it ends; `--resume` reuses
a VAE that passed and extends one that fell short (the denoiser then starts over, since its
latents came from the old VAE).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from ...contract.events import JobContext
from ...training.budget import RunBudget, TimeBudget
from ...training.checkpoint import (
    load_training_state,
    restore_optimizer,
    save_training_state,
)
from ...training.data import SliceSet
from ...training.loop import batches, dice_iou, log_metrics, random_flips, report
from ...training.quality import VAE_FLOOR, QualityCheck, check, report_check

KL_WEIGHT = 1e-6
# From scratch, the share of --max-minutes the VAE stage gets (docs/methods/sdseg.md's measurements used 1.5 of
# 6.5 min): the masks' round trip saturates early, and the denoiser is what a short budget starves.
VAE_SHARE = 0.25
VAE_STATE = "training_state_vae"  # beside vae/: its optimizer, step and check, for --resume


def as_rgb_mask(masks: torch.Tensor) -> torch.Tensor:
    """(B, S, S) {0,1} → (B, 3, S, S) in {-1, +1}: SDSeg's mask representation."""
    return masks.float().unsqueeze(1).expand(-1, 3, -1, -1) * 2.0 - 1.0


def saved_vae_passed(output: Path) -> bool | None:
    """Whether the VAE saved in `output` passed its check: None when there is no VAE; True for
    a VAE saved without a check (written before checks existed: reused as it was then)."""
    if not (output / "vae" / "config.json").is_file():
        return None
    state = load_training_state(output, VAE_STATE)
    return True if state is None else bool(state[3].get("check", {}).get("passed", True))


def needs_vae_stage(args: argparse.Namespace, output: Path) -> bool:
    """Whether this run trains its VAE (from scratch, with no passing VAE to reuse)."""
    return (args.objective == "sdseg" and not (args.pretrained or args.init_from or args.vae_from)
            and not (args.resume and saved_vae_passed(output)))


def vae_stage(args: argparse.Namespace, config: dict[str, Any], train: SliceSet, val: SliceSet,
              context: JobContext, budget: RunBudget, output: Path, device: torch.device
              ) -> tuple[Any, dict[str, Any], QualityCheck | None, bool]:
    """The from-scratch VAE: (vae, facts for the model card, its check, whether it was trained
    in this run). Reused from --vae-from or a resumed run whose VAE passed; trained, or
    extended when a resumed run's VAE fell short, otherwise."""
    from diffusers import AutoencoderKL

    vae_dir = output / "vae"
    if args.vae_from:
        from ...models.loading import load_component

        vae = load_component(AutoencoderKL, str(Path(args.vae_from).expanduser()), "vae").eval()
        return vae.requires_grad_(False), {"vae": f"reused from {args.vae_from}"}, None, False
    if not needs_vae_stage(args, output):
        vae = AutoencoderKL.from_pretrained(str(vae_dir), use_safetensors=True)
        return vae.requires_grad_(False), {"vae": "reloaded from the resumed run"}, None, False
    start = None
    if args.resume and saved_vae_passed(output) is False:
        _, _, optimizer_tensors, info = load_training_state(output, VAE_STATE)
        start = (AutoencoderKL.from_pretrained(str(vae_dir), use_safetensors=True), optimizer_tensors, info)
        context.log(f"Resumed the VAE stage at step {info['step']}: it fell short (mask round-trip Dice "
                    f"{info['check']['score']:.4f}), so it trains on; the SDSeg stage then starts over.")
    stage = budget.stage("train_vae", "train the VAE on the training images and masks", VAE_SHARE, args.vae_minutes)
    truth = (val.masks if len(val) else train.masks)[:64] > 0
    with context.timed("train_vae"):
        vae, round_trip, steps, optimizer = train_vae(config, train.images, train.masks > 0, context, args.vae_steps,
                                                      stage, seed=args.seed, device=device, val_masks=truth,
                                                      start=start)
    minutes = context.timings["train_vae"] / 60
    result = check("train_vae", "VAE stage", "mask round-trip Dice", round_trip, truth, minimum=VAE_FLOOR,
                   detail=f"{steps} step{'s' if steps != 1 else ''}, {minutes:.1f} min")
    report_check(context, result)
    vae.save_pretrained(vae_dir, safe_serialization=True)
    save_training_state(output, dict(vae.state_dict()), None, optimizer, {"step": steps, "check": result.to_dict()},
                        name=VAE_STATE)
    return vae, {"vae": f"trained here: {steps} steps, {minutes:.1f} min",
                 "vae_mask_round_trip_dice": round(round_trip, 4)}, result, True


def train_vae(config: dict[str, Any], images: torch.Tensor, masks: torch.Tensor, context: JobContext,
              steps: int, budget: TimeBudget, batch_size: int = 16, lr: float = 1e-3,
              seed: int = 0, val_masks: torch.Tensor | None = None, device: torch.device | str = "cpu",
              start: tuple[Any, dict, dict] | None = None):
    """Train an AutoencoderKL on half-image, half-mask batches until `steps` (counted over the
    whole stage, resumed ones included) or the stage's `budget` ends; `start` = (vae, optimizer
    tensors, state info) continues a saved stage. Returns (vae, mask round-trip Dice, steps done,
    optimizer)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    vae = (AutoencoderKL(**config) if start is None else start[0].requires_grad_(True)).to(device)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=lr)
    first = 0
    if start is not None:
        restore_optimizer(optimizer, start[1], start[2]["optimizer"])
        first = int(start[2]["step"])
    generator = torch.Generator().manual_seed(seed + first)
    half = max(1, batch_size // 2)
    order = batches(len(images), half, generator)
    vae.train()
    step = first
    report(context, first, steps, "train_vae")
    for step in range(first + 1, steps + 1):
        context.check_cancelled()
        index = next(order)
        x, m = random_flips(images[index], masks[index], generator)
        batch = torch.cat([x * 2.0 - 1.0, as_rgb_mask(m)]).to(device)
        posterior = vae.encode(batch).latent_dist
        recon = vae.decode(posterior.sample(generator if batch.device.type == "cpu" else None)).sample
        rec_loss = F.l1_loss(recon, batch)
        # LDM sums both terms per sample; dividing both by the pixel count keeps their ratio.
        loss = rec_loss + KL_WEIGHT * posterior.kl().mean() / batch[0].numel()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 25 == 0 or step == steps or budget.exhausted():
            report(context, step, steps, "train_vae", vae_l1=rec_loss.item())
        if budget.exhausted():
            break
    step = max(step, first)
    vae.eval().requires_grad_(False)
    round_trip = mask_round_trip_dice(vae, val_masks if val_masks is not None else masks[:32])
    log_metrics(context, f"VAE trained for {step} steps; mask round-trip Dice {round_trip:.4f}.",
                vae_steps=step, vae_mask_round_trip_dice=round_trip)
    return vae, round_trip, step, optimizer


@torch.no_grad()
def mask_round_trip_dice(vae, masks: torch.Tensor, batch_size: int = 32) -> float:
    """Encode/decode binary masks (posterior mean), threshold 0.5: SDSeg's accuracy ceiling."""
    scores = []
    for start in range(0, len(masks), batch_size):
        m = masks[start:start + batch_size]
        device = next(vae.parameters()).device
        x = vae.decode(vae.encode(as_rgb_mask(m).to(device)).latent_dist.mean).sample
        prob = ((x + 1) / 2).clamp(0, 1).mean(1).cpu()
        scores.append(dice_iou(prob > 0.5, m > 0)[0])
    return float(torch.cat(scores).mean()) if scores else float("nan")
