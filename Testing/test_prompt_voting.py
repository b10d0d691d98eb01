"""Foreground selection: prompt token positions, token attention, voting, border rule."""

from __future__ import annotations

import pytest
import torch
from transformers import CLIPTokenizer

from DiffusionSegLib.methods.adzus.prompt_attention import (
    compact_segments,
    format_context,
    prompt_token_positions,
    token_attention,
)


@pytest.fixture(scope="module")
def tokenizer(tiny_sd_path):
    return CLIPTokenizer.from_pretrained(tiny_sd_path / "tokenizer")


def test_prompt_positions_single_token_words(tokenizer):
    text = format_context("an image of a {prompt}", "white blood cell")
    assert text == "an image of a white blood cell"
    assert prompt_token_positions(tokenizer, text, "white blood cell") == [5, 6, 7]
    assert prompt_token_positions(tokenizer, "skin lesion", "skin lesion") == [1, 2]
    assert prompt_token_positions(tokenizer, "skin lesion", "lesion") == [2]
    # punctuation splits a word into several tokens: all pieces count
    pieces = len(tokenizer("x-ray", add_special_tokens=False).input_ids)
    assert pieces > 1
    assert prompt_token_positions(tokenizer, "a chest x-ray", "x-ray") == list(range(3, 3 + pieces))


def test_prompt_positions_multi_token_word(tokenizer):
    # "leukocyte" is not in the tiny vocabulary, so it becomes several sub-word tokens.
    pieces = tokenizer("leukocyte", add_special_tokens=False).input_ids
    assert len(pieces) > 1
    positions = prompt_token_positions(tokenizer, "an image of a leukocyte", "leukocyte")
    assert positions == list(range(5, 5 + len(pieces)))


def test_prompt_positions_every_occurrence_and_missing(tokenizer):
    assert prompt_token_positions(tokenizer, "lesion and lesion", "lesion") == [1, 3]
    with pytest.raises(ValueError, match="no tokens"):
        prompt_token_positions(tokenizer, "a chest x-ray", "liver")
    with pytest.raises(ValueError, match="must contain"):
        format_context("a photo", "liver")


def test_token_attention_normalises_over_tokens_and_weights_resolutions_by_their_side():
    fine = torch.zeros(1, 4, 5)  # 2×2 grid, 5 tokens
    fine[..., 0] = 1.0
    fine[0, 0, 0], fine[0, 0, 2] = 0.0, 1.0  # the top-left query attends to token 2 only
    coarse = torch.full((1, 1, 5), 0.2)  # 1×1 grid, uniform over tokens
    result = token_attention({2: fine, 1: coarse * 3.0}, [2], image_size=2)  # ×3: normalisation undoes it
    # DiffSeg's resolution weights: side 2 → 2/3, side 1 → 1/3
    expected = 2 / 3 * torch.tensor([[1.0, 0.0], [0.0, 0.0]]) + 1 / 3 * 0.2
    torch.testing.assert_close(result[0], expected, atol=1e-6, rtol=0)


def test_compact_segments_renumbers_valid_ids():
    segments = torch.tensor([[7, 7, 3], [3, 9, 9], [5, 5, 5]])
    valid = torch.tensor([[True] * 3, [True] * 3, [False] * 3])
    compact, count = compact_segments(segments, valid)
    assert count == 3
    assert compact.tolist() == [[2, 2, 1], [1, 3, 3], [0, 0, 0]]
