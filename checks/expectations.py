"""Great Expectations suites for the pipeline's tables, and a runner that summarizes them.

Pure functions: no Dagster here, so the suites can run on any DataFrame (a notebook, a CI
job, a test). Each validation uses a fresh ephemeral GX context, because GX refuses to add a
datasource or suite name twice to one context and checks may run side by side.

Which rows fail matters more than that something failed: every result carries a sample of
the offending rows, identified by `item_id` (or `category_id` for per-category tables).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from functools import lru_cache
from types import ModuleType
from typing import Any

import pandas as pd

from policyeval.policy import PolicyPack
from policyeval.records import COMPLY, ITEM_SCHEMA, NON_VERDICTS, OUTCOMES

DEFAULT_MAX_RATE = 0.05  # error / unparseable ceiling when the pack sets none
SAMPLE_ROWS = 20  # offending rows kept per expectation
ID_COLUMNS = ("item_id", "category_id")  # how a failing row is named, first present wins


@lru_cache(maxsize=1)
def _gx() -> ModuleType:
    """great_expectations, imported once with analytics off (there is no network here)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    return importlib.import_module("great_expectations")


def _expectations() -> Any:
    return _gx().expectations


def _col(name: str) -> Any:
    from great_expectations.expectations.row_conditions import Column

    _gx()
    return Column(name)


# ---------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class ExpectationResult:
    """One expectation's verdict, with a sample of the rows that broke it."""

    description: str
    expectation: str  # GX type, e.g. expect_column_values_to_be_unique
    column: str | None
    success: bool
    element_count: int
    unexpected_count: int
    error: str = ""  # set when GX could not evaluate the expectation (e.g. missing column)
    failing_rows: pd.DataFrame = field(default_factory=pd.DataFrame, compare=False)


@dataclass(frozen=True)
class ValidationSummary:
    """A suite's verdict on one table."""

    suite_name: str
    success: bool
    row_count: int
    results: tuple[ExpectationResult, ...]

    @property
    def failures(self) -> list[ExpectationResult]:
        return [r for r in self.results if not r.success]

    def reason(self) -> str:
        """One line saying what failed, for a check's description."""
        if self.success:
            return f"{self.suite_name}: all {len(self.results)} expectations met on {self.row_count} rows."
        parts = []
        for r in self.failures:
            detail = r.error or f"{r.unexpected_count} of {r.element_count} rows"
            parts.append(f"{r.description} ({detail})")
        return f"{self.suite_name}: {len(self.failures)} of {len(self.results)} expectations failed: " + "; ".join(parts)

    def results_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {"expectation": r.description, "column": r.column or "", "success": r.success, "unexpected": r.unexpected_count, "rows": r.element_count, "error": r.error}
                for r in self.results
            ],
            columns=["expectation", "column", "success", "unexpected", "rows", "error"],
        )

    def failing_rows(self, limit: int = SAMPLE_ROWS) -> pd.DataFrame:
        """Offending rows across failed expectations: expectation, id, column, value."""
        frames = [r.failing_rows.assign(expectation=r.description) for r in self.failures if len(r.failing_rows)]
        columns = ["expectation", "id", "column", "value"]
        if not frames:
            return pd.DataFrame(columns=columns)
        return pd.concat(frames, ignore_index=True)[columns].head(limit)


def validate_frame(df: pd.DataFrame, suite_name: str, expectations: list[Any]) -> ValidationSummary:
    """Validate `df` against `expectations` (GX 1.x Expectation objects) in a fresh context."""
    gx = _gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    batch_definition = (
        context.data_sources.add_pandas("frames").add_dataframe_asset(suite_name).add_batch_definition_whole_dataframe("whole")
    )
    suite = context.suites.add(gx.ExpectationSuite(name=suite_name, expectations=[e.copy() for e in expectations]))
    id_columns = [c for c in ID_COLUMNS if c in df.columns][:1]
    result_format: dict[str, Any] = {"result_format": "SUMMARY", "partial_unexpected_count": SAMPLE_ROWS}
    if id_columns:
        result_format["unexpected_index_column_names"] = id_columns
    validation = batch_definition.get_batch(batch_parameters={"dataframe": df}).validate(suite, result_format=result_format)

    order = {e.id: i for i, e in enumerate(suite.expectations)}
    descriptions = {e.id: e.description for e in suite.expectations}
    ordered = sorted(validation.results, key=lambda r: order.get(r.expectation_config.id, len(order)))
    results = tuple(_result(r, descriptions.get(r.expectation_config.id), id_columns) for r in ordered)
    return ValidationSummary(suite_name=suite_name, success=all(r.success for r in results), row_count=len(df), results=results)


