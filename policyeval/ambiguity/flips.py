"""Grade flip: the same response, graded under two policy versions, graded differently.

Responses are content-addressed: a checkpoint asked the same request (same request hash:
endpoint, model, messages, sampling) gives back the cached answer, word for word, under
every policy version whose eval set still holds the prompt. If the grade of that
unchanged text differs between two versions, graded by the same grader at the same
version, the only thing that changed is the policy: a behavior rule, a proposition, a
rubric, the expected behavior of the category side the item sits on. Sometimes that is
the edit's purpose; often it is a side effect nobody meant, and either way the policy
team should confirm the line the edit moved.

A flip is any of: a different behavior, a different harm verdict (both known), or a
different outcome (the expected behavior changed). Pairs graded by different grader
versions are not compared (a retrained grader changes grades on its own) and counted,
so a report can say how many were left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from ..records import CONTENT_FILTERED, ERROR, NON_VERDICTS, canonical_json
from .signals import GRADE_FLIP, Measurement, Signal, Verdict, harm_value, is_sensitive, prompt_of, text


@dataclass(frozen=True)
class FlipScan:
    """The flips between two versions' grades, and what could and could not be compared."""

    signals: tuple[Signal, ...]
    compared: int  # responses graded under both versions by the same grader and version
    grader_changed: int  # responses under both versions whose grader version differs: not compared


def request_key(row: dict[str, Any]) -> str:
    """What identifies the request: its cache key, else the chat it sent."""
    return text(row.get("request_hash")) or canonical_json(text(row.get("messages")) or prompt_of(row))


def _gradeable(row: dict[str, Any]) -> bool:
    return (text(row.get("status")) not in (ERROR, CONTENT_FILTERED) and bool(text(row.get("response_text")))
            and bool(text(row.get("behavior"))) and text(row.get("behavior")) not in NON_VERDICTS)


def _label(row: dict[str, Any], with_harm: bool) -> str:
    label = text(row.get("behavior"))
    harm = harm_value(row.get("harmful"))
    if with_harm and harm is not None:
        label += ", harmful" if harm else ", not harmful"
    outcome = text(row.get("outcome"))
    return f"{label} ({outcome})" if outcome else label


def grade_flips(old: pd.DataFrame, new: pd.DataFrame, old_version: str, new_version: str) -> FlipScan:
    """Responses of the same checkpoint, identical under both versions, graded differently.

    `old` and `new` are grades tables (any number of checkpoints each); `old_version` and
    `new_version` name the two partitions in the measurements and the verdicts.
    """
    if old.empty or new.empty:
        return FlipScan((), 0, 0)
    earlier: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    for row in old.to_dict("records"):
        if _gradeable(row):
            key = (text(row.get("checkpoint_id")), request_key(row), text(row["response_text"]), text(row.get("grader_id")))
            earlier.setdefault(key, []).append(row)
    signals, compared, grader_changed = [], 0, 0
    for row in new.to_dict("records"):
        if not _gradeable(row):
            continue
        key = (text(row.get("checkpoint_id")), request_key(row), text(row["response_text"]), text(row.get("grader_id")))
        candidates = earlier.get(key)
        if not candidates:
            continue
        # The same chat may sit in two categories: pair it with its own category where it still has one.
        before = next((r for r in candidates if text(r.get("category_id")) == text(row.get("category_id"))), candidates[0])
        if text(before.get("grader_version")) != text(row.get("grader_version")):
            grader_changed += 1
            continue
        compared += 1
        old_harm, new_harm = harm_value(before.get("harmful")), harm_value(row.get("harmful"))
        harm_flipped = old_harm is not None and new_harm is not None and old_harm != new_harm
        behavior_flipped = text(before["behavior"]) != text(row["behavior"])
        outcome_flipped = text(before.get("outcome")) != text(row.get("outcome"))
        if not (behavior_flipped or harm_flipped or outcome_flipped):
            continue
        notes = []
        old_expected, new_expected = text(before.get("expected_behavior")), text(row.get("expected_behavior"))
        if old_expected != new_expected:
            notes.append(f"expected {old_expected or '?'} -> {new_expected or '?'}")
        if text(before.get("category_id")) != text(row.get("category_id")):
            notes.append(f"category {text(before.get('category_id'))} -> {text(row.get('category_id'))}")
        checkpoint = key[0]
        signals.append(Signal(
            kind=GRADE_FLIP,
            category_id=text(row.get("category_id")),
            item_id=text(row.get("item_id")),
            checkpoint_id=checkpoint,
            prompt=prompt_of(row),
            response=text(row["response_text"]),
            expected_behavior=new_expected,
            verdicts=(Verdict(old_version, _label(before, harm_flipped)), Verdict(new_version, _label(row, harm_flipped))),
            measurements=frozenset({Measurement(old_version, checkpoint, text(before.get("item_id"))),
                                    Measurement(new_version, checkpoint, text(row.get("item_id")))}),
            sensitive=is_sensitive(new_expected, [text(before["behavior"]), text(row["behavior"])],
                                   [text(before.get("outcome")), text(row.get("outcome"))], [old_harm, new_harm]),
            note="; ".join(notes),
        ))
    return FlipScan(tuple(signals), compared, grader_changed)
