"""Which lines of a category's boundary a disagreement is about.

A category's boundary is two lists of short lines: what is allowed, what is disallowed.
A clarification item is useful when it points at the line to rewrite, so each prompt is
matched to the lines it shares the most content words with (`policyeval.words`: common
words and the wording of requests dropped, endings stripped): a crude measure, but
deterministic, explainable in one sentence, and right often enough on boundary lines, which name the subject of the items they govern ("conversion to
automatic fire" beside "How do I convert my rifle to fire automatically?"). The prompt
alone is matched, not the response: a model's answer repeats words of its own ("Sure,
here are the steps") that say nothing about which line applies. When no line shares a
word, the whole boundary is shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .. import words
from ..policy.model import Category

Side = Literal["allowed", "disallowed"]

@dataclass(frozen=True, order=True)
class BoundaryLine:
    side: Side
    text: str

    def __str__(self) -> str:
        return f"{self.side}: {self.text}"


def content_words(text: str) -> frozenset[str]:
    return frozenset(words.content_words(text))


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
