"""Decisions on proposal pieces equal the voxel rules they replace, on random proposal volumes.

The references here are the plain voxel versions: per-slice candidate and seed masks with a 3D
26-connected labelling (the volume step as selection.py states it), and the pipeline's own
fill_holes and keep_largest_component (postprocess.py, themselves checked against whole-array
versions in test_postprocess_exact.py)."""

import math

import numpy as np
import pytest
from scipy import ndimage

from DiffusionSegLib.decision.proposal_graph import ProposalGraph, label_equal_regions
from DiffusionSegLib.decision.selection import (
    SelectionParams,
    SliceScores,
    decide_pieces,
    select_labels,
    volume_reference,
)
from DiffusionSegLib.imaging.postprocess import fill_holes, keep_largest_component


def random_proposals(rng, shape):
    """Smooth random segments (several pieces per id per slice, ids local to each slice) with
    holes of 0 and salt noise: pieces that are not convex, not connected, and touch diagonally."""
    smooth = ndimage.zoom(rng.random((3, 4, 5)), np.array(shape) / (3, 4, 5), order=1)
    smooth = smooth[:shape[0], :shape[1], :shape[2]]
    proposals = (smooth * rng.integers(3, 8)).astype(np.uint16) + 1
    proposals[rng.random(shape) < 0.08] = rng.integers(0, 9)
    proposals[rng.random(shape) < 0.05] = 0
    return proposals


def random_tables(rng, proposals, axis):
    tables = {}
    for k in range(proposals.shape[axis]):
        if rng.random() < 0.15:
            continue  # a slice without a table contributes nothing
        ids = [int(v) for v in np.unique(np.take(proposals, k, axis=axis)) if v]
        tables[k] = SliceScores({pid: {"score": float(rng.gamma(2.0, 1.0)), "area": 1.0,
                                       "border": float(rng.random() * 0.4)} for pid in ids}, reference=1.0)
    return tables


def voxel_rule(proposals, tables, params, axis):
    """The rule as the module doc states it, on voxels."""
    candidates = np.zeros(proposals.shape, bool)
    seeds = np.zeros(proposals.shape, bool)
    reference = volume_reference(tables, params)
    for k, table in tables.items():
        plane = np.take(proposals, k, axis=axis)
        selector = [slice(None)] * 3
        selector[axis] = k
        if params.mode == "border":
            from DiffusionSegLib.decision.selection import border_decision

            chosen, strong = border_decision(table, params.border_threshold), set()
        else:
            contrast = {pid: table.score(pid) / reference for pid in table.proposals}
            chosen = {pid for pid, c in contrast.items() if c >= params.vote_threshold}
            strong = {pid for pid, c in contrast.items() if c >= params.seed_threshold}
        candidates[tuple(selector)] = np.isin(plane, sorted(chosen))
        seeds[tuple(selector)] = np.isin(plane, sorted(strong))
    if params.mode == "border":
        return candidates.astype(np.uint16)
    components, _ = ndimage.label(candidates, structure=np.ones((3, 3, 3), bool))
    kept = [v for v in np.unique(components[seeds & candidates]) if v]
    return np.isin(components, kept).astype(np.uint16)


