"""The queue: signals grouped into policy-clarification items, the widest first.

Each detector reports single responses; a policy team fixes lines of text. So signals of
one category that point at the same boundary line(s) become one clarification item: the
line involved, the responses it was seen on, and what each grader, annotator or policy
version said. Items are ordered by how many measurements they touch (distinct graded
responses per partition, see `signals.Measurement`): resolving the widest ambiguity first
moves the most numbers. Ties go to more signals, then to category and line, so the
order is stable from run to run.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable

import pandas as pd

from ..policy.model import Category, PolicyPack
from ..records import canonical_json
from .boundary import BoundaryLine, related_lines
from .signals import KINDS, Measurement, Signal


@dataclass(frozen=True)
class Example:
    """One response the ambiguity was seen on, with every disagreement about it."""

    item_id: str
    checkpoint_id: str
    prompt: str
    response: str
    expected_behavior: str
    sensitive: bool
    kinds: tuple[str, ...]
    disagreements: tuple[str, ...]


@dataclass(frozen=True)
class ClarificationItem:
    """A line of policy text to clarify: where, on what evidence, and how much rides on it."""

    category_id: str
    category_title: str
    boundary: tuple[BoundaryLine, ...]  # the lines involved (every line when `matched` is False)
    matched: bool  # the lines were picked by word overlap with the prompts
    signals: tuple[Signal, ...]

    @property
    def measurements(self) -> frozenset[Measurement]:
        return frozenset(m for s in self.signals for m in s.measurements)

    @property
    def measurements_touched(self) -> int:
        """Distinct graded responses (policy version x checkpoint x item) whose grade depends on this line."""
        return len(self.measurements)

    @property
    def partitions_touched(self) -> int:
        """Distinct policy version x checkpoint partitions (metrics tables) those responses are counted in."""
        return len({m.partition for m in self.measurements})

    @property
    def kind_counts(self) -> dict[str, int]:
        counts = Counter(s.kind for s in self.signals)
        return {kind: counts[kind] for kind in KINDS if counts[kind]}

    @property
    def in_policy(self) -> bool:
        """Whether the category exists in the policy version the queue was built for."""
        return bool(self.category_title)

    def examples(self, limit: int | None = None) -> list[Example]:
        """The responses, each once, sensitive ones last (a reader sees a readable example first)."""
        by_response: dict[tuple[str, str, str], list[Signal]] = {}
        for s in self.signals:
            by_response.setdefault((s.checkpoint_id, s.prompt, s.response), []).append(s)
        examples = []
        for signals in by_response.values():
            first = signals[0]
            examples.append(Example(
                item_id=first.item_id, checkpoint_id=first.checkpoint_id, prompt=first.prompt, response=first.response,
                expected_behavior=first.expected_behavior, sensitive=any(s.sensitive for s in signals),
                kinds=tuple(dict.fromkeys(s.kind for s in signals)),
                disagreements=tuple(s.disagreement for s in signals),
            ))
        examples.sort(key=lambda e: (e.sensitive, -len(e.disagreements), e.checkpoint_id, e.item_id))
        return examples[:limit] if limit is not None else examples

    def boundary_text(self) -> str:
        lines = "; ".join(str(line) for line in self.boundary)
        return lines if self.matched else f"(whole boundary) {lines}" if lines else "(category not in this policy version)"


def _sort_key(item: ClarificationItem) -> tuple:
    return (-item.measurements_touched, -len(item.signals), item.category_id, item.boundary_text())


def build_queue(signals: Iterable[Signal], pack: PolicyPack) -> list[ClarificationItem]:
    """Signals grouped by category and related boundary line(s), widest first.

    Boundary text comes from `pack` (the policy version being clarified); a signal whose
    category the pack lacks keeps its own group, with no boundary text.
    """
    categories: dict[str, Category] = {c.id: c for _, c in pack.categories()}
    groups: dict[tuple[str, tuple[BoundaryLine, ...], bool], list[Signal]] = {}
    for signal in signals:
        category = categories.get(signal.category_id)
        lines, matched = related_lines(category, signal.prompt) if category is not None else ((), False)
        groups.setdefault((signal.category_id, lines, matched), []).append(signal)
    items = [
        ClarificationItem(
            category_id=category_id,
            category_title=categories[category_id].title if category_id in categories else "",
            boundary=lines, matched=matched,
            signals=tuple(sorted(group, key=lambda s: (s.kind, s.checkpoint_id, s.item_id))),
        )
        for (category_id, lines, matched), group in groups.items()
    ]
    return sorted(items, key=_sort_key)


QUEUE_COLUMNS = ["rank", "category_id", "boundary", "boundary_matched", "measurements_touched", "partitions_touched",
                 "responses", *KINDS, "item_ids"]


def queue_table(queue: list[ClarificationItem]) -> pd.DataFrame:
    """One row per clarification item, in queue order; ids and counts only (no model output)."""
    rows = []
    for rank, item in enumerate(queue, start=1):
        counts = item.kind_counts
        rows.append({
            "rank": rank,
            "category_id": item.category_id,
            "boundary": canonical_json([[line.side, line.text] for line in item.boundary]),
            "boundary_matched": item.matched,
            "measurements_touched": item.measurements_touched,
            "partitions_touched": item.partitions_touched,
            "responses": len(item.examples()),
            **{kind: counts.get(kind, 0) for kind in KINDS},
            "item_ids": canonical_json(sorted({s.item_id for s in item.signals})),
        })
    return pd.DataFrame(rows, columns=QUEUE_COLUMNS).astype(
        {"rank": "int64", "measurements_touched": "int64", "partitions_touched": "int64", "responses": "int64",
         **{kind: "int64" for kind in KINDS}, "boundary_matched": "bool"})
