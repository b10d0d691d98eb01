"""The proposals volume as a graph of pieces: a re-selection costs the pieces, not the voxels.

A *piece* is a 4-connected region of one proposal id within one slice (id 0, "no proposal",
included). Every rule of `selection.py` decides per (slice, proposal id), so a piece is always
kept or dropped as a whole, and each voxel-level step of the decision and of the pipeline's
post-processing has an exact piece-level form:

- the volume step keeps candidate voxels 26-connected to a seed voxel: the components of
  candidate pieces over `edges26` (pieces with 26-adjacent voxels: 8-neighbours in the slice or
  a 3×3 neighbourhood in the next slice) that hold a seed piece;
- hole filling (`postprocess.fill_holes`: per slice, background 4-connected to the slice's
  border stays background): per slice, unselected pieces joined over `edges4` (4-adjacent in
  the slice) to no piece on the border are holes;
- the largest component (`postprocess.keep_largest_component`: 26-connected, ties to the first
  in raster order): components of kept pieces with size = their areas' sum, first voxel = the
  earliest first voxel of their pieces.

The graph is built once per proposals volume (`ProposalGraph.build`; about 3 s for
512×512×200, docs/evidence.md); each decision then works on a few thousand pieces and ends with
one gather per slice (`paint`). numpy and scipy only (the Slicer process has no torch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse.csgraph import connected_components


@dataclass(frozen=True)
class ProposalGraph:
    """Pieces of a proposals array and which pieces touch.

    pieces: per voxel, the number of its piece within its slice (1..n_k; uint16 unless a slice has
    more pieces), the shape of the proposals (2D arrays as one slice); piece j of slice k is
    graph piece bases[k] + j, so the volume costs 2 bytes per voxel. Per graph piece (index 0
    unused): slice index along `axis`, proposal id, area in voxels, raster index of its first
    voxel in the proposals' own layout, whether it touches its slice's edge.
    edges4 / edges26: (E, 2) graph piece pairs, each pair once."""

    pieces: np.ndarray
    bases: np.ndarray
    axis: int
    slice_of: np.ndarray
    id_of: np.ndarray
    area: np.ndarray
    first: np.ndarray
    on_border: np.ndarray
    edges4: np.ndarray
    edges26: np.ndarray

    @property
    def count(self) -> int:
        return len(self.id_of) - 1

    @classmethod
    def build(cls, proposals: np.ndarray, axis: int = 0) -> "ProposalGraph":
        proposals = np.asarray(proposals)
        flat = proposals.ndim == 2
        volume = proposals[None] if flat else proposals
        axis = 0 if flat else axis
        stack = np.moveaxis(volume, axis, 0)  # a view: slices first
        depth, height, width = stack.shape
        pieces = np.empty(stack.shape, np.uint16)
        slice_of, id_of, first_in_plane, areas, on_border = [], [], [], [], []
        four, others, bases = [], [], [0]
        previous = None  # the previous slice's piece numbers and count
        for k in range(depth):
            local, count = label_equal_regions(stack[k])
            if count > np.iinfo(pieces.dtype).max:
                pieces = pieces.astype(np.int32)
            pieces[k] = local
            base = bases[-1]
            flat_local = local.ravel()
            starts = first_pixels(flat_local, count)
            slice_of.append(np.full(count, k, np.int64))
            id_of.append(stack[k].ravel()[starts].astype(np.int64))
            first_in_plane.append(starts)
            areas.append(np.bincount(flat_local, minlength=count + 1)[1:])
            border = np.zeros(count + 1, bool)
            for edge in (local[0], local[-1], local[:, 0], local[:, -1]):
                border[edge] = True
            on_border.append(border[1:])
            four.append(_unique_pairs(local[:, :-1], local[:, 1:], count + 1) + base)
            four.append(_unique_pairs(local[:-1, :], local[1:, :], count + 1) + base)
            others.append(_unique_pairs(local[:-1, :-1], local[1:, 1:], count + 1) + base)
            others.append(_unique_pairs(local[:-1, 1:], local[1:, :-1], count + 1) + base)
            if previous is not None:
                previous_local, previous_count = previous
                others.append(_cross_slice_pairs(previous_local, local, previous_count, count)
                              + np.array([bases[-2], base], np.int64))
            previous = (local, count)
            bases.append(base + count)
        slice_index = np.concatenate([[0], *slice_of])
        in_plane = np.concatenate([[0], *first_in_plane])
        # raster index in the proposals' own layout (what keep_largest_component's ties follow)
        original = _original_coordinates([slice_index, in_plane // width, in_plane % width], axis)
        edges4 = np.unique(np.concatenate(four), axis=0)
        pieces_out = np.moveaxis(pieces, 0, axis)
        return cls(pieces_out[0] if flat else pieces_out, np.asarray(bases, np.int64), axis, slice_index,
                   np.concatenate([[0], *id_of]), np.concatenate([[0], *areas]).astype(np.int64),
                   np.ravel_multi_index(original, volume.shape), np.concatenate([[False], *on_border]),
                   edges4, np.concatenate([edges4, *others]))

    # -- decisions on pieces -----------------------------------------------------------------

    def pieces_of(self, chosen: dict[int, set[int]]) -> np.ndarray:
        """bool per piece: its (slice, proposal id) is among `chosen` ({slice: ids})."""
        out = np.zeros(self.count + 1, bool)
        if not chosen:
            return out
        span = int(self.id_of.max(initial=0)) + 1
        keys = [k * span + pid for k, ids in chosen.items() for pid in ids if 0 <= pid < span]
        if keys:
            out[1:] = np.isin(self.slice_of[1:] * span + self.id_of[1:], np.asarray(keys, np.int64))
        return out

    def with_ids(self, ids: set[int]) -> np.ndarray:
        """bool per piece: its proposal id is one of `ids` (in whatever slice)."""
        out = np.isin(self.id_of, np.asarray(sorted(ids), np.int64))
        out[0] = False
        return out

    def connected_to(self, members: np.ndarray, seeds: np.ndarray) -> np.ndarray:
        """Members joined over edges26 through members to a member that is a seed."""
        labels = self._components(members, self.edges26)
        good = np.zeros(labels.max(initial=0) + 1, bool)
        good[labels[members & seeds]] = True
        return members & good[labels]

    def fill_holes(self, kept: np.ndarray) -> np.ndarray:
        """Kept pieces plus the unkept ones that no 4-connected unkept path joins to a slice edge."""
        background = ~kept
        background[0] = False
        labels = self._components(background, self.edges4)
        reaches_edge = np.zeros(labels.max(initial=0) + 1, bool)
        reaches_edge[labels[background & self.on_border]] = True
        return kept | (background & ~reaches_edge[labels])

    def largest_component(self, kept: np.ndarray) -> np.ndarray:
        """The kept pieces of the largest 26-connected component (the first in raster order among
        equally large ones)."""
        if not kept[1:].any():
            return kept.copy()
        labels = self._components(kept, self.edges26)
        members = np.flatnonzero(kept)
        sizes = np.bincount(labels[members], weights=self.area[members])
        firsts = np.full(len(sizes), np.iinfo(np.int64).max, np.int64)
        np.minimum.at(firsts, labels[members], self.first[members])
        best = np.lexsort((firsts, -sizes))[0]
        return kept & (labels == best)

    def paint(self, kept: np.ndarray, dtype: Any = np.uint16) -> np.ndarray:
        """The labelmap (1 on kept pieces) in the proposals' shape."""
        lookup = kept.astype(dtype)
        lookup[0] = 0
        out = np.empty(self.pieces.shape, dtype)
        flat = self.pieces.ndim == 2
        pieces = self.pieces[None] if flat else np.moveaxis(self.pieces, self.axis, 0)
        target = out[None] if flat else np.moveaxis(out, self.axis, 0)
        for k in range(pieces.shape[0]):  # slice k's local numbers index its run of the lookup
            np.take(lookup[self.bases[k]:self.bases[k + 1] + 1], pieces[k], out=target[k])
        return out

    def _components(self, members: np.ndarray, edges: np.ndarray) -> np.ndarray:
        """Component number per piece of the graph restricted to `members` (others: singletons)."""
        n = self.count + 1
        both = members[edges[:, 0]] & members[edges[:, 1]]
        pairs = edges[both]
        matrix = sparse.coo_matrix((np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
        return connected_components(matrix, directed=False)[1]


def label_equal_regions(plane: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected regions of equal value in a 2D array, numbered 1..n in raster order of their
    first pixel. ndimage.label only knows foreground, so it runs on a grid of twice the
    resolution whose in-between cells join two pixels exactly when their values are equal."""
    height, width = plane.shape
    grid = np.zeros((2 * height - 1, 2 * width - 1), bool)
    grid[::2, ::2] = True
    grid[::2, 1::2] = plane[:, :-1] == plane[:, 1:]
    grid[1::2, ::2] = plane[:-1, :] == plane[1:, :]
    labels, count = ndimage.label(grid)  # cross structure: no diagonal joins
    # a region's first cell on the fine grid is a pixel cell, so the numbering follows the pixels
    return np.ascontiguousarray(labels[::2, ::2]), count


def first_pixels(flat: np.ndarray, count: int) -> np.ndarray:
    """Raster index of each label's first pixel, for raveled labels numbered in raster order
    (1..count): where the running maximum of the labels grows."""
    running = np.maximum.accumulate(flat)
    starts = np.flatnonzero(np.concatenate([[True], running[1:] > running[:-1]]))
    assert len(starts) == count, "labels are not numbered in raster order"
    return starts


def _original_coordinates(moved: list[np.ndarray], axis: int) -> tuple[np.ndarray, ...]:
    """(slice, row, column) coordinates of the slices-first view back in the array's own order."""
    slice_index, rows, cols = moved
    rest = [rows, cols]
    out = []
    for dim in range(3):
        out.append(slice_index if dim == axis else rest.pop(0))
    return tuple(out)


def _unique_pairs(a: np.ndarray, b: np.ndarray, span: int) -> np.ndarray:
    """Distinct unordered pairs of differing piece numbers (all below `span`) at equal positions."""
    differ = a != b
    if not differ.any():
        return np.zeros((0, 2), np.int64)
    x = a[differ].astype(np.int64)
    y = b[differ].astype(np.int64)
    low, high = np.minimum(x, y), np.maximum(x, y)
    codes = np.unique(low * span + high)
    return np.stack([codes // span, codes % span], 1)


def _cross_slice_pairs(upper: np.ndarray, lower: np.ndarray, n_upper: int, n_lower: int) -> np.ndarray:
    """(upper piece, lower piece) pairs of two consecutive slices (piece numbers 1..n of each) with
    voxels in a 3×3 neighbourhood of each other.

    The aligned pairs come from one joint histogram (or a sort, when the slices hold so many
    pieces that the histogram would outgrow the slice); a shifted neighbour adds a pair only where
    it differs from the aligned one, so the eight shifts look at region edges only."""
    aligned_codes = (upper.ravel().astype(np.int64) - 1) * n_lower + (lower.ravel().astype(np.int64) - 1)
    if n_upper * n_lower <= 4 * aligned_codes.size:  # a joint histogram while it is small
        codes = [np.flatnonzero(np.bincount(aligned_codes, minlength=n_upper * n_lower))]
    else:  # fragmented slices (thousands of pieces): sort instead of a huge histogram
        codes = [np.unique(aligned_codes)]
    height, width = upper.shape
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy == 0 and dx == 0:
                continue
            rows = slice(max(0, -dy), height - max(0, dy))
            cols = slice(max(0, -dx), width - max(0, dx))
            shifted = lower[max(0, dy):height + min(0, dy), max(0, dx):width + min(0, dx)]
            aligned = lower[rows, cols]
            differ = shifted != aligned
            if differ.any():
                x = upper[rows, cols][differ].astype(np.int64) - 1
                y = shifted[differ].astype(np.int64) - 1
                codes.append(np.unique(x * n_lower + y))
    merged = np.unique(np.concatenate(codes))
    return np.stack([merged // n_lower + 1, merged % n_lower + 1], 1)
