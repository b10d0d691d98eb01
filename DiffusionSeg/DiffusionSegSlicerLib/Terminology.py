"""Standard terminology and colours for result segments.

The table is the backend's (DiffusionSegLib/data/terminology.json, read through api.py): the DICOM
SEG writer codes its segments from the same table, so a segment means one coded concept here and
in a PACS.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import slicer

from DiffusionSegLib.api import TERMINOLOGY_FILE, normalize_term


def normalizeTerm(text: str) -> str:
    """Lower case, without punctuation or articles (the backend's rule, so both sides agree)."""
    return normalize_term(text)


@dataclass(frozen=True)
class TermMatch:
    name: str
    entry: str            # serialised Slicer terminology entry (segment tag "TerminologyEntry")
    color: tuple[float, float, float]   # 0..1


class TerminologyTable:
    def __init__(self, path: str | Path = TERMINOLOGY_FILE):
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        self.context = data["context"]
        self.anatomicContext = data["anatomicContext"]
        self.categories = data["categories"]
        self.palette = [tuple(c / 255.0 for c in rgb) for rgb in data["palette"]]
        self._terms = data["terms"]
        self._index = {}
        for term in self._terms:
            for key in [term["name"], *term.get("synonyms", [])]:
                self._index.setdefault(normalizeTerm(key), term)

    def __len__(self) -> int:
        return len(self._terms)

    def names(self) -> list[str]:
        """The standard term names (prompt completions in the panel)."""
        return [term["name"] for term in self._terms]

    def match(self, segmentName: str) -> TermMatch | None:
        term = self._index.get(normalizeTerm(segmentName))
        if term is None:
            return None
        entry = slicer.vtkSlicerTerminologyEntry()
        entry.SetTerminologyContextName(self.context)
        _setCode(entry.GetCategoryObject(), self.categories[term["category"]])
        _setCode(entry.GetTypeObject(), term["type"])
        entry.GetTypeObject().SetRecommendedDisplayRGBValue(*term["color"])
        if term.get("region"):
            # Slicer >= 5.8 calls the anatomic context a "region context".
            if hasattr(entry, "SetRegionContextName"):
                entry.SetRegionContextName(self.anatomicContext)
                _setCode(entry.GetRegionObject(), term["region"])
            else:
                entry.SetAnatomicContextName(self.anatomicContext)
                _setCode(entry.GetAnatomicRegionObject(), term["region"])
        serialized = slicer.vtkSlicerTerminologiesModuleLogic.SerializeTerminologyEntry(entry)
        return TermMatch(term["name"], serialized, tuple(c / 255.0 for c in term["color"]))

    def distinctColor(self, usedColors: list[tuple[float, float, float]]) -> tuple[float, float, float]:
        """The first palette colour not already used in the target segmentation (or the one
        farthest from all used colours when the palette is exhausted)."""
        def distance(a, b):
            return sum((x - y) ** 2 for x, y in zip(a, b))
        for color in self.palette:
            if all(distance(color, used) > 1e-4 for used in usedColors):
                return color
        return max(self.palette, key=lambda c: min(distance(c, u) for u in usedColors))


def _setCode(codedObject, code) -> None:
    scheme, value, meaning = code
    codedObject.SetCodingSchemeDesignator(scheme)
    codedObject.SetCodeValue(value)
    codedObject.SetCodeMeaning(meaning)