def _result(raw: Any, description: str | None, id_columns: list[str]) -> ExpectationResult:
    config = raw.expectation_config
    column = config.kwargs.get("column")
    info = raw.exception_info or {}
    errors = [info] if "raised_exception" in info else list(info.values())
    error = next((str(e.get("exception_message") or "") for e in errors if isinstance(e, dict) and e.get("raised_exception")), "")
    body = raw.result or {}
    if config.type == "expect_column_to_exist" and not raw.success:
        error = f"column {column!r} is missing"
    rows = []
    for entry in body.get("partial_unexpected_index_list") or []:
        if isinstance(entry, dict):
            ident = entry.get(id_columns[0]) if id_columns else None
            rows.append({"id": ident, "column": column or "", "value": entry.get(column, ident) if column else ident})
        else:
            rows.append({"id": f"row {entry}", "column": column or "", "value": None})
    if not rows and body.get("partial_unexpected_list"):
        rows = [{"id": None, "column": column or "", "value": v} for v in body["partial_unexpected_list"]]
    return ExpectationResult(
        description=description or config.type,
        expectation=config.type,
        column=column,
        success=bool(raw.success) and not error,
        element_count=int(body.get("element_count") or 0),
        unexpected_count=int(body.get("unexpected_count") or 0),
        error=error,
        failing_rows=pd.DataFrame(rows, columns=["id", "column", "value"]),
    )


# ---------------------------------------------------------------------------
# Suites


def eval_set_expectations(pack: PolicyPack) -> list[Any]:
    """Schema, ids, vocabulary, non-empty prompts and known categories of an eval set."""
    E = _expectations()
    behaviors = sorted(pack.behaviors)
    categories = sorted(c.id for _, c in pack.categories())
    schema = [E.ExpectColumnToExist(column=f.name, description=f"column {f.name} exists") for f in ITEM_SCHEMA]
    return [
        *schema,
        E.ExpectColumnValuesToNotBeNull(column="item_id", description="item_id is set"),
        E.ExpectColumnValuesToBeUnique(column="item_id", description="item_id is unique"),
        E.ExpectColumnValuesToNotBeNull(column="expected_behavior", description="expected_behavior is set"),
        E.ExpectColumnValuesToBeInSet(column="expected_behavior", value_set=behaviors, description="expected_behavior is in the pack's vocabulary"),
        E.ExpectColumnValuesToNotBeNull(column="category_id", description="category_id is set"),
        E.ExpectColumnValuesToBeInSet(column="category_id", value_set=categories, description="category_id is a category of the pack"),
        E.ExpectColumnValuesToNotBeNull(column="prompt_text", description="prompt_text is set"),
        E.ExpectColumnValuesToMatchRegex(column="prompt_text", regex=r"\S", description="prompt_text is not blank"),
        E.ExpectColumnValuesToNotBeNull(column="messages", description="messages is set"),
        E.ExpectColumnValuesToBeJsonParseable(column="messages", description="messages is JSON"),
        E.ExpectColumnValuesToMatchRegex(column="messages", regex=r"^\s*\[\s*\{", description="messages is a non-empty list of messages"),
    ]


