"""The selection part of the module's self-test (DiffusionSegSlicerLib.SelectionSelfTest) on
slicer-core: a bundle written by the backend's own numpy writers, imported like a job result,
steered through the logic. Inside Slicer the same scenario drives the panel's widgets."""

import numpy as np
from DiffusionSegSlicerLib.SelectionLogic import ProposalSelection  # noqa: E402
from DiffusionSegSlicerLib.SelectionSelfTest import (  # noqa: E402
    buildSteerableResult,
    exerciseSelection,
    segmentMask,
)
from slicer_test_utils import newScene


def test_selection_scenario_through_the_logic(tmp_path):
    scene = newScene()
    result = buildSteerableResult(scene, str(tmp_path))
    assert set(result.evidenceNodes) == {"scores", "proposals", "evidence"}
    selection = ProposalSelection(result.segmentationNode)
    exerciseSelection(result, selection.setVoteThreshold, selection.toggleAtRas, selection.undo)
    assert selection.include == {int(selection.bundle.proposals[1, 8, 40])} and not selection.exclude
    while selection.undo():
        pass
    assert np.array_equal(segmentMask(result), result.ellipse | result.box)
    assert selection.voteThreshold == 1.5
