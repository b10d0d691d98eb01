"""What the panel's buttons and labels say, decided without Qt.

The widgets (Widget.py, FineTuneWidget.py, SelectionWidget.py) only copy these answers into Qt
properties, so the rules (when Apply is allowed and why not, what the prompt field suggests, how
the selection slider is set up) are tested on plain objects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .Translation import tr as _


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
    """The method's examples first, then the standard terms (those get SNOMED terminology)."""
    if info is None:
        return PromptHints(False, "", _("Standard terms: {terms}").format(terms=", ".join(standardTerms)), "")
    terms = list(dict.fromkeys([*info.prompt_examples, *standardTerms]))
    examples = ", ".join(info.prompt_examples)
    placeholder = (_("Trained checkpoint folder (required)") if info.needs_checkpoint else
                   _("Default: {model}").format(model=info.default_model or _("none")))
    return PromptHints(enabled=info.prompt != "none",
                       examples=_("Examples: {examples}").format(examples=examples) if examples else "",
                       terms=_("Standard terms: {terms}").format(terms=", ".join(terms)),
                       modelPlaceholder=placeholder)


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
