"""The panel's Qt-free rules: parameter node <-> JobSettings (SettingsMapping.py), what the
buttons and labels say (PanelRules.py), on plain objects."""

from __future__ import annotations

import json
from types import SimpleNamespace

import slicer_test_utils  # noqa: F401  (puts the module folder on sys.path)
from DiffusionSegSlicerLib.JobSettings import JobSettings
from DiffusionSegSlicerLib.Logic import methodCatalog
from slicer_panel_standin import StandInParameterNode, parameterNodeFields


def test_settings_mapping_round_trip_and_clamping():
    from DiffusionSegSlicerLib.SettingsMapping import (
        applySettingsToParameterNode,
        settingsFromParameterNode,
        storedMethodParams,
        withMethodParams,
    )

    node = StandInParameterNode()
    assert node.device == "auto" and node.skipEmptySlices is True and node.methodParamsJson == "{}"
    remembered = JobSettings(method="adzus", prompt="liver", model="/m", device="cpu", threads=4000, axis="oblique",
                             batchSize=-3, seed=7, sliceRange=[2, 9], params={"vote_threshold": 1.2}, fillHoles=False)
    applySettingsToParameterNode(remembered, node)
    assert (node.threads, node.axis, node.batchSize) == (1024, "auto", 0)   # clamped to the wrapper's ranges
    back = settingsFromParameterNode(node, storedMethodParams(node.methodParamsJson)["adzus"])
    assert back.params == {"vote_threshold": 1.2} and back.sliceRange == [2, 9] and back.fillHoles is False
    assert (back.method, back.prompt, back.model, back.device, back.seed) == ("adzus", "liver", "/m", "cpu", 7)
    assert storedMethodParams("{broken") == {} and storedMethodParams("[1]") == {}
    merged = json.loads(withMethodParams(node.methodParamsJson, "sdseg", {"threshold": 0.4}))
    assert merged == {"adzus": {"vote_threshold": 1.2}, "sdseg": {"threshold": 0.4}}


def test_stand_in_node_has_the_wrappers_fields():
    fields = parameterNodeFields()
    assert {"inputVolume", "prompt", "methodParamsJson", "sliceFirst", "threads"} <= set(fields)
    assert fields["device"] == "auto" and fields["fillHoles"] is True and fields["inputVolume"] is None


def test_apply_blockers_name_what_is_missing():
    from DiffusionSegSlicerLib.PanelRules import (
        applyBlockers,
        fineTuneBlockers,
        formatSeconds,
        promptHints,
        sliderSetup,
    )

    methods = methodCatalog()
    node = SimpleNamespace(inputVolume=None, prompt=" ", model="")
    assert applyBlockers(node, methods["adzus"]) == ["Select an input volume."]
    assert applyBlockers(node, methods["diffugts"])[-1] == "Type what to segment in the prompt."
    assert applyBlockers(node, methods["sdseg"])[-1] == "SDSeg needs a trained checkpoint folder (Model)."
    assert applyBlockers(SimpleNamespace(inputVolume=object(), prompt="", model=""), methods["adzus"], True) == [
        "Fine-tuning is running."]
    assert applyBlockers(None, None) == ["Select an input volume.", "No segmentation method is available."]
    assert fineTuneBlockers(False, True, True, "/ckpt", "/new") == []
    assert len(fineTuneBlockers(True, False, False, " ", "")) == 5
    hints = promptHints(methods["sdseg"], ["liver"])
    assert hints.modelPlaceholder == "Trained checkpoint folder (required)" and "liver" in hints.terms
    assert (formatSeconds(59.9), formatSeconds(61)) == ("59 s", "1:01")
    strong = sliderSetup(SimpleNamespace(defaultVoteThreshold=1.5, strongestContrast=12.31))
    assert strong.maximum >= 12.31 and strong.value == 1.5 and strong.clickMode
    assert sliderSetup(SimpleNamespace(threshold=0.4)).maximum == 1.0 and sliderSetup(None) is None


def test_parameter_labels_name_real_parameters_and_cover_every_choice():
    from DiffusionSegSlicerLib.PanelRules import PARAMETER_LABELS, choiceTitles, parameterLabel

    methods = methodCatalog()
    for method, labels in PARAMETER_LABELS.items():
        params = {p.name: p.to_dict() for p in methods[method].params}
        assert set(labels) <= set(params), (method, set(labels) - set(params))
        for name, entry in labels.items():
            assert set(entry.get("choices", {})) <= set(params[name]["choices"]), (method, name)
    for method, info in methods.items():
        for param in (p.to_dict() for p in info.params):
            assert parameterLabel(method, param)
            if param["type"] == "choice":   # a title for people for every choice
                titles = dict(choiceTitles(method, param))
                assert list(titles) == [str(c) for c in param["choices"]]
                assert all(titles[c] != c for c in titles if "_" in c), (method, param["name"], titles)
    assert parameterLabel("adzus", {"name": "latent_mode", "label": "Latent mode"}) == "Reach the timestep by"
