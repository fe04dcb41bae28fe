"""How a check result reads in the Dagster UI: a one-line reason and the offending rows.

Table contents come from model output and generated prompts, so every cell is escaped
before it reaches Markdown, and tables are capped so a broken table cannot flood the UI.
"""

from __future__ import annotations

import dagster as dg
import pandas as pd

from policyeval.markdown import markdown_rows

from .expectations import SAMPLE_ROWS, ValidationSummary


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
            "failing_rows": dg.MetadataValue.md(markdown_rows(rows, limit=SAMPLE_ROWS) if not summary.success else "None."),
            **(metadata or {}),
        },
    )
