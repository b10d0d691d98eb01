"""Several prompt pairs in one `train diffugts` run: a small JSON manifest of
{prompt, normal_prompt, labels}, one of them optionally held out (the unseen-prompt setting the
paper calls open-vocabulary). Free of torch: a bad manifest fails before any model is loaded."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ...contract.errors import InvalidRequest
from .prompts import PromptPair, resolve_prompts


@dataclass(frozen=True)
class LabelledPair:
    prompts: PromptPair
    labels: tuple[float, ...]  # label values of the mask volumes that this prompt names


def read_manifest(path: str | Path) -> list[LabelledPair]:
    """The manifest's pairs, each checked (prompts resolved as at inference, labels non-empty)."""
    try:
        data = json.loads(Path(path).expanduser().read_text(encoding="utf-8"))
        entries = data["pairs"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InvalidRequest(f"--manifest {path}: not a readable prompt manifest ({error}).",
                             hint='Expected {"pairs": [{"prompt": ..., "normal_prompt": ..., "labels": [...]}]}.')
    pairs = []
    for entry in entries:
        labels = tuple(float(v) for v in entry.get("labels") or [])
        if not labels:
            raise InvalidRequest(f"--manifest {path}: the pair '{entry.get('prompt')}' names no label values.")
        pairs.append(LabelledPair(resolve_prompts(entry.get("prompt"), entry.get("organ", ""),
                                                  entry.get("normal_prompt", "")), labels))
    if not pairs:
        raise InvalidRequest(f"--manifest {path} holds no prompt pairs.")
    return pairs


def split_pairs(pairs: list[LabelledPair], main: str, hold_out: str | None
                ) -> tuple[LabelledPair, list[LabelledPair], LabelledPair | None]:
    """(the run's main pair, the pairs the adapter trains on, the held-out pair or None)."""
    by_prompt = {p.prompts.anomaly.lower(): p for p in pairs}
    if main.lower() not in by_prompt:
        raise InvalidRequest(f"--prompt '{main}' is not in the manifest ({', '.join(by_prompt)}).")
    held = None
    if hold_out:
        if hold_out.lower() not in by_prompt:
            raise InvalidRequest(f"--hold-out '{hold_out}' is not in the manifest ({', '.join(by_prompt)}).")
        if hold_out.lower() == main.lower():
            raise InvalidRequest("--hold-out must differ from --prompt: the main prompt is trained on.")
        held = by_prompt[hold_out.lower()]
    training = [p for p in pairs if p is not held]
    return by_prompt[main.lower()], training, held


def class_values(pairs: list[LabelledPair]) -> list[float]:
    """Every label value any pair names, sorted: the loader maps them to classes 1..K."""
    return sorted({v for p in pairs for v in p.labels})
