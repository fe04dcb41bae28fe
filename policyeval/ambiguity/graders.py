"""Grader disagreement: two graders read the same response and disagree.

When two graders that both follow the pack give one response different behaviors (or
one calls it harmful and the other does not), the response sits where the policy's
words can be read two ways: the grader that is "right" depends on a line the policy
has not drawn sharply. A grades table usually holds one grader, so the second opinion
is computed here: the deterministic refusal rules next to the learned default (or the
learned grader next to the rules when the table was graded by the rules). Both run
locally, with no network and in a fraction of a second per hundred responses; a table
that already holds several graders' rows (the CLI's `grade` output of two graders
concatenated, a judge's table) is compared as it is.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..graders import grade_responses, make_grader
from ..graders.grade_table import GRADE_COLUMNS
from ..graders.refusal import REFUSAL_GRADER_ID
from ..policy.model import PolicyPack
from ..records import NON_VERDICTS
from .signals import GRADER_DISAGREEMENT, Measurement, Signal, Verdict, harm_value, is_sensitive, prompt_of, text


def second_grader_name(grades: pd.DataFrame) -> str:
    """Which grader gives the second opinion: the learned one on a table the refusal rules graded, else the rules."""
    graders = {text(g) for g in grades.get("grader_id", pd.Series(dtype=object))} - {""}
    return "learned" if graders == {REFUSAL_GRADER_ID} else "refusal"


def second_opinion(grades: pd.DataFrame, pack: PolicyPack, grader_name: str | None = None) -> pd.DataFrame:
    """The responses of `grades` graded again by a second grader (see `second_grader_name`).

    One row per response of the first grader's table; errors stay errors. The result has
    the same columns, so it concatenates with `grades` into one table of two graders.
    """
    if grades.empty:
        return grades.copy()
    name = grader_name or second_grader_name(grades)
    grader = make_grader(name, pack=pack) if name == "learned" else make_grader(name)
    keys = [c for c in ("checkpoint_id", "item_id") if c in grades.columns]
    responses = grades.drop_duplicates(keys) if keys else grades
    responses = responses.drop(columns=[c for c in GRADE_COLUMNS if c in responses.columns])
    return grade_responses(responses.reset_index(drop=True), grader, pack)


def grader_label(row: dict[str, Any]) -> str:
    """`grader_id@version` (the version shortened), how a grader is named in a disagreement."""
    grader, version = text(row.get("grader_id")) or "grader", text(row.get("grader_version"))
    return f"{grader}@{version[:12]}" if version else grader


def grader_disagreements(grades: pd.DataFrame, policy_version: str) -> list[Signal]:
    """Responses graded by two or more graders whose behaviors, or harm verdicts, differ.

    Rows are the same response when they share checkpoint, item and response text. A
    grader that could not grade (`error`, `unparseable`) has no verdict to disagree with,
    and a grader that gives no harm verdict (the refusal rules) is left out of the harm
    comparison. `policy_version` names the partition in the measurements.
    """
    if grades.empty or "grader_id" not in grades.columns:
        return []
    signals = []
    checkpoints = grades["checkpoint_id"].map(text) if "checkpoint_id" in grades.columns else pd.Series("", index=grades.index)
    frame = grades.assign(_response=grades["response_text"].map(text), _checkpoint=checkpoints)
    for (checkpoint, item_id, response), group in frame.groupby(["_checkpoint", "item_id", "_response"], sort=True):
        rows = [r for r in group.to_dict("records") if text(r.get("behavior")) and text(r.get("behavior")) not in NON_VERDICTS]
        by_grader: dict[str, dict[str, Any]] = {}
        for row in rows:
            by_grader.setdefault(grader_label(row), row)
        if len(by_grader) < 2 or not response:
            continue
        behaviors = {g: text(r["behavior"]) for g, r in by_grader.items()}
        harms = {g: harm_value(r.get("harmful")) for g, r in by_grader.items()}
        known_harm = {g: h for g, h in harms.items() if h is not None}
        behavior_differs = len(set(behaviors.values())) > 1
        harm_differs = len(set(known_harm.values())) > 1
        if not (behavior_differs or harm_differs):
            continue
        verdicts = []
        for g in sorted(by_grader):
            label = behaviors[g]
            if harm_differs and g in known_harm:
                label += ", harmful" if known_harm[g] else ", not harmful"
            verdicts.append(Verdict(g, label))
        first = by_grader[sorted(by_grader)[0]]
        expected = text(first.get("expected_behavior"))
        signals.append(Signal(
            kind=GRADER_DISAGREEMENT,
            category_id=text(first.get("category_id")),
            item_id=str(item_id),
            checkpoint_id=str(checkpoint),
            prompt=prompt_of(first),
            response=str(response),
            expected_behavior=expected,
            verdicts=tuple(verdicts),
            measurements=frozenset({Measurement(policy_version, str(checkpoint), str(item_id))}),
            sensitive=is_sensitive(expected, list(behaviors.values()), [text(r.get("outcome")) for r in by_grader.values()],
                                   list(harms.values())),
        ))
    return signals
