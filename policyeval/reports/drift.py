"""Deployment drift: refusal rates of sampled production traffic over time, per category,
against the checkpoint's eval baseline (see `policyeval.deployment.drift` for the rule).
"""

from __future__ import annotations

from typing import Any, Mapping

import pandas as pd

from ..deployment.drift import ALL_CATEGORIES, DriftResult
from ..stats.intervals import format_rate
from . import charts
from .lineage import footer
from .render import Document, Paragraph, Stat, Stats, Styled, plural, pp, section, table


def rate_label(k: Any, n: Any, rate: Any, low: Any, high: Any) -> str:
    """`x% [low–high] (k/n)`, or a dash where nothing was measured."""
    if pd.isna(n) or not int(n):
        return "–"
    return format_rate(int(k), int(n), None if pd.isna(rate) else float(rate), float(low), float(high))


def drift_document(result: DriftResult, *, lineage: Mapping[str, Any] | None = None, source: str = "") -> Document:
    """The drift chart (one panel per category) and the table of every bucket, flagged ones first."""
    rates = result.rates.copy()
    rates["label"] = [rate_label(r.k, r.n, r.rate, r.low, r.high) for r in rates.itertuples()]
    rates["baseline_label"] = [rate_label(r.baseline_k, r.baseline_n, r.baseline_rate, r.baseline_low, r.baseline_high)
                               for r in rates.itertuples()]
    categories = [c for c in sorted(set(rates["category_id"])) if c != ALL_CATEGORIES]
    order = [ALL_CATEGORIES, *categories]
    rates["_order"] = rates["category_id"].map({c: i for i, c in enumerate(order)})
    rates = rates.sort_values(["_order", "bucket_start"]).drop(columns="_order")
    flagged = rates[rates["drifted"]]
    no_baseline = sorted(c for c in categories if not int(rates[rates["category_id"] == c]["baseline_n"].max() or 0))

    rows = [(r.category_id, r.bucket_start.isoformat(), r.label, r.baseline_label, pp(r.delta),
             Styled("drift", "bad") if r.drifted else Styled("no baseline", "warn") if not r.baseline_n
             else Styled("within", "good"))
            for r in rates.itertuples()]
    flagged_rows = [(r.category_id, r.bucket_start.isoformat(), r.label, r.baseline_label, pp(r.delta))
                    for r in flagged.itertuples()]
    baseline_rows = [(r.category_id, rate_label(r.k, r.n, r.rate, r.low, r.high)) for r in result.baseline.itertuples()]
    scrubbed = ", ".join(f"{n} {kind.lower()}" for kind, n in result.scrubbed.items()) or "none found"
    n_scrubbed = sum(result.scrubbed.values())
    unit = "day (UTC)" if result.bucket == "day" else "ISO week (Monday to Sunday, UTC)"
    chart = charts.drift_chart(rates.assign(category_id=pd.Categorical(rates["category_id"], order)),
                               title=f"Refusal rate per {result.bucket} with 95% Wilson band; dashed: eval baseline")

    sections = (
        section(
            "Summary",
            Stats((
                Stat("Conversations", str(result.n_conversations), f"{result.n_invalid} without a usable grade"),
                Stat("Flagged", str(len(flagged)), f"category × {result.bucket} buckets beyond the margin",
                     "bad" if len(flagged) else "good"),
                Stat("Margin", pp(result.margin).lstrip("+"), "and Wilson intervals apart"),
                Stat("Personal data scrubbed", str(n_scrubbed), f"on import: {scrubbed}"),
            )),
            Paragraph(f"A {result.bucket} of a category is flagged when its refusal rate differs from the eval baseline "
                      f"by more than {100 * result.margin:.1f} percentage points and the two 95% Wilson intervals do "
                      "not overlap. The mix of requests in deployment is unknown, so a flag says the model's "
                      "behavior or the traffic in that category changed: look at the conversations."),
            Paragraph(f"Categories with no eval baseline (never flagged): {', '.join(no_baseline)}.", "warn")
            if no_baseline else None,
        ),
        section("Flagged", table(("category", "from", "deployment", "eval baseline", "difference"), flagged_rows)
                if flagged_rows else Paragraph("No bucket drifted beyond the margin.", "good")),
        section("Over time", chart,
                table(("category", "from", "deployment", "eval baseline", "difference", "status"), rows,
                      caption=f"One row per category and {unit}.", numeric=("difference",))),
        section("Eval baseline", table(("category", "refusal rate on the eval set"), baseline_rows)),
    )
    parts = {
        "deployment sample": source,
        "baseline checkpoint": result.baseline_checkpoint,
        "graders": ", ".join(result.graders),
        "bucket": result.bucket,
        "margin": f"{result.margin:g}",
    }
    return Document(
        title=f"Deployment drift against {result.baseline_checkpoint or 'the eval baseline'}",
        subtitle=f"{plural(result.n_conversations, 'conversation')} · {len(flagged)} flagged · by {result.bucket}",
        sections=sections,
        footer=footer(parts, lineage),
        kind="drift",
    )


def note_document(title: str, subtitle: str, note: str, lineage: Mapping[str, Any]) -> Document:
    """A report that says, in one paragraph, why there is nothing to chart (a day without traffic)."""
    return Document(title=title, subtitle=subtitle, sections=(section("Summary", Paragraph(note)),), footer=footer({}, lineage))
