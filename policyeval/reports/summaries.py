"""Short Markdown summaries shown beside a table (the Dagster UI's asset metadata, the CLI):
rates with intervals, the worst failures, deployment drift, graders side by side.

Model output is untrusted text: it is truncated here and escaped by the table it goes into.
"""

from __future__ import annotations

from typing import Mapping

import pandas as pd

from ..markdown import markdown_rows, shorten, to_markdown_table
from ..stats.intervals import format_rate, rate_text
from ..validation import GraderValidation
from .drift import rate_label
from .render import pp

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
            "prompt": shorten(r["prompt_text"]),
            "response": shorten(r["response_text"]),
        }
        for _, r in failures.iterrows()
    ]
    return to_markdown_table(pd.DataFrame(rows))


def drift_markdown(rates: pd.DataFrame) -> str:
    """Per category: deployment and baseline refusal rates with intervals, the difference and the verdict."""
    rows = [
        {
            "category": r.category_id,
            "deployment": rate_label(r.k, r.n, r.rate, r.low, r.high),
            "eval baseline": rate_label(r.baseline_k, r.baseline_n, r.baseline_rate, r.baseline_low, r.baseline_high),
            "difference": pp(r.delta),
            "status": "drift" if r.drifted else "no baseline" if not r.baseline_n else "within",
        }
        for r in rates.itertuples()
    ]
    return markdown_rows(pd.DataFrame(rows), limit=100)


def graders_markdown(validations: Mapping[str, GraderValidation]) -> str:
    """Graders measured on the same gold rows: accuracy with its interval and Cohen's kappa."""
    rows = [{"grader": name,
             "accuracy": format_rate(v.n_correct, v.n_items, v.accuracy, v.accuracy_low, v.accuracy_high),
             "kappa": "undefined" if v.cohen_kappa is None else f"{v.cohen_kappa:.3f}"}
            for name, v in validations.items()]
    return to_markdown_table(pd.DataFrame(rows))


def layers_markdown(attribution: pd.DataFrame) -> str:
    """Where each item ended in a system (input filter, model, output filter, through), with intervals."""
    from ..safeguards.layers import layer_table

    table = layer_table(attribution)
    return to_markdown_table(table) if not table.empty else "No graded items."
