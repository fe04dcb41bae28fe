"""Deterministic stratified samples of an eval set.

A small model answers about one item a second, so a quick run measures a sample. The
sample keeps every category x expected-behavior cell represented (so both under- and
over-refusal are measured everywhere) and is chosen by item id hash: the same eval set
always gives the same sample, and an edit changes only the cells it touched.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Iterable

from ..records import EvalItem


def _rank(item: EvalItem, seed: str) -> str:
    return hashlib.sha256(f"{seed}:{item.item_id}".encode()).hexdigest()


def stratified_sample(items: Iterable[EvalItem], per_cell: int, seed: str = "0") -> list[EvalItem]:
    """At most `per_cell` items of each (category, expected behavior) cell, in input order."""
    items = list(items)
    if per_cell <= 0:
        return items
    cells: dict[tuple[str, str], list[EvalItem]] = defaultdict(list)
    for item in items:
        cells[(item.category_id, item.expected_behavior)].append(item)
    keep: set[str] = set()
    for members in cells.values():
        keep.update(i.item_id for i in sorted(members, key=lambda i: _rank(i, seed))[:per_cell])
    return [item for item in items if item.item_id in keep]
