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


def edit_aware_sample(items: Iterable[EvalItem], per_cell: int, previous: Iterable[EvalItem] | None = None,
                      seed: str = "0") -> list[EvalItem]:
    """The stable stratified sample plus every item the previous version of the pack did not have.

    A policy edit is measured exactly: each item it adds or changes (a changed prompt is a
    new item id) is sent to every checkpoint, whatever its rank. The items it removed keep
    their place in the ranking, so no unchanged item takes over a removed one's slot: the
    unchanged items sampled are ones the previous version sampled (their answers are
    cached), and the edit costs its new items and nothing else.
    """
    items = list(items)
    if previous is None or per_cell <= 0:
        return stratified_sample(items, per_cell, seed)
    current = {i.item_id for i in items}
    before = list(previous)
    removed = [i for i in before if i.item_id not in current]
    ranked = {i.item_id for i in stratified_sample(items + removed, per_cell, seed)}
    keep = (ranked & current) | {i.item_id for i in added_items(items, before)}
    return [item for item in items if item.item_id in keep]


def added_items(items: Iterable[EvalItem], previous: Iterable[EvalItem]) -> list[EvalItem]:
    """Items of ``items`` whose id the previous version's eval set did not have."""
    earlier = {i.item_id for i in previous}
    return [i for i in items if i.item_id not in earlier]
