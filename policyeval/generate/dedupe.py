"""Duplicate and near-duplicate removal, so no request is counted twice in a rate.

Rules, within one category and expected behavior:

- Exact duplicates (same item id) are always removed.
- Items are compared only with items of the same context: turn structure, images, tool
  calls and system/assistant text (normalized). Within it:
- Items whose normalized user text is identical (case, whitespace and punctuation
  aside) are removed.
- Near duplicates (word-shingle Jaccard of the user text >= threshold) are removed only
  for items from open-ended sources (synthesis, imports), against every item kept
  before them. Items the pack itself defines are exempt:
  template expansions are deliberate minimal pairs ("rifle" vs "handgun") that shingle
  similarity would merge.
- A mutation is a function of its parent, so it is removed exactly when its parent is
  (a wrapper's shared boilerplate would otherwise make all mutations look alike).

The kept item is the first by source priority (seed, template, mutation, red-team,
XSTest, other imports, synthesis), then input order. Candidate pairs come from prefix
filtering on rare shingles, which finds every pair above the threshold without
comparing all pairs, so tens of thousands of items take seconds.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable

from ..records import EvalItem, content_hash, message_text

SOURCE_PRIORITY = ("seed", "template", "mutation", "redteam", "xstest", "jsonl", "synthesis")
PROTECTED_SOURCES = frozenset({"seed", "template"})  # near duplicates allowed among these

EXACT = "exact"
NORMALIZED = "normalized"
NEAR = "near"
PARENT = "parent"

_PUNCT = re.compile(r"[^\w\s]+", re.UNICODE)
_SPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Lowercase, punctuation stripped, whitespace collapsed."""
    return _SPACE.sub(" ", _PUNCT.sub(" ", text.lower())).strip()


def item_text(item: EvalItem) -> str:
    """The user turns' text: what shingle similarity compares."""
    return "\n".join(message_text(m) for m in item.messages if m.get("role") == "user")


def context_hash(item: EvalItem) -> str:
    """Hash of everything but the user text: roles, images, tool calls, system and
    assistant text. Items differing here are different tests however similar the
    requests, and a long shared system prompt must not make short requests look alike."""
    skeleton = []
    for message in item.messages:
        m = {k: v for k, v in message.items() if k != "content"}
        content = message.get("content")
        if isinstance(content, list):
            m["content"] = [
                {"type": "text"} if isinstance(p, dict) and p.get("type") == "text" else p for p in content
            ]
        if m.get("role") != "user":
            m["text"] = normalize_text(message_text(message))
        skeleton.append(m)
    return content_hash(skeleton)


def shingles(text: str, k: int = 3) -> frozenset[str]:
    """Word k-grams of the normalized text (the whole text if shorter than k words)."""
    return _shingles(normalize_text(text), k)


def _shingles(normal: str, k: int) -> frozenset[str]:
    words = normal.split()
    if not words:
        return frozenset()
    if len(words) < k:
        return frozenset({" ".join(words)})
    return frozenset(" ".join(words[i:i + k]) for i in range(len(words) - k + 1))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    inter = len(a & b)
    return inter / (len(a) + len(b) - inter)


@dataclass
class DedupeReport:
    """What was removed and why: removed item id -> the kept item id it duplicates."""

    removed: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)  # removed item id -> normalized|near|parent
    similarity: dict[str, float] = field(default_factory=dict)  # near duplicates only
    exact_duplicates: int = 0  # repeated copies of an item id (removed, same id as the kept one)

    @property
    def count(self) -> int:
        return len(self.removed) + self.exact_duplicates

    def counts(self) -> dict[str, int]:
        """Removed items per reason."""
        out: dict[str, int] = defaultdict(int)
        if self.exact_duplicates:
            out[EXACT] = self.exact_duplicates
        for reason in self.reasons.values():
            out[reason] += 1
        return dict(sorted(out.items()))

    def _add(self, item_id: str, kept: str, reason: str, score: float | None = None) -> None:
        self.removed[item_id] = kept
        self.reasons[item_id] = reason
        if score is not None:
            self.similarity[item_id] = round(score, 4)


def _rank(item: EvalItem) -> int:
    try:
        return SOURCE_PRIORITY.index(item.source)
    except ValueError:
        return SOURCE_PRIORITY.index("jsonl")  # unknown imports rank with other imports