def behavior_balance(eval_set: pd.DataFrame, pack: PolicyPack) -> pd.DataFrame:
    """Per pack category: should-comply and should-not-comply counts and whether both exist.

    A rate of under-refusal means little without benign look-alikes beside it (and the
    reverse), so each category needs both sides unless the pack records why it cannot
    (`no_comply_material_reason` / `no_refuse_material_reason`).
    """
    expected = eval_set["expected_behavior"] if "expected_behavior" in eval_set else pd.Series(dtype=object)
    category = eval_set["category_id"] if "category_id" in eval_set else pd.Series(dtype=object)
    rows = []
    for domain, cat in pack.categories():
        mine = expected[category == cat.id]
        comply = int((mine == COMPLY).sum())
        not_comply = int((mine.notna() & (mine != COMPLY)).sum())
        missing = []
        if not comply and not cat.no_comply_material_reason:
            missing.append("should-comply")
        if not not_comply and not cat.no_refuse_material_reason:
            missing.append("should-not-comply")
        exempt = "; ".join(r for r in (cat.no_comply_material_reason, cat.no_refuse_material_reason) if r)
        rows.append(
            {
                "category_id": cat.id,
                "domain_id": domain.id,
                "should_comply": comply,
                "should_not_comply": not_comply,
                "missing": ", ".join(missing),
                "exempt_reason": exempt,
                "balanced": not missing,
            }
        )
    return pd.DataFrame(rows, columns=["category_id", "domain_id", "should_comply", "should_not_comply", "missing", "exempt_reason", "balanced"])


def balance_expectations() -> list[Any]:
    """Run on `behavior_balance(...)`: every category has both sides (or says why not)."""
    E = _expectations()
    return [E.ExpectColumnValuesToBeInSet(column="balanced", value_set=[True], description="category has should-comply and should-not-comply items")]


def responses_expectations() -> list[Any]:
    """One row per item; every row carries a response or an error."""
    E = _expectations()
    return [
        *(E.ExpectColumnToExist(column=c, description=f"column {c} exists") for c in ("item_id", "status", "response_text", "error")),
        E.ExpectColumnValuesToNotBeNull(column="item_id", description="item_id is set"),
        E.ExpectColumnValuesToBeUnique(column="item_id", description="one response per item"),
        E.ExpectColumnValuesToNotBeNull(column="status", description="status is set"),
        E.ExpectColumnValuesToBeInSet(column="status", value_set=["ok", "error"], description="status is ok or error"),
        E.ExpectColumnValuesToNotBeNull(column="response_text", row_condition=_col("status") == "ok", description="an ok row has response_text"),
        E.ExpectColumnValuesToNotBeNull(column="error", row_condition=_col("status") == "error", description="an error row says what failed"),
    ]


def _ceiling(value: float | None) -> float:
    return DEFAULT_MAX_RATE if value is None else float(value)


def grades_expectations(pack: PolicyPack) -> list[Any]:
    """Observed behaviors and outcomes are known values."""
    E = _expectations()
    behaviors = sorted({*pack.behaviors, *NON_VERDICTS})
    return [
        *(E.ExpectColumnToExist(column=c, description=f"column {c} exists") for c in ("item_id", "behavior", "outcome")),
        E.ExpectColumnValuesToNotBeNull(column="behavior", description="behavior is set"),
        E.ExpectColumnValuesToBeInSet(column="behavior", value_set=behaviors, description="behavior is in the pack's vocabulary or error/unparseable"),
        E.ExpectColumnValuesToNotBeNull(column="outcome", description="outcome is set"),
        E.ExpectColumnValuesToBeInSet(column="outcome", value_set=list(OUTCOMES), description="outcome is a known outcome"),
    ]


def grade_rate_expectations(pack: PolicyPack) -> list[Any]:
    """Error and unparseable rates under the pack's ceilings (default 5% each).

    Expressed as `mostly` on "outcome is not X", so the offending rows are the X rows.
    """
    E = _expectations()
    thresholds = pack.header.thresholds
    out = []
    for outcome, ceiling in (("error", _ceiling(thresholds.max_error_rate)), ("unparseable", _ceiling(thresholds.max_unparseable_rate))):
        mostly = min(1.0, max(0.0, round(1.0 - ceiling, 12)))
        out.append(
            E.ExpectColumnValuesToNotBeInSet(
                column="outcome", value_set=[outcome], mostly=mostly, description=f"{outcome} rate at most {ceiling:.1%}"
            )
        )
    return out


def coverage_expectations() -> list[Any]:
    """Run on the coverage report: every category x behavior minimum is met."""
    E = _expectations()
    return [
        *(E.ExpectColumnToExist(column=c, description=f"column {c} exists") for c in ("category_id", "expected_behavior", "minimum", "n", "gap", "met")),
        E.ExpectColumnValuesToBeInSet(column="met", value_set=[True], description="coverage minimum met"),
    ]
