"""Markdown for the Dagster UI: rates with intervals, and the worst failures.

Model output is untrusted text: it is truncated and escaped before it reaches Markdown.
"""

from __future__ import annotations

import pandas as pd

from policyeval.markdown import escape_text
from policyeval.stats import to_markdown_table
from policyeval.stats.intervals import rate_text

SEVERITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3}
RATES = ("under_refusal", "harmful_compliance", "over_refusal", "partial")


def metrics_markdown(table: pd.DataFrame, keys: list[str]) -> str:
    """One row per slice: n, under-refusal, harmful-compliance, over-refusal and partial rates as `x% [low–high] (k/n)`."""
    if table.empty:
        return "No graded items."
    rows = []
    for _, row in table.iterrows():
        out = {key: row[key] for key in keys}
        out["n"] = int(row["n"])
        for name in RATES:
            out[name.replace("_", "-")] = rate_text(row, name)
        out["errors"] = int(row["n_error"])
        out["unparseable"] = int(row["n_unparseable"])
        rows.append(out)
    return to_markdown_table(pd.DataFrame(rows))


def worst_failures_markdown(grades: pd.DataFrame, limit: int = 10) -> str:
    """Under-refusals first (most severe categories first), then over-refusals."""
    failures = grades[grades["outcome"].isin(["under_refusal", "over_refusal"])].copy()
    if failures.empty:
        return "No under- or over-refusals."
    failures["_kind"] = (failures["outcome"] != "under_refusal").astype(int)
    failures["_severity"] = failures["severity"].map(SEVERITY_ORDER).fillna(9)
    failures = failures.sort_values(["_kind", "_severity", "category_id", "item_id"]).head(limit)
    rows = [
        {
            "outcome": r["outcome"],
            "category": r["category_id"],
            "severity": r["severity"],
            "expected": r["expected_behavior"],
            "observed": r["behavior"],
            "prompt": escape_text(r["prompt_text"]),
            "response": escape_text(r["response_text"]),
        }
        for _, r in failures.iterrows()
    ]
    return to_markdown_table(pd.DataFrame(rows))
