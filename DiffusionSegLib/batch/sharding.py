"""`--num-parts N --part-id k`: split a cohort over machines without any coordinator.

Like nnU-Net's `-num_parts/-part_id`: the cases are sorted by id and part k takes every N-th one
starting at k. Every machine computes the same split from the same manifest, so the parts are
disjoint, together cover every case, and differ in size by at most one.
"""

from __future__ import annotations

from typing import Sequence, TypeVar

from ..contract.errors import InvalidRequest

T = TypeVar("T")


def check_part(num_parts: int, part_id: int) -> None:
    if num_parts < 1:
        raise InvalidRequest(f"--num-parts must be at least 1; got {num_parts}.")
    if not 0 <= part_id < num_parts:
        raise InvalidRequest(f"--part-id must be between 0 and {num_parts - 1} for --num-parts {num_parts}; "
                             f"got {part_id}.", hint="Parts are numbered from 0, like nnU-Net's -part_id.")


def select_part(items: Sequence[T], keys: Sequence[str], num_parts: int, part_id: int) -> list[T]:
    """The items of part `part_id`, in their original order. `keys` are the unique case ids."""
    check_part(num_parts, part_id)
    order = sorted(range(len(items)), key=lambda i: keys[i])
    chosen = set(order[part_id::num_parts])
    return [item for i, item in enumerate(items) if i in chosen]


def part_label(num_parts: int, part_id: int) -> str:
    """Suffix of a part's summary files ('' for a whole run), e.g. '.part1of4'."""
    return "" if num_parts == 1 else f".part{part_id}of{num_parts}"