class _NearIndex:
    """Prefix-filter index of kept items' shingle sets for one bucket.

    Tokens are ordered rare-first; an item is indexed under the first
    |s| - ceil(t|s|) + 1 of its tokens. Two sets with Jaccard >= t must share one of
    those tokens, so probing the prefix finds every candidate.
    """

    def __init__(self, threshold: float, frequency: dict[str, int]):
        self.threshold = threshold
        self.frequency = frequency
        self.postings: dict[str, list[int]] = defaultdict(list)
        self.sets: list[tuple[str, frozenset[str]]] = []

    def prefix(self, tokens: frozenset[str]) -> list[str]:
        frequency = self.frequency
        ordered = sorted(tokens, key=lambda t: (frequency[t], t))
        keep = len(ordered) - math.ceil(self.threshold * len(ordered) - 1e-9) + 1
        return ordered[:max(1, keep)]

    def add(self, item_id: str, tokens: frozenset[str], prefix: list[str]) -> None:
        if not tokens:
            return
        slot = len(self.sets)
        self.sets.append((item_id, tokens))
        for token in prefix:
            self.postings[token].append(slot)

    def best(self, tokens: frozenset[str], prefix: list[str]) -> tuple[str, float] | None:
        if not tokens:
            return None
        size = len(tokens)
        seen: set[int] = set()
        best: tuple[int, float] | None = None
        for token in prefix:
            for slot in self.postings.get(token, ()):
                if slot in seen:
                    continue
                seen.add(slot)
                other = self.sets[slot][1]
                if not (self.threshold * size <= len(other) * (1 + 1e-9) and self.threshold * len(other) <= size * (1 + 1e-9)):
                    continue  # length filter: sizes too far apart to reach the threshold
                score = jaccard(tokens, other)
                if score >= self.threshold and (best is None or score > best[1] or (score == best[1] and slot < best[0])):
                    best = (slot, score)
        return None if best is None else (self.sets[best[0]][0], best[1])


def dedupe_items(
    items: Iterable[EvalItem], *, threshold: float = 0.8, shingle_size: int = 3
) -> tuple[list[EvalItem], DedupeReport]:
    """Kept items (in input order) and the report of removed ones."""
    items = list(items)
    report = DedupeReport()
    order = sorted(range(len(items)), key=lambda i: (_rank(items[i]), i))
    normals = [normalize_text(item_text(item)) for item in items]
    bucket_of = {
        i: (items[i].category_id, items[i].expected_behavior, context_hash(items[i]))
        for i in range(len(items))
    }
    token_sets = [_shingles(normal, shingle_size) for normal in normals]
    frequency: dict[tuple, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for i, tokens in enumerate(token_sets):
        for token in tokens:
            frequency[bucket_of[i]][token] += 1
    indexes: dict[tuple, _NearIndex] = {}

    seen: set[str] = set()
    by_normal: dict[tuple, str] = {}
    mutation_of: dict[tuple[str, str], str] = {}  # (kept parent id, kind) -> kept mutation id
    present = {item.item_id for item in items}
    keep = [False] * len(items)

    for i in order:
        item = items[i]
        if item.item_id in seen:
            report.exact_duplicates += 1  # the first copy (by priority) already decided
            continue
        seen.add(item.item_id)
        if item.source == "mutation" and item.parent_id in present:
            if item.parent_id in report.removed:
                report._add(item.item_id, report.removed[item.parent_id], PARENT)  # refined below
                continue
        normal_key = (bucket_of[i], normals[i])
        if normal_key in by_normal:
            report._add(item.item_id, by_normal[normal_key], NORMALIZED)
            continue
        index = indexes.get(bucket_of[i])
        if index is None:
            index = indexes[bucket_of[i]] = _NearIndex(threshold, frequency[bucket_of[i]])
        prefix = index.prefix(token_sets[i])
        if item.source not in PROTECTED_SOURCES and item.source != "mutation":
            hit = index.best(token_sets[i], prefix)
            if hit is not None:
                report._add(item.item_id, hit[0], NEAR, hit[1])
                continue
        keep[i] = True
        by_normal[normal_key] = item.item_id
        index.add(item.item_id, token_sets[i], prefix)
        if item.source == "mutation" and item.parent_id:
            mutation_of[(item.parent_id, item.mutation or "")] = item.item_id
    # A removed mutation points at the same-kind mutation of its parent's keeper, if any.
    for i in order:
        item = items[i]
        if report.reasons.get(item.item_id) == PARENT:
            rep = report.removed[item.item_id]
            report.removed[item.item_id] = mutation_of.get((rep, item.mutation or ""), rep)
    return [item for i, item in enumerate(items) if keep[i]], report
