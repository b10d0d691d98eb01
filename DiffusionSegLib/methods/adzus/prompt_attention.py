"""The prompt's attention per pixel and per proposal: the evidence ADZUS chooses foreground by.

ADZUS's "prompt-driven decoding" is not specified beyond its name, so this module implements
the closest published mechanism, DiffSeg's semantic "mean" voting, with the user's prompt in
place of BLIP nouns:

1. The prompt is placed in a template ("{prompt}", "a dermoscopy image of a {prompt}") that is
   the text context of the attention pass; the prompt's token positions inside that context
   are found by sub-sequence search of its token ids, so multi-token words count fully.
2. Cross-attention of those tokens is upsampled bilinearly to the image, normalised over all
   77 tokens per pixel, summed over the prompt's tokens and averaged over resolutions with
   DiffSeg's resolution-proportional weights (its semantic extension weighted them equally;
   see `token_attention` for why not here).
3. Each segment's evidence is its median prompt attention (an absolute share of the pixel's
   attention, in [0, 1]) over valid pixels — the median, so that attention spilling over a
   segment's edge from a strong neighbour does not count; each slice also records its
   background level (`decision.selection.background_level`). The decision - which segments, on
   which slices, with the volume-level step - is made from these numbers by
   `decision/selection.py` (numpy only), so `reselect` and the Slicer process can redo it.
   Nothing forces a segment per slice: a slice, or the whole volume, may be empty.

Without a prompt the border rule applies (`selection.border_decision`): the valid region's border
(pixels next to padding or the image edge) is mostly background in medical crops centred on the
target, so segments holding at least `border_threshold` of the border (and always the one holding
most) are background and the rest foreground.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:  # pragma: no cover
    import torch



def format_context(template: str, prompt: str) -> str:
    """The text context of the attention pass: the prompt placed in its template."""
    if "{prompt}" not in template:
        raise ValueError(f"prompt template {template!r} must contain '{{prompt}}'")
    return template.replace("{prompt}", prompt.strip())


def prompt_token_positions(tokenizer: Any, context_text: str, prompt: str) -> list[int]:
    """Positions of the prompt's tokens in the tokenised context (index 0 is the BOS token).

    Every occurrence of the prompt's full token sequence counts; if it never occurs whole (a
    tokenizer that merges across the template boundary), each word is searched separately.
    Raises ValueError when nothing is found, e.g. when truncation at 77 tokens cut it off.
    """
    max_length = getattr(tokenizer, "model_max_length", 77)
    context_ids = tokenizer(context_text, truncation=True, max_length=max_length).input_ids

    def occurrences(ids: Sequence[int]) -> list[int]:
        found: list[int] = []
        n = len(ids)
        for start in range(1, len(context_ids) - n + 1):
            if n and list(context_ids[start:start + n]) == list(ids):
                found.extend(range(start, start + n))
        return found

    def ids_of(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False).input_ids)

    positions = occurrences(ids_of(prompt.strip()))
    if not positions:
        for word in prompt.split():
            positions.extend(occurrences(ids_of(word)))
    if not positions:
        raise ValueError(f"the prompt {prompt!r} has no tokens inside the context {context_text!r} "
                         f"(at most {max_length} tokens are used)")
    return sorted(set(positions))


def token_attention(cross_maps: dict[int, "torch.Tensor"], positions: Sequence[int],
                    image_size: int) -> "torch.Tensor":
    """Prompt attention per image pixel, (B, S, S).

    cross_maps: {s: (B, s², N_tokens)} layer-averaged cross-attention. Normalising over tokens
    after bilinear upsampling equals upsampling the selected tokens and the token sum
    separately and dividing (upsampling is linear), which avoids a (B, 77, S, S) tensor.
    Resolutions are weighted in proportion to their side, as DiffSeg weights self-attention
    (DiffSeg's BLIP-noun semantics weighted them equally): the coarse layers' attention spills
    over a whole neighbourhood, and equal weights let it lift the tissue around a large target
    to 3.6× the background on the planted model (1.3× with these weights).
    """
    import torch
    import torch.nn.functional as F

    from .diffseg import resolution_weights

    if not cross_maps:
        raise ValueError("no cross-attention maps were captured")
    index = torch.as_tensor(list(positions), dtype=torch.long)
    weights = resolution_weights(list(cross_maps))
    total = None
    for s, amap in cross_maps.items():
        amap = amap.float()
        batch = amap.shape[0]
        selected = amap[..., index.to(amap.device)].sum(-1)
        token_sum = amap.sum(-1)
        pair = torch.stack([selected, token_sum], dim=1).reshape(batch, 2, s, s)
        pair = F.interpolate(pair, size=(image_size, image_size), mode="bilinear", align_corners=False)
        normalised = weights[s] * pair[:, 0] / pair[:, 1].clamp_min(1e-12)
        total = normalised if total is None else total + normalised
    return total


def compact_segments(segments: "torch.Tensor", valid: "torch.Tensor") -> tuple["torch.Tensor", int]:
    """Segment ids renumbered 1..K over the valid pixels (in order of first id), 0 on padding."""
    import torch

    present = torch.unique(segments[valid])
    lookup = torch.zeros(int(segments.max()) + 1, dtype=torch.long, device=segments.device)
    lookup[present.long()] = torch.arange(1, present.numel() + 1, device=segments.device)
    compact = lookup[segments.long()]
    compact[~valid] = 0
    return compact, int(present.numel())
