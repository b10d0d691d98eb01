"""Capturing attention probabilities from a diffusers UNet.

diffusers' default `AttnProcessor2_0` runs fused scaled-dot-product attention and never forms
the softmax matrix, so methods that read attention (ADZUS self-attention, DiffuGTS
cross-attention) swap in `AttentionCaptureProcessor` on exactly the layers they read. It
computes the same output as the default processor (explicit softmax instead of the fused
kernel, equal up to floating-point error) and hands the head-averaged probabilities to an
`AttentionStore`.

The store keeps running sums per (kind, resolution), because all 16 SD self-attention maps at
full precision would take ~8.6 GB per 512 px image while their per-resolution means are what
DiffSeg aggregates. Per-layer maps can be kept on request (for cross-attention of a few
layers, or debugging).

Typical use::

    with capture_attention(unet, kinds=("self",)) as store:
        unet(latents, t, encoder_hidden_states=context)
    maps = store.maps("self")          # {resolution s: (B, s*s, s*s) fp32 mean over layers}

Everything here imports torch lazily only through type hints; the module itself needs torch at
call time, never at import time of the methods package.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

if TYPE_CHECKING:  # pragma: no cover
    import torch

KINDS = ("self", "cross")
LayerFilter = Callable[[str], bool]
# On a CPU the (B·heads, N_q, N_k) scores of a 64×64 layer (268 MB in bf16 for SD v1) do not fit
# any cache, so scores, softmax, head sum and the value product each stream it through DRAM.
# Query chunks of about this many bytes of scores stay in L3 across those four passes: measured
# 1.8× faster than one chunk for an SD v1 64×64 layer in bf16 on an AMD EPYC (Zen 4), and still
# 1.6× in fp32 (docs/benchmarks-cpu.md). GPUs are left unchunked unless asked (launch overhead).
CPU_SCORES_CHUNK_BYTES = 8 * 2**20


def auto_query_chunk(query: "torch.Tensor", key: "torch.Tensor", score_bytes: int = 4) -> int | None:
    """Query rows per softmax chunk when none was requested: cache-sized on CPU, none elsewhere."""
    if query.device.type != "cpu":
        return None
    row_bytes = query.shape[0] * key.shape[1] * score_bytes
    return max(16, CPU_SCORES_CHUNK_BYTES // max(row_bytes, 1) // 16 * 16)


def token_resolution(num_query_tokens: int) -> int:
    """Side s of the square latent grid a layer's queries come from (s*s tokens)."""
    side = math.isqrt(num_query_tokens)
    if side * side != num_query_tokens:
        raise ValueError(
            f"attention layer has {num_query_tokens} query tokens, not a square grid; "
            "attention capture assumes square latents (letterbox the image to a square).")
    return side


