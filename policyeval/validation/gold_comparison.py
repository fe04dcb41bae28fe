"""The grader behind a grades table against a policy version's gold labels, item by item.

Not exported from `policyeval.validation`: this module grades (`policyeval.graders`), and
the graders' gold training imports `policyeval.validation`, so exporting it there would
make the two packages import each other.
"""

from __future__ import annotations

from typing import Any, Callable

import pandas as pd

from ..graders.grade_table import grade_texts
from ..policy.model import PolicyPack
from .grader_validation import GraderValidation, validate_grader

COMPARISON_COLUMNS = ["item_id", "category_id", "gold_label", "grader_behavior", "correct", "verdict_from", "gold_source", "campaign_id", "gold_version"]


def compare_with_gold(gold: pd.DataFrame | None, grades_frame: pd.DataFrame, pack: PolicyPack, grader_factory: Callable[[], Any]) -> pd.DataFrame:
    """One row per gold item: the human label beside the grader's verdict on the same response.

    A gold label belongs to one response, so the verdict is the `grades` row of the same
    item *and* response text when this checkpoint gave that response; gold items labeled
    on another checkpoint's response are graded here with the same grader.
    """
    if gold is None or gold.empty:
        return pd.DataFrame(columns=COMPARISON_COLUMNS)
    verdicts = {(i, r): b for i, r, b in zip(grades_frame["item_id"], grades_frame["response_text"], grades_frame["behavior"])}
    found = [verdicts.get((i, r)) for i, r in zip(gold["item_id"], gold["response_text"])]
    missing = [n for n, v in enumerate(found) if v is None]
    regraded_rows = set(missing)
    if missing:
        categories = {c.id: c for _, c in pack.categories()}
        regraded = grade_texts(
            [gold["prompt_text"].iat[n] for n in missing],
            [gold["response_text"].iat[n] for n in missing],
            grader_factory(),
            list(pack.behaviors),
            [categories.get(gold["category_id"].iat[n]) for n in missing],
        )
        for n, grade in zip(missing, regraded):
            found[n] = grade.behavior
    table = pd.DataFrame(
        {
            "item_id": gold["item_id"].tolist(),
            "category_id": gold["category_id"].tolist(),
            "gold_label": gold["label"].tolist(),
            "grader_behavior": found,
            "verdict_from": ["regraded" if n in regraded_rows else "grades" for n in range(len(gold))],
            "gold_source": gold["source"].tolist(),
            "campaign_id": gold["campaign_id"].tolist(),
            "gold_version": gold["gold_version"].tolist(),
        }
    )
    table["correct"] = table["gold_label"] == table["grader_behavior"]
    return table[COMPARISON_COLUMNS]


def validation_of(table: pd.DataFrame, pack: PolicyPack) -> GraderValidation | None:
    """The grader's figures on a `compare_with_gold` table; None without gold items."""
    if table.empty:
        return None
    return validate_grader(table["gold_label"].tolist(), table["grader_behavior"].tolist(), table["category_id"].tolist(), list(pack.behaviors))


def grader_validity(gold: pd.DataFrame | None, grades_frame: pd.DataFrame, pack: PolicyPack, grader_factory: Callable[[], Any]) -> GraderValidation | None:
    """The grader against the policy version's gold labels, as `compare_with_gold` measures it; None without gold."""
    if gold is None or gold.empty:
        return None
    return validation_of(compare_with_gold(gold, grades_frame, pack, grader_factory), pack)
