"""The small VAE of the from-scratch path, trained on the training images AND masks.

SDSeg freezes its VAE and relies on it to encode/decode binary masks (the mask round trip Dice
is the ceiling of SDSeg's Dice); the conditioner starts from the same encoder, so the VAE must
also have seen images. Loss: L1 reconstruction + a small KL term (LDM's KL-f8 uses 1e-6 KL plus
LPIPS and a patch GAN; those buy photographic detail that masks do not need, and cost CPU time).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

from ...contract.events import JobContext
from ...training.budget import TimeBudget
from ...training.loop import batches, dice_iou, log_metrics, random_flips, report

KL_WEIGHT = 1e-6


def as_rgb_mask(masks: torch.Tensor) -> torch.Tensor:
    """(B, S, S) {0,1} → (B, 3, S, S) in {-1, +1}: SDSeg's mask representation."""
    return masks.float().unsqueeze(1).expand(-1, 3, -1, -1) * 2.0 - 1.0


def train_vae(config: dict[str, Any], images: torch.Tensor, masks: torch.Tensor, context: JobContext,
              steps: int, budget: TimeBudget, batch_size: int = 16, lr: float = 1e-3,
              seed: int = 0, val_masks: torch.Tensor | None = None, device: torch.device | str = "cpu"):
    """Train an AutoencoderKL on half-image, half-mask batches until `steps` or the stage's
    `budget` ends; returns (vae, mask round-trip Dice, steps done)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    vae = AutoencoderKL(**config).to(device)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    half = max(1, batch_size // 2)
    order = batches(len(images), half, generator)
    vae.train()
    step = 0
    report(context, 0, steps, "train_vae")
    for step in range(1, steps + 1):
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
    vae.eval().requires_grad_(False)
    round_trip = mask_round_trip_dice(vae, val_masks if val_masks is not None else masks[:32])
    log_metrics(context, f"VAE trained for {step} steps; mask round-trip Dice {round_trip:.4f}.",
                vae_steps=step, vae_mask_round_trip_dice=round_trip)
    return vae, round_trip, step


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