@dataclass
class AttentionStore:
    """Running sums of head-averaged attention probabilities.

    sums[(kind, s)] is the fp32 sum over captured layers (and UNet calls) of the (B, s*s, N_k)
    head-mean maps at query resolution s; counts[(kind, s)] how many maps went in, so `mean`
    is the per-resolution layer average that DiffSeg uses (its `weights / 5` per resolution).
    With keep_layers=True each layer's own (summed over calls) map is also kept under its
    processor name. Set `enabled = False` to run the UNet without recording (e.g. during
    inversion steps) while the capture processors stay installed.
    """

    keep_layers: bool = False
    enabled: bool = True
    sums: dict[tuple[str, int], "torch.Tensor"] = field(default_factory=dict)
    counts: dict[tuple[str, int], int] = field(default_factory=dict)
    layers: dict[str, "torch.Tensor"] = field(default_factory=dict)
    layer_kinds: dict[str, tuple[str, int]] = field(default_factory=dict)

    def add(self, name: str, kind: str, head_mean: "torch.Tensor") -> None:
        """Accumulate one layer's (B, N_q, N_k) fp32 head-averaged probabilities."""
        if not self.enabled:
            return
        resolution = token_resolution(head_mean.shape[1])
        key = (kind, resolution)
        if key in self.sums:
            if self.sums[key].shape != head_mean.shape:
                raise ValueError(
                    f"{kind} attention at resolution {resolution}: shape {tuple(head_mean.shape)} "
                    f"differs from earlier {tuple(self.sums[key].shape)}; call reset() between "
                    "batches of different sizes or prompts of different lengths.")
            self.sums[key].add_(head_mean)
            self.counts[key] += 1
        else:
            self.sums[key] = head_mean.clone()
            self.counts[key] = 1
        if self.keep_layers:
            if name in self.layers:
                self.layers[name].add_(head_mean)
            else:
                self.layers[name] = head_mean.clone()
            self.layer_kinds[name] = key

    def reset(self) -> None:
        """Forget everything recorded (the processors stay installed)."""
        self.sums.clear()
        self.counts.clear()
        self.layers.clear()
        self.layer_kinds.clear()

    def resolutions(self, kind: str) -> list[int]:
        """Captured query resolutions of a kind, largest first (64, 32, 16, 8 for SD v1)."""
        return sorted((s for k, s in self.sums if k == kind), reverse=True)

    def mean(self, kind: str, resolution: int) -> "torch.Tensor":
        """Average over the captured maps of one kind and resolution: (B, s*s, N_k) fp32."""
        key = (kind, resolution)
        if key not in self.sums:
            raise KeyError(f"no {kind}-attention captured at resolution {resolution}; "
                           f"captured: {sorted(self.sums)}")
        return self.sums[key] / self.counts[key]

    def maps(self, kind: str) -> dict[int, "torch.Tensor"]:
        """{resolution: per-resolution mean map}, largest resolution first."""
        return {s: self.mean(kind, s) for s in self.resolutions(kind)}

    def layer_counts(self, kind: str) -> dict[int, int]:
        """How many maps were summed per resolution (layers × UNet calls)."""
        return {s: self.counts[(kind, s)] for s in self.resolutions(kind)}


class AttentionCaptureProcessor:
    """Attention processor equal to diffusers' AttnProcessor / AttnProcessor2_0 in output, that
    also reports the softmax probabilities (averaged over heads) to a store.

    The steps follow diffusers' AttnProcessor one for one (spatial_norm, 4-D input, mask,
    group_norm, norm_cross, q/k/v, optional q/k norms as in AttnProcessor2_0,
    get_attention_scores with its upcasting, output projection and dropout, residual,
    rescale), so swapping it in changes nothing but speed and memory.
    """

    def __init__(self, store: AttentionStore, name: str, query_chunk_size: int | None = None) -> None:
        self.store = store
        self.name = name
        self.query_chunk_size = query_chunk_size

    def __call__(self, attn: Any, hidden_states: "torch.Tensor",
                 encoder_hidden_states: "torch.Tensor | None" = None,
                 attention_mask: "torch.Tensor | None" = None,
                 temb: "torch.Tensor | None" = None, *args: Any, **kwargs: Any) -> "torch.Tensor":
        kind = "self" if encoder_hidden_states is None else "cross"
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)

        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)

        batch_size, sequence_length, _ = (
            hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape)
        attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)

        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)

        query = attn.head_to_batch_dim(query)
        key = attn.head_to_batch_dim(key)
        value = attn.head_to_batch_dim(value)
        # AttnProcessor2_0 normalises per head over head_dim; the (B*heads, N, d) layout gives the
        # same result because the norm acts on the last dimension only.
        if getattr(attn, "norm_q", None) is not None:
            query = attn.norm_q(query)
        if getattr(attn, "norm_k", None) is not None:
            key = attn.norm_k(key)

        hidden_states = self._attend(attn, query, key, value, attention_mask, batch_size, kind)
        hidden_states = attn.batch_to_head_dim(hidden_states)
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)

        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        hidden_states = hidden_states / attn.rescale_output_factor
        return hidden_states

    def _attend(self, attn: Any, query: "torch.Tensor", key: "torch.Tensor", value: "torch.Tensor",
                attention_mask: "torch.Tensor | None", batch_size: int, kind: str) -> "torch.Tensor":
        """softmax(q kᵀ) v per (batch·head), recording the head mean of the probabilities.

        With `query_chunk_size` the query rows are processed in chunks: softmax is row-wise, so
        the result is the same while the peak memory of the (B·heads, N_q, N_k) scores drops by
        N_q / chunk (SD 2.x at 768 px has 9216 × 9216 maps per head). Without a chunk size, CPUs
        use cache-sized chunks (`auto_query_chunk`).

        With a half-precision model (bf16/fp16) the scores and the softmax are computed in fp32
        from the half-precision q and k: the captured maps are the method's measurement (KL
        merging and prompt votes read them), a bf16 logit of magnitude 30 is off by up to 0.06,
        which moves a sharp softmax by 6 %, and the fused SDPA kernel that the uncaptured layers
        run also keeps its softmax in fp32. Only the product with v runs in the model's dtype.
        """
        import torch

        heads = attn.heads
        total = query.shape[1]
        upcast = query.dtype in (torch.float16, torch.bfloat16)
        if upcast:
            key = key.float()
            if attention_mask is not None:
                attention_mask = attention_mask.float()
        chunk = self.query_chunk_size or auto_query_chunk(query, key, 4 if upcast else query.element_size()) or total
        outputs = []
        head_means = []
        for start in range(0, total, chunk):
            stop = min(start + chunk, total)
            mask = attention_mask
            if mask is not None and mask.shape[1] != 1:
                mask = mask[:, start:stop]
            rows = query[:, start:stop]
            probs = attn.get_attention_scores(rows.float() if upcast else rows, key, mask)
            if self.store.enabled:
                by_head = probs.view(batch_size, heads, *probs.shape[1:])
                # Sum with an fp32 accumulator: no fp32 copy of all heads is formed.
                head_means.append(torch.sum(by_head, dim=1, dtype=torch.float32).div_(heads))
            outputs.append(torch.bmm(probs.to(value.dtype), value))
            del probs
        if head_means:
            self.store.add(self.name, kind, head_means[0] if len(head_means) == 1 else torch.cat(head_means, 1))
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs, 1)


