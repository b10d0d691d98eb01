"""Attention capture on the real SD v1 UNet architecture (random weights, 512 px): 16 self
maps at {64: 5, 32: 5, 16: 5, 8: 1}, cross maps of width 77, output unchanged; and the DiffSeg
post-processing at L = 64. Slow on a CPU (a full 860M-parameter UNet pass)."""

from __future__ import annotations

import pytest
import torch

from DiffusionSegLib.diffusion.attention import capture_attention
from DiffusionSegLib.methods.adzus.diffseg import (
    aggregate_attention,
    anchor_indices,
    merge_by_kl,
    non_maximum_suppression,
)

pytestmark = pytest.mark.slow


def test_sd_v1_capture_layout_transparency_and_post_processing():
    from diffusers import UNet2DConditionModel

    from DiffusionSegLib.models.architectures import architecture

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**architecture("sd-v1")["unet"]).eval()
    latents = torch.randn(1, 4, 64, 64) * 0.5
    context = torch.randn(1, 77, 768)
    t = torch.tensor(300)
    with torch.no_grad():
        reference = unet(latents, t, encoder_hidden_states=context).sample
        with capture_attention(unet) as store:
            captured = unet(latents, t, encoder_hidden_states=context).sample
    assert (captured - reference).abs().max().item() < 1e-4 * max(1.0, reference.abs().max().item())
    assert store.layer_counts("self") == {64: 5, 32: 5, 16: 5, 8: 1}
    assert store.layer_counts("cross") == {64: 5, 32: 5, 16: 5, 8: 1}
    assert all(m.shape[-1] == 77 for m in store.maps("cross").values())
    fused = aggregate_attention(store.maps("self"))
    assert fused.shape == (1, 4096, 4096)
    torch.testing.assert_close(fused.sum(-1), torch.ones(1, 4096), atol=1e-4, rtol=0)
    (proposals,) = merge_by_kl(fused, [1.1] * 3, anchor_indices(64, 16))
    labels = non_maximum_suppression(proposals, 512)
    assert labels.shape == (512, 512) and int(labels.max()) < proposals.shape[0] <= 256