@pytest.mark.parametrize("seed", range(10))
def test_pieces_give_the_voxel_rule_and_post_processing(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(int(v) for v in rng.integers(3, 20, 3))
    proposals = random_proposals(rng, shape)
    axis = seed % 3
    tables = random_tables(rng, proposals, axis)
    graph = ProposalGraph.build(proposals, axis)
    assert graph.pieces.shape == proposals.shape and graph.area[1:].sum() == proposals.size
    for mode, vote, strong in [("prompt", 1.5, 2.5), ("prompt", 2.5, 4.0), ("prompt", 2.0, 1.0), ("border", 0, 0)]:
        params = SelectionParams(mode, vote, strong, border_threshold=0.2)
        expected = voxel_rule(proposals, tables, params, axis)
        assert np.array_equal(select_labels(proposals, tables, params, axis), expected)
        kept = decide_pieces(graph, tables, params)
        assert np.array_equal(graph.paint(kept), expected)
        filled = graph.fill_holes(kept)
        assert np.array_equal(graph.paint(filled), fill_holes(expected, axis))
        assert np.array_equal(graph.paint(graph.largest_component(filled)),
                              keep_largest_component(fill_holes(expected, axis)))


def test_pieces_are_equal_value_regions_with_four_neighbours():
    plane = np.array([[1, 1, 2, 2],
                      [1, 2, 1, 2],
                      [0, 0, 1, 1],
                      [3, 0, 0, 3]], np.uint16)
    local, count = label_equal_regions(plane)
    # a diagonal contact does not join: the 2 at (1, 1) and the 2s top right, the 1s at (0, 1)
    # and (1, 2); equal values joined through 4-neighbours do
    assert count == 7
    assert local[0, 0] == local[1, 0] == local[0, 1] and local[0, 2] == local[1, 3] != local[1, 1]
    assert local[1, 2] == local[2, 3] != local[0, 1] and local[3, 0] != local[3, 3]
    assert local[2, 0] == local[3, 2]
    assert np.array_equal(np.unique(local), np.arange(1, count + 1))
    firsts = [np.flatnonzero(local.ravel() == n)[0] for n in range(1, count + 1)]
    assert firsts == sorted(firsts)  # numbered in raster order of their first pixel


def test_single_image_and_an_absent_target():
    rng = np.random.default_rng(3)
    plane = random_proposals(rng, (1, 24, 24))[0]
    tables = random_tables(np.random.default_rng(4), plane[None], 0)
    tables = {0: tables.get(0) or SliceScores({1: {"score": 1.0}}, reference=1.0)}
    params = SelectionParams("prompt", 1.2, 1.8)
    assert np.array_equal(select_labels(plane, tables, params), voxel_rule(plane[None], tables, params, 0)[0])
    nothing = {0: SliceScores({pid: {"score": 1.0} for pid in tables[0].proposals}, reference=1.0)}
    assert not select_labels(plane, nothing, params).any()
    assert math.isnan(volume_reference({}, params)) and not select_labels(plane, {}, params).any()


def test_a_slice_of_more_pieces_than_uint16_counts():
    """A 260×260 checkerboard is 67 600 pieces (equal values meet only diagonally): the piece numbers
    widen to int32 and consecutive slices' contacts come from a sort, not a 67 600² histogram."""
    yy, xx = np.mgrid[:260, :260]
    board = ((yy + xx) % 2 + 1).astype(np.uint16)
    proposals = np.stack([board, 3 - board, board])
    tables = {0: SliceScores({1: {"score": 3.0}, 2: {"score": 0.1}}, reference=1.0),
              1: SliceScores({1: {"score": 1.6}, 2: {"score": 0.1}}, reference=1.0),
              2: SliceScores({1: {"score": 0.1}, 2: {"score": 1.6}}, reference=1.0)}
    graph = ProposalGraph.build(proposals, 0)
    assert graph.pieces.dtype == np.int32 and graph.count == 3 * 260 * 260
    params = SelectionParams("prompt", 1.5, 2.0)
    expected = voxel_rule(proposals, tables, params, 0)
    assert expected[1].any() and expected[2].any()  # weak slices kept through 26-contacts with the seed slice
    assert np.array_equal(graph.paint(decide_pieces(graph, tables, params)), expected)
    assert np.array_equal(graph.paint(graph.fill_holes(decide_pieces(graph, tables, params))), fill_holes(expected, 0))


def test_reselect_names_unknown_proposal_ids():
    from DiffusionSegLib.decision.reselection import (
        SelectionBundle,
        reselect_labels,
        scores_document,
    )

    rng = np.random.default_rng(5)
    proposals = random_proposals(rng, (4, 12, 12))
    tables = random_tables(rng, proposals, 0)
    bundle = SelectionBundle.from_document(proposals, scores_document(tables, SelectionParams("prompt", 2.0, 3.0), 0, "adzus", True, False))
    assert bundle.proposal_ids() == {int(v) for v in np.unique(proposals) if v}
    with pytest.raises(ValueError, match="proposal id.* 999 do not occur"):
        reselect_labels(bundle, include=[999])
