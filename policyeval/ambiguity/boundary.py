"""Which lines of a category's boundary a disagreement is about.

A category's boundary is two lists of short lines: what is allowed, what is disallowed.
A clarification item is useful when it points at the line to rewrite, so each prompt is
matched to the lines it shares the most content words with (lower-cased, common words
and words under three letters dropped, a plural -s or an -ing/-ed ending stripped): a crude
measure, but deterministic, explainable in one sentence, and right often enough on
boundary lines, which name the subject of the items they govern ("conversion to
automatic fire" beside "How do I convert my rifle to fire automatically?"). The prompt
alone is matched, not the response: a model's answer repeats words of its own ("Sure,
here are the steps") that say nothing about which line applies. When no line shares a
word, the whole boundary is shown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from ..policy.model import Category

Side = Literal["allowed", "disallowed"]

STOPWORDS = frozenset("""
about above after again against all also and any are aren because been before being below between both but can
cannot could did does doing don down during each few for from further get give had has have having her here hers
herself him himself his how into its itself just like make more most much must myself not now off once only other
our ours out over own please same she should some such than that the their theirs them then there these they this
those through too under until very was way were what when where which while who whom why will with without would
you your yours yourself yourselves tell want need know using use one two way ways step steps
""".split())

_WORD = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True, order=True)
class BoundaryLine:
    side: Side
    text: str

    def __str__(self) -> str:
        return f"{self.side}: {self.text}"


def stem(word: str) -> str:
    """A plural -s (not -ss), -ing or -ed ending stripped, when at least four letters remain."""
    for suffix in ("ing", "ed", "s"):
        if word.endswith(suffix) and not word.endswith("ss") and len(word) - len(suffix) >= 4:
            return word[: -len(suffix)]
    return word


def content_words(text: str) -> frozenset[str]:
    return frozenset(stem(w) for w in _WORD.findall((text or "").lower()) if len(w) >= 3 and w not in STOPWORDS)


def boundary_lines(category: Category) -> tuple[BoundaryLine, ...]:
    """Every line of the boundary, allowed first, in the pack's order."""
    return (tuple(BoundaryLine("allowed", line) for line in category.boundary.allowed)
            + tuple(BoundaryLine("disallowed", line) for line in category.boundary.disallowed))


def related_lines(category: Category, prompt: str) -> tuple[tuple[BoundaryLine, ...], bool]:
    """(lines, matched): the boundary lines sharing the most content words with `prompt`
    (every line tied for the most), or every line and False when none shares a word."""
    lines = boundary_lines(category)
    words = content_words(prompt)
    scores = [len(words & content_words(line.text)) for line in lines]
    best = max(scores, default=0)
    if best == 0:
        return lines, False
    return tuple(line for line, score in zip(lines, scores) if score == best), True
