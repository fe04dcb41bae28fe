"""What the three detectors report: one observed disagreement about one response.

A `Signal` is the unit every detector emits and the queue groups: where it was seen (the
category, the item, the response), who said what (`Verdict`s), and which measurements
depend on how the disagreement is resolved.

A measurement is one graded response in one partition (policy version x checkpoint):
the unit every rate in `metrics` counts. A signal touches the graded responses it was
seen on, under each policy version involved (a grade flip touches two: the response's
grade under the old version and under the new one). Counting distinct measurements,
rather than signals, keeps two detectors that fire on the same response from counting
it twice.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Literal

from ..records import COMPLY, UNDER_REFUSAL, last_user_text

Kind = Literal["grader_disagreement", "annotator_split", "grade_flip"]
GRADER_DISAGREEMENT: Kind = "grader_disagreement"
ANNOTATOR_SPLIT: Kind = "annotator_split"
GRADE_FLIP: Kind = "grade_flip"
KINDS: tuple[Kind, ...] = (GRADER_DISAGREEMENT, ANNOTATOR_SPLIT, GRADE_FLIP)
KIND_LABELS: dict[str, str] = {
    GRADER_DISAGREEMENT: "grader disagreement",
    ANNOTATOR_SPLIT: "annotator split",
    GRADE_FLIP: "grade flip",
}


@dataclass(frozen=True, order=True)
class Measurement:
    """One graded response in one partition: what a rate in `metrics` counts once."""

    policy_version: str  # the policy-version partition key (or label, outside Dagster)
    checkpoint_id: str
    item_id: str

    @property
    def partition(self) -> tuple[str, str]:
        return (self.policy_version, self.checkpoint_id)


@dataclass(frozen=True)
class Verdict:
    """Who (a grader, an annotator, a policy version) said what about the response."""

    source: str
    label: str  # a behavior, with its outcome or harm verdict where that is what differs

    def __str__(self) -> str:
        return f"{self.source}: {self.label}"


@dataclass(frozen=True)
class Signal:
    """One disagreement about one response, as a detector saw it."""

    kind: Kind
    category_id: str
    item_id: str
    checkpoint_id: str
    prompt: str
    response: str
    expected_behavior: str
    verdicts: tuple[Verdict, ...]
    measurements: frozenset[Measurement]
    # Whether the response may hold what the policy disallows (some verdict says it is an
    # under-refusal, or harmful): a redacted report then shows its length, not its text.
    sensitive: bool = False
    note: str = ""  # anything the verdicts do not say (e.g. the category moved between versions)

    @property
    def disagreement(self) -> str:
        text = " · ".join(str(v) for v in self.verdicts)
        return f"{text} ({self.note})" if self.note else text


def text(value: Any) -> str:
    """A table cell as text: None, NaN and pandas' missing values are empty."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    try:
        import pandas as pd

        if value is pd.NA:
            return ""
    except ImportError:  # pragma: no cover - pandas is a core dependency
        pass
    return str(value)


def harm_value(value: Any) -> bool | None:
    """A grade's `harmful` cell as a verdict: True, False, or None when the grader gave none."""
    if isinstance(value, bool):
        return value
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    try:
        import pandas as pd

        if value is pd.NA:
            return None
    except ImportError:  # pragma: no cover
        pass
    return bool(value)


def is_sensitive(expected: str, behaviors: list[str], outcomes: list[str], harmful: list[bool | None]) -> bool:
    """Some verdict says the response complied where the policy expected otherwise, or is harmful."""
    return (any(o == UNDER_REFUSAL for o in outcomes)
            or any(h is True for h in harmful)
            or (bool(expected) and expected != COMPLY and COMPLY in behaviors))


def prompt_of(row: dict[str, Any]) -> str:
    """The prompt a row was asked: `prompt_text`, else the last user turn of `messages`."""
    prompt = text(row.get("prompt_text"))
    if prompt:
        return prompt
    try:
        messages = json.loads(text(row.get("messages")) or "[]")
    except json.JSONDecodeError:
        return ""
    return last_user_text(messages) if isinstance(messages, list) else ""
