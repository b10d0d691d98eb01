"""The paired prompts of DiffuGTS: the user's anomaly prompt ("liver tumour") and a normal prompt
("healthy liver") that describes what the region should look like without the tumour.

Kept free of torch: the method validates prompts before loading any model, so a typo fails in
milliseconds with a clear message instead of after a minute of model loading.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Sequence

from ...contract.choices import data_file
from ...contract.errors import InvalidParameter

NORMAL_TEMPLATE = "healthy {organ}"
ANOMALY_WORDS_FILE = data_file("anomaly_words.json")


@dataclass(frozen=True)
class PromptPair:
    anomaly: str
    normal: str


def resolve_prompts(prompt: str | None, organ: str = "", normal_prompt: str = "") -> PromptPair:
    """Validate the anomaly prompt and build the normal one (explicit, or "healthy <organ>")."""
    anomaly = " ".join((prompt or "").split())
    if not anomaly:
        raise InvalidParameter(
            "DiffuGTS needs a text prompt naming the abnormality to segment, e.g. 'liver tumour'.",
            hint="Pass --prompt 'brain tumour' (or type it in the Slicer panel).")
    normal = " ".join((normal_prompt or "").split())
    organ = " ".join((organ or "").split()) or (organ_from_prompt(anomaly) if not normal else "")
    if not normal and organ:
        normal = NORMAL_TEMPLATE.format(organ=organ)
    if not normal:
        raise InvalidParameter(
            f"DiffuGTS could not tell the organ from the prompt '{anomaly}': once the words naming the "
            "abnormality are removed, nothing is left to build the normal prompt ('healthy <organ>') from.",
            hint="Name the organ in the prompt ('brain tumour'), set the 'organ' parameter (organ=liver gives "
                 "'healthy liver'), or give 'normal_prompt' explicitly.")
    if normal.lower() == anomaly.lower():
        raise InvalidParameter(
            f"The normal prompt must differ from the anomaly prompt; both are '{anomaly}'.",
            hint="Use e.g. prompt='liver tumour' with organ='liver'.")
    return PromptPair(anomaly=anomaly, normal=normal)


@lru_cache(maxsize=1)
def anomaly_vocabulary() -> dict:
    """The anomaly-word table (data/anomaly_words.json), read once."""
    return json.loads(ANOMALY_WORDS_FILE.read_text(encoding="utf-8"))


def names_an_anomaly(prompt: str) -> bool:
    """Whether the prompt names an abnormality from the table ('liver tumour' yes, 'white blood
    cell' no): DiffuGTS contrasts it with a healthy counterpart, which a normal structure lacks."""
    table = anomaly_vocabulary()
    text = " " + " ".join(re.split(r"[\s,;/]+", prompt.lower())) + " "
    words = set(text.split())
    return any(" " + phrase + " " in text for phrase in table.get("phrases", [])) or \
        bool(words & set(table["anomaly_words"]))


def no_anomaly_warning(pair: PromptPair) -> str | None:
    """The warning for a prompt that names no abnormality, or None."""
    if names_an_anomaly(pair.anomaly):
        return None
    return (f"The prompt '{pair.anomaly}' names no abnormality (tumour, lesion, metastasis, …). DiffuGTS marks where "
            f"the image differs from the normal prompt '{pair.normal}', which for a normal structure is not a "
            f"meaningful contrast. To segment a normal structure use ADZUS (--method adzus); for DiffuGTS name "
            f"the abnormality, e.g. 'liver tumour'.")


def organ_from_prompt(prompt: str) -> str:
    """The organ named in an anomaly prompt: its words minus the abnormality and filler words
    ('brain tumour' → 'brain', 'hepatic lesion' → 'liver'); '' when nothing is left."""
    table = anomaly_vocabulary()
    text = " " + prompt.lower() + " "
    for phrase in table.get("phrases", []):
        text = text.replace(" " + phrase + " ", " ")
    drop = set(table["anomaly_words"]) | set(table.get("filler_words", []))
    adjectives = table.get("organ_adjectives", {})
    words = [w for w in re.split(r"[\s,;/]+", text) if w]
    kept = [adjectives.get(w, w) for w in words if w not in drop]
    return " ".join(kept)


def word_token_positions(tokenizer: Any, text: str) -> list[int]:
    """Positions of the prompt's own tokens in the padded 77-token sequence (BOS at 0, EOS after).

    Raises InvalidParameter when the text has no tokens left (e.g. only punctuation the
    tokenizer drops) - an empty token set would give an all-zero attention map silently."""
    ids = tokenizer(text, truncation=True, max_length=tokenizer.model_max_length).input_ids
    positions = [i for i, token in enumerate(ids)
                 if token not in (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)]
    if not positions:
        raise InvalidParameter(f"The prompt '{text}' has no usable words for the text encoder.")
    return positions


def contrast_positions(tokenizer: Any, pair: PromptPair) -> tuple[list[int], list[int]]:
    """Token positions whose attention the anomaly map contrasts: anomaly vs normal prompt.

    Words that occur in both prompts ("liver" in "liver tumour" / "healthy liver") attend to the
    organ in both and would add the same map on each side, so they are left out whenever each
    prompt still has a word of its own."""
    ids_a = tokenizer(pair.anomaly, truncation=True, max_length=tokenizer.model_max_length).input_ids
    ids_n = tokenizer(pair.normal, truncation=True, max_length=tokenizer.model_max_length).input_ids
    pos_a = word_token_positions(tokenizer, pair.anomaly)
    pos_n = word_token_positions(tokenizer, pair.normal)
    own_a = [p for p in pos_a if ids_a[p] not in {ids_n[q] for q in pos_n}]
    own_n = [p for p in pos_n if ids_n[p] not in {ids_a[q] for q in pos_a}]
    if own_a and own_n:
        return own_a, own_n
    return pos_a, pos_n


def pooled_positions(hidden: Sequence[Any], positions: Sequence[int]) -> Any:
    """Mean of a (77, D) embedding over the given token positions (the adapter's text vector)."""
    return hidden[list(positions)].mean(dim=0)
