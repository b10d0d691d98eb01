"""Coded terminology for result segments: the SNOMED CT category, type and region of a prompt.

One table (data/terminology.json) serves both sides: the Slicer module tags its segments with it
(through api.py) and the DICOM SEG writer codes its segment descriptions with it, so a segment
named "liver tumour" is the same coded concept in Slicer and in the PACS. A prompt that is no
standard term still needs codes in a SEG: it gets the generic "Morphologically Altered
Structure" when it names an abnormality (data/anomaly_words.json), else "Tissue".
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..contract.choices import data_file

TERMINOLOGY_FILE: Path = data_file("terminology.json")
_ARTICLES = {"a", "an", "the", "all", "any", "every"}

Code = tuple[str, str, str]   # (coding scheme designator, code value, code meaning)


def normalize_term(text: str) -> str:
    """Lower case, punctuation and articles removed: 'The Liver,' → 'liver'."""
    words = re.sub(r"[^\w\s-]", " ", (text or "").lower()).split()
    return " ".join(w for w in words if w not in _ARTICLES)


@lru_cache(maxsize=1)
def terminology_data() -> dict:
    """The table as stored: context names, categories, terms with synonyms and colours, palette."""
    return json.loads(TERMINOLOGY_FILE.read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def _index() -> dict[str, dict]:
    index: dict[str, dict] = {}
    for term in terminology_data()["terms"]:
        for key in [term["name"], *term.get("synonyms", [])]:
            index.setdefault(normalize_term(key), term)
    return index


def match_term(name: str) -> dict | None:
    """The table's entry for a segment name (a term or one of its synonyms), else None."""
    return _index().get(normalize_term(name))


@dataclass(frozen=True)
class SegmentCodes:
    category: Code
    type: Code
    region: Code | None = None
    color: tuple[int, int, int] | None = None   # 0..255, the term's recommended colour
    standard: bool = True                       # False: the generic fallback for a free-text prompt


@lru_cache(maxsize=1)
def _anomaly_words() -> frozenset[str]:
    data = json.loads(data_file("anomaly_words.json").read_text(encoding="utf-8"))
    return frozenset(data["anomaly_words"]) | frozenset(data.get("phrases", ()))


def segment_codes(name: str) -> SegmentCodes:
    """Codes for a segment: the standard term's, or the generic category for a free-text prompt."""
    data = terminology_data()
    term = match_term(name)
    if term is not None:
        return SegmentCodes(tuple(data["categories"][term["category"]]), tuple(term["type"]),
                            tuple(term["region"]) if term.get("region") else None, tuple(term["color"]))
    text = normalize_term(name)
    altered = any(word in _anomaly_words() for word in text.split()) or \
        any(" " in phrase and phrase in text for phrase in _anomaly_words())
    category = tuple(data["categories"]["altered" if altered else "tissue"])
    return SegmentCodes(category, category, None, None, standard=False)
