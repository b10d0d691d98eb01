"""Attention capture: the capture processor is transparent, records correct probabilities, and
touches only the requested layers."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.attention_processor import (
    Attention,
    AttnProcessor,
    AttnProcessor2_0,
)

from DiffusionSegLib.diffusion.attention import (
    AttentionCaptureProcessor,
    AttentionStore,
    attention_layers,
    capture_attention,
    token_resolution,
)
from DiffusionSegLib.models.stable_diffusion import load_stable_diffusion


@pytest.fixture(scope="module")
def tiny(tiny_sd_path):
    return load_stable_diffusion(str(tiny_sd_path), "cpu", components=("unet", "text_encoder", "tokenizer"))


def _unet_inputs(parts, batch=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    size = parts.latent_size
    latents = torch.randn(batch, 4, size, size, generator=generator)
    context = parts.encode_prompt(["a skin lesion", "white blood cell"][:batch])
    return latents, torch.tensor(300), context


def test_capture_is_transparent_and_records_sd_layout(tiny):
    latents, t, context = _unet_inputs(tiny)
    unet = tiny.unet
    assert all(isinstance(p, AttnProcessor2_0) for p in unet.attn_processors.values())
    with torch.no_grad():
        reference = unet(latents, t, encoder_hidden_states=context).sample
        with capture_attention(unet) as store:
            captured = unet(latents, t, encoder_hidden_states=context).sample
    assert (captured - reference).abs().max().item() < 1e-5
    assert store.layer_counts("self") == {8: 5, 4: 5, 2: 5, 1: 1}
    assert store.layer_counts("cross") == {8: 5, 4: 5, 2: 5, 1: 1}
    for s, amap in store.maps("self").items():
        assert amap.shape == (2, s * s, s * s) and amap.dtype == torch.float32
        torch.testing.assert_close(amap.sum(-1), torch.ones(2, s * s), atol=1e-5, rtol=0)
        assert amap.min() >= 0
    for s, amap in store.maps("cross").items():
        assert amap.shape == (2, s * s, 77)
        torch.testing.assert_close(amap.sum(-1), torch.ones(2, s * s), atol=1e-5, rtol=0)


def test_capture_processor_equals_default_processor_on_attention_variants():
    """Every optional branch of diffusers' processor (spatial_norm, group_norm, 4-D input,
    norm_cross, q/k norms, residual, rescale, upcast) gives the default output."""
    torch.manual_seed(0)
    variants = [
        dict(query_dim=16, heads=2, dim_head=8),
        dict(query_dim=16, heads=4, dim_head=4, cross_attention_dim=12, cross_attention_norm="layer_norm"),
        dict(query_dim=16, heads=2, dim_head=8, norm_num_groups=4, residual_connection=True,
             rescale_output_factor=2.0, upcast_attention=True, upcast_softmax=True),
        dict(query_dim=32, heads=2, dim_head=8, spatial_norm_dim=6),
        dict(query_dim=16, heads=2, dim_head=8, qk_norm="layer_norm"),
    ]
    for options in variants:
        attn = Attention(**options).eval()
        cross = options.get("cross_attention_dim")
        spatial = options.get("spatial_norm_dim")
        channels = options["query_dim"]
        hidden = torch.randn(2, channels, 4, 4) if spatial or options.get("norm_num_groups") \
            else torch.randn(2, 16, channels)
        encoder = torch.randn(2, 5, cross) if cross else None
        temb = torch.randn(2, 6, 2, 2) if spatial else None
        kwargs = {"temb": temb} if spatial else {}
        outputs = []
        # The legacy AttnProcessor ignores q/k norms; AttnProcessor2_0 (the default) applies them.
        defaults = (AttnProcessor2_0(),) if "qk_norm" in options else (AttnProcessor(), AttnProcessor2_0())
        for processor in defaults:
            attn.set_processor(processor)
            outputs.append(attn(hidden, encoder_hidden_states=encoder, **kwargs))
        store = AttentionStore()
        attn.set_processor(AttentionCaptureProcessor(store, "layer"))
        captured = attn(hidden, encoder_hidden_states=encoder, **kwargs)
        for output in outputs:
            assert (captured - output).abs().max().item() < 1e-5, options
        kind = "cross" if cross else "self"
        (resolution,) = store.resolutions(kind)
        assert resolution == 4
        probs = store.mean(kind, 4)
        torch.testing.assert_close(probs.sum(-1), torch.ones(2, 16), atol=1e-5, rtol=0)


def test_head_average_matches_explicit_softmax():
    torch.manual_seed(1)
    attn = Attention(query_dim=8, heads=2, dim_head=4).eval()
    hidden = torch.randn(1, 4, 8)
    store = AttentionStore()
    attn.set_processor(AttentionCaptureProcessor(store, "layer"))
    attn(hidden)
    q = attn.to_q(hidden).view(1, 4, 2, 4).transpose(1, 2)
    k = attn.to_k(hidden).view(1, 4, 2, 4).transpose(1, 2)
    expected = torch.softmax(q @ k.transpose(-1, -2) / 2.0, dim=-1).mean(1)
    torch.testing.assert_close(store.mean("self", 2), expected, atol=1e-6, rtol=0)


def test_only_requested_layers_change_and_are_restored(tiny):
    unet = tiny.unet
    before = dict(unet.attn_processors)
    up_self = lambda name: name.startswith("up_blocks")  # noqa: E731
    latents, t, context = _unet_inputs(tiny, batch=1)
    with torch.no_grad(), capture_attention(unet, kinds=("self",), layer_filter=up_self,
                                            keep_layers=True) as store:
        during = unet.attn_processors
        unet(latents, t, encoder_hidden_states=context)
    changed = {name for name in before if during[name] is not before[name]}
    expected = {name for name, (kind, _) in attention_layers(unet).items()
                if kind == "self" and name.startswith("up_blocks")}
    assert changed == expected and len(expected) == 9
    assert all(isinstance(during[name], AttentionCaptureProcessor) for name in changed)
    assert store.resolutions("cross") == []
    assert store.layer_counts("self") == {8: 3, 4: 3, 2: 3}
    assert set(store.layers) == expected
    assert all(after is before[name] for name, after in unet.attn_processors.items())


def test_processors_restored_after_exception(tiny):
    unet = tiny.unet
    before = dict(unet.attn_processors)
    with pytest.raises(RuntimeError, match="boom"):
        with capture_attention(unet):
            raise RuntimeError("boom")
    assert all(after is before[name] for name, after in unet.attn_processors.items())


def test_store_accumulates_calls_and_can_pause(tiny):
    latents, t, context = _unet_inputs(tiny, batch=1)
    with torch.no_grad(), capture_attention(tiny.unet, kinds=("self",)) as store:
        tiny.unet(latents, t, encoder_hidden_states=context)
        first = store.mean("self", 8).clone()
        store.enabled = False
        tiny.unet(latents + 1.0, t, encoder_hidden_states=context)
        assert store.layer_counts("self")[8] == 5
        store.enabled = True
        tiny.unet(latents, t, encoder_hidden_states=context)
        assert store.layer_counts("self")[8] == 10
        torch.testing.assert_close(store.mean("self", 8), first, atol=1e-6, rtol=0)


def test_resolution_requires_square_token_grid():
    assert token_resolution(4096) == 64 and token_resolution(9216) == 96
    with pytest.raises(ValueError, match="square"):
        token_resolution(4096 + 64)


def test_unknown_kind_rejected(tiny):
    with pytest.raises(ValueError, match="unknown attention kinds"):
        with capture_attention(tiny.unet, kinds=("temporal",)):
            pass


@pytest.mark.parametrize("mask_shape", [None, (2, 1, 5), (2, 16, 5)])
def test_query_chunking_changes_nothing(mask_shape):
    torch.manual_seed(2)
    attn = Attention(query_dim=16, heads=2, dim_head=8, cross_attention_dim=12).eval()
    hidden = torch.randn(2, 16, 16)
    encoder = torch.randn(2, 5, 12)
    mask = None if mask_shape is None else torch.randn(mask_shape)
    attn.set_processor(AttnProcessor())
    reference = attn(hidden, encoder_hidden_states=encoder, attention_mask=mask)
    results = []
    for chunk in (None, 5):
        store = AttentionStore()
        attn.set_processor(AttentionCaptureProcessor(store, "layer", query_chunk_size=chunk))
        output = attn(hidden, encoder_hidden_states=encoder, attention_mask=mask)
        assert (output - reference).abs().max().item() < 1e-5
        results.append(store.mean("cross", 4))
    torch.testing.assert_close(results[0], results[1], atol=1e-7, rtol=0)


def test_chunked_capture_on_the_unet(tiny):
    latents, t, context = _unet_inputs(tiny, batch=1)
    with torch.no_grad():
        with capture_attention(tiny.unet, kinds=("self",)) as whole:
            tiny.unet(latents, t, encoder_hidden_states=context)
        with capture_attention(tiny.unet, kinds=("self",), query_chunk_size=7) as chunked:
            tiny.unet(latents, t, encoder_hidden_states=context)
    for s in (8, 4, 2, 1):
        torch.testing.assert_close(chunked.mean("self", s), whole.mean("self", s), atol=1e-7, rtol=0)
