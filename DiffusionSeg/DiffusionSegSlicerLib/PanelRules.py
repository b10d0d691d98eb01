"""What the panel's buttons and labels say, decided without Qt.

The widgets (Widget.py, FineTuneWidget.py, SelectionWidget.py) only copy these answers into Qt
properties, so the rules (when Apply is allowed and why not, what the prompt field suggests, how
the selection slider is set up) are tested on plain objects.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

from .Translation import tr as _



def _table(name: str) -> dict:
    with open(os.path.join(os.path.dirname(__file__), "data", name), encoding="utf-8") as stream:
        return {key: value for key, value in json.load(stream).items() if not key.startswith("_")}


MODEL_DOWNLOADS = _table("model_downloads.json")
PARAMETER_LABELS = _table("parameter_labels.json")


def parameterLabel(method: str, param: dict) -> str:
    """What people read for a method parameter (data/parameter_labels.json), else its spec label."""
    return _(PARAMETER_LABELS.get(method, {}).get(param["name"], {}).get("label") or param["label"])


def choiceTitles(method: str, param: dict) -> list[tuple[str, str]]:
    """(value, title) of each choice of a parameter, titles for people."""
    titles = PARAMETER_LABELS.get(method, {}).get(param["name"], {}).get("choices", {})
    return [(str(value), _(titles.get(value, str(value)))) for value in param["choices"]]


def applyBlockers(node, info, fineTuneRunning: bool = False) -> list[str]:
    """Why Apply cannot run now (empty: it can). `node` is the parameter node (or None), `info`
    the selected method's MethodInfo (or None)."""
    reasons = []
    if fineTuneRunning:
        reasons.append(_("Fine-tuning is running."))
    if node is None or node.inputVolume is None:
        reasons.append(_("Select an input volume."))
    if info is None:
        reasons.append(_("No segmentation method is available."))
    elif info.prompt == "required" and not (node and node.prompt.strip()):
        reasons.append(_("Type what to segment in the prompt."))
    elif info.needs_checkpoint and not (node and node.model.strip()):
        reasons.append(_("{method} needs a trained checkpoint folder (Model).").format(method=info.label))
    return reasons


def fineTuneBlockers(segmenting: bool, hasInputVolume: bool, hasCorrectedSegmentation: bool,
                     checkpoint: str, output: str) -> list[str]:
    """Why Fine-tune cannot run now (empty: it can)."""
    reasons = []
    if segmenting:
        reasons.append(_("A segmentation is running."))
    if not hasInputVolume:
        reasons.append(_("Select an input volume."))
    if not hasCorrectedSegmentation:
        reasons.append(_("Select the corrected segmentation."))
    if not checkpoint.strip():
        reasons.append(_("Select the SDSeg checkpoint to fine-tune."))
    if not output.strip():
        reasons.append(_("Select a new folder for the fine-tuned checkpoint."))
    return reasons


@dataclass(frozen=True)
class PromptHints:
    enabled: bool          # the method reads a prompt
    examples: str          # the line under the prompt box
    terms: str             # its tooltip: every suggested term
    modelPlaceholder: str  # the Model field when empty


def promptHints(info, standardTerms) -> PromptHints:
    """The method's examples first, then the standard terms (those get SNOMED terminology). A
    method whose result does not depend on the prompt (SDSeg) says that the prompt only names
    the segment."""
    if info is None:
        return PromptHints(False, "", _("Standard terms: {terms}").format(terms=", ".join(standardTerms)), "")
    terms = list(dict.fromkeys([*info.prompt_examples, *standardTerms]))
    examples = ", ".join(info.prompt_examples)
    lines = [_("Examples: {examples}").format(examples=examples)] if examples else []
    if info.prompt != "none" and not info.prompt_conditioned:
        lines.append(_("{method} segments what its checkpoint was trained on; the prompt only names the "
                       "segment.").format(method=info.label))
    placeholder = (_("Trained checkpoint folder (required)") if info.needs_checkpoint else
                   _("Default: {model}").format(model=info.default_model or _("none")))
    return PromptHints(enabled=info.prompt != "none", examples="\n".join(lines),
                       terms=_("Standard terms: {terms}").format(terms=", ".join(terms)),
                       modelPlaceholder=placeholder)


def huggingFaceCached(repo: str, environ=None) -> bool:
    """Whether the Hugging Face cache of this computer holds `repo` (HF_HUB_CACHE, HF_HOME or
    ~/.cache/huggingface, as huggingface_hub looks; read here without importing it)."""
    environ = os.environ if environ is None else environ
    cache = environ.get("HF_HUB_CACHE") or os.path.join(
        environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface"), "hub")
    snapshots = os.path.join(cache, "models--" + repo.replace("/", "--"), "snapshots")
    return os.path.isdir(snapshots) and bool(os.listdir(snapshots))


def modelNote(info, model: str, cached=huggingFaceCached) -> str:
    """What the Model field will load, stated before the first Apply: the default model's download
    size when it is not in this computer's cache yet."""
    if info is None or model.strip():
        return ""
    if info.needs_checkpoint:
        return _("{method} needs a checkpoint you trained (python -m DiffusionSegLib train {name}).").format(
            method=info.label, name=info.name)
    repo = info.default_model
    if not repo:
        return ""
    if cached(repo):
        return _("Default model {repo}: in this computer's Hugging Face cache.").format(repo=repo)
    return _("Default model {repo}: downloaded once on the first Apply ({size}), then kept in the Hugging Face "
             "cache.").format(repo=repo, size=MODEL_DOWNLOADS.get(repo, _("size unknown")))


EVIDENCE_LEGENDS = {
    "adzus": "Colour: how strongly the prompt attends to each pixel, as a multiple of the volume's usual level "
             "(dark: none; yellow: strongest). Regions above the vote threshold are kept.",
    "diffugts": "Colour: how much the image changed when the model repainted it as healthy tissue (dark: "
                "unchanged; yellow: most changed). Large changes are where the tumour is.",
    "sdseg": "Colour: the model's probability that a pixel belongs to the segment (dark: 0; yellow: 1). Pixels "
             "above the probability threshold are kept.",
}


def evidenceLegend(method: str) -> str:
    """One sentence for people: what the evidence overlay's colours mean for this method."""
    text = EVIDENCE_LEGENDS.get(method)
    return _(text) if text else _("Colour: the method's evidence for each pixel (dark: none; yellow: strongest).")


@dataclass(frozen=True)
class SliderSetup:
    label: str
    toolTip: str
    minimum: float
    maximum: float
    step: float
    value: float
    clickMode: bool        # regions can be clicked in and out (proposal results)


def sliderSetup(selection) -> SliderSetup | None:
    """How the "Evidence and selection" slider steers `selection` (SelectionLogic's
    ProposalSelection or ProbabilityThreshold), or None when there is nothing to steer."""
    if selection is None:
        return None
    default = getattr(selection, "defaultVoteThreshold", None)
    if default is not None:
        # up to past the strongest region, so every region can be dropped
        reach = math.ceil(10.0 * 1.05 * float(getattr(selection, "strongestContrast", 0.0) or 0.0)) / 10.0
        return SliderSetup(_("Vote threshold:"),
                           _("Evidence a region needs, as a multiple of the volume's reference (the job used "
                             "{value:.2f}). Higher keeps fewer regions.").format(value=default),
                           0.0, max(5.0, 2.0 * default, reach), 0.05, default, True)
    return SliderSetup(_("Probability threshold:"),
                       _("Foreground where the mean probability over the x_T seeds exceeds this."),
                       0.0, 1.0, 0.01, selection.threshold, False)


def formatSeconds(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds} s"