def attention_layers(unet: Any) -> dict[str, tuple[str, Any]]:
    """{processor name: (kind, Attention module)} for every attention layer of a diffusers model.

    The kind comes from the module's `is_cross_attention` (set from cross_attention_dim at
    construction): "cross" for `attn2` layers that read the text, "self" for `attn1`. Processor
    names are those of `unet.attn_processors`, e.g.
    "down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor".
    """
    layers: dict[str, tuple[str, Any]] = {}
    for module_name, module in unet.named_modules():
        if hasattr(module, "set_processor") and hasattr(module, "get_processor"):
            kind = "cross" if getattr(module, "is_cross_attention", False) else "self"
            layers[f"{module_name}.processor"] = (kind, module)
    return layers


@contextmanager
def capture_attention(unet: Any, kinds: Iterable[str] = KINDS, layer_filter: LayerFilter | None = None,
                      keep_layers: bool = False, store: AttentionStore | None = None,
                      query_chunk_size: int | None = None) -> Iterator[AttentionStore]:
    """Record attention of the chosen layers while the block runs.

    kinds: "self" and/or "cross". layer_filter: optional predicate on processor names (e.g.
    ``lambda name: name.startswith("up_blocks")``) to narrow further. Only the selected layers
    get a capture processor; every other layer keeps its original (fused SDPA) processor. The
    original processors are put back on exit, also when the block raises.
    query_chunk_size: compute each layer's softmax for this many query tokens at a time to bound
    peak memory (same result; see `AttentionCaptureProcessor._attend`).
    """
    kinds = tuple(kinds)
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown attention kinds {sorted(unknown)}; use {KINDS}")
    store = store if store is not None else AttentionStore(keep_layers=keep_layers)
    originals: dict[str, tuple[Any, Any]] = {}
    try:
        for name, (kind, module) in attention_layers(unet).items():
            if kind not in kinds or (layer_filter is not None and not layer_filter(name)):
                continue
            originals[name] = (module, module.get_processor())
            module.set_processor(AttentionCaptureProcessor(store, name, query_chunk_size))
        yield store
    finally:
        for module, processor in originals.values():
            module.set_processor(processor)
