"""How a check result reads in the Dagster UI: a one-line reason and the offending rows.

Table contents come from model output and generated prompts, so every cell is escaped
before it reaches Markdown, and tables are capped so a broken table cannot flood the UI.
"""

from __future__ import annotations

import dagster as dg
import pandas as pd

from assets.metadata import escape_text
from policyeval.stats import to_markdown_table

from .expectations import SAMPLE_ROWS, ValidationSummary


def markdown_rows(frame: pd.DataFrame, limit: int = SAMPLE_ROWS) -> str:
    """At most `limit` rows as an escaped Markdown table, saying how many were left out."""
    if frame.empty:
        return "None."
    shown = frame.head(limit).copy()
    for column in shown.columns:
        shown[column] = [v if isinstance(v, (bool, int, float)) and not pd.isna(v) else escape_text(v) for v in shown[column]]
    table = to_markdown_table(shown)
    if len(frame) > limit:
        table += f"\n\n… and {len(frame) - limit} more."
    return table


def summary_result(
    summary: ValidationSummary,
    severity: dg.AssetCheckSeverity,
    offending: pd.DataFrame | None = None,
    metadata: dict | None = None,
) -> dg.AssetCheckResult:
    """A check result from a suite's summary.

    `offending` replaces GX's per-expectation samples when the caller has a more telling
    view of the bad rows (e.g. coverage gaps with their minimum and count).
    """
    rows = summary.failing_rows() if offending is None else offending
    return dg.AssetCheckResult(
        passed=summary.success,
        severity=severity,
        description=summary.reason(),
        metadata={
            "rows": summary.row_count,
            "failed_expectations": len(summary.failures),
            "expectations": dg.MetadataValue.md(markdown_rows(summary.results_frame(), limit=100)),
            "failing_rows": dg.MetadataValue.md(markdown_rows(rows) if not summary.success else "None."),
            **(metadata or {}),
        },
    )
