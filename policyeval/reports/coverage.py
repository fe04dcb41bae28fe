"""Coverage of the taxonomy as a heatmap: where the eval set is too thin to trust.

Rows are the pack's categories; columns its expected behaviors, coloured by how much of
the category's `min_items` minimum is met, then split by where the items came from
(seed, template, mutation, ...). A rate measured on three items says little, so this is
read before any rate is. Counts come from `policyeval.coverage.coverage_report`.
"""

from __future__ import annotations

from typing import Any, Mapping

import pandas as pd

from ..coverage import CoverageReport, coverage_report
from ..policy.model import PolicyPack
from ..records import content_hash
from . import charts
from .lineage import footer
from .render import Document, Paragraph, Stat, Stats, Styled, pct, section, table


def _behavior_cells(report: CoverageReport) -> pd.DataFrame:
    """One row per category x behavior: n, minimum (0 when none), share of the minimum met, label."""
    targets = report.targets[["domain_id", "category_id", "expected_behavior", "minimum", "n"]].copy()
    counted = (report.cells.groupby(["domain_id", "category_id", "expected_behavior"], dropna=False)["n"].sum()
               .reset_index() if len(report.cells) else pd.DataFrame(columns=["domain_id", "category_id",
                                                                              "expected_behavior", "n"]))
    extra = counted.merge(targets[["category_id", "expected_behavior"]], how="left", indicator=True,
                          on=["category_id", "expected_behavior"])
    extra = extra[extra["_merge"] == "left_only"].drop(columns="_merge").assign(minimum=0)
    frame = pd.concat([targets, extra], ignore_index=True)
    frame["n"] = frame["n"].astype(int)
    frame["minimum"] = frame["minimum"].astype(int)
    frame["share"] = [min(1.0, n / m) if m else 1.0 for n, m in zip(frame["n"], frame["minimum"])]
    frame["label"] = [f"{n}/{m}" if m else str(n) for n, m in zip(frame["n"], frame["minimum"])]
    return frame


def _quality_sections(report: CoverageReport) -> list:
    """Missing behaviors, sources that dominate a category, and gold labels, where the core reports them."""
    out = []
    missing = getattr(report, "missing_behaviors", None)
    if missing is not None:
        rows = [(r.domain_id, r.category_id, r.expected_behavior,
                 Styled(f"exempt: {r.exempt_reason}", "muted") if r.exempt_reason else Styled("no items", "bad"))
                for r in missing.itertuples()]
        out.append(section("Missing behaviors",
                           Paragraph("A category with no item of a behavior the policy expects in it cannot show "
                                     "that failure at all."),
                           table(("domain", "category", "expected", "status"), rows)))
    dominated = getattr(report, "dominated", None)
    if dominated is not None:
        rows = [(r.category_id, r.source, int(r.n), pct(float(r.share))) for r in dominated.itertuples()]
        out.append(section("Dominant sources",
                           Paragraph("Categories where one source supplies most items measure that source more than "
                                     "the category."),
                           table(("category", "source", "items", "share"), rows, numeric=("items", "share"))))
    gold = getattr(report, "gold", None)
    if gold is not None:
        rows = [(r.domain_id, r.category_id, Styled(str(int(r.n_gold)), "bad" if not int(r.n_gold) else ""), r.labels)
                for r in gold.itertuples()]
        out.append(section("Gold labels", table(("domain", "category", "gold items", "labels"), rows,
                                                numeric=("gold items",))))
    return out


def coverage_document(pack: PolicyPack, items: pd.DataFrame, *, lineage: Mapping[str, Any] | None = None,
                      report: CoverageReport | None = None, gold: pd.DataFrame | None = None) -> Document:
    """The coverage heatmaps and the list of gaps for `items` (an eval-set table) under `pack`.

    `gold` (category_id, label) adds gold-label counts per category.
    """
    if report is None:
        report = coverage_report(pack, items, gold) if gold is not None else coverage_report(pack, items)
    order = [c.id for _, c in pack.categories()]
    behaviors = list(pack.behaviors)
    cells = _behavior_cells(report)
    extra_behaviors = sorted(set(cells["expected_behavior"]) - set(behaviors))
    x_order = [b for b in behaviors if b in set(cells["expected_behavior"])] + extra_behaviors

    by_source = report.cells.copy() if len(report.cells) else pd.DataFrame(
        columns=["domain_id", "category_id", "severity", "expected_behavior", "source", "n"])
    by_source["label"] = [str(int(n)) for n in by_source["n"]]
    sources = sorted({str(s) for s in by_source["source"].dropna()})

    behavior_map = charts.heatmap(
        cells, title="Items per category and expected behavior, against the pack's minimums",
        x="expected_behavior", y="category_id", value="share", text="label", color_title="share of minimum",
        domain=(0.0, 1.0), colors=("#f6c1bc", "#fbe3a6", "#bfe3c6"), x_order=x_order, y_order=order,
        description="Cells show items/minimum; red cells are below the category's min_items.")
    source_map = charts.heatmap(
        by_source.assign(n=by_source["n"].astype(int)), title="Items per category, expected behavior and source",
        x="source", y="category_id", value="n", text="label", facet="expected_behavior", color_title="items",
        x_order=sources, y_order=order, description="One panel per expected behavior; cells count items by source.")

    n_items = len(items)
    empty = [c for c in order if c not in set(report.cells["category_id"])] if len(report.cells) else order
    gap_rows = [(r.domain_id, r.category_id, r.severity, r.expected_behavior, r.minimum, r.n, Styled(str(r.gap), "bad"))
                for r in report.gaps.itertuples()]
    target_rows = [(r.domain_id, r.category_id, r.severity, r.expected_behavior, r.minimum, r.n,
                    Styled("met", "good") if r.met else Styled(f"short by {r.gap}", "bad"))
                   for r in report.targets.itertuples()]
    pivot_rows = []
    if len(report.cells):
        pivot = report.cells.pivot_table(index=["category_id", "expected_behavior"], columns="source", values="n",
                                         aggfunc="sum", fill_value=0)
        rank = {c: i for i, c in enumerate(order)}
        for (category, behavior), row in sorted(pivot.iterrows(), key=lambda kv: (rank.get(kv[0][0], 999), kv[0][1])):
            pivot_rows.append((category, behavior, *(int(row.get(s, 0)) for s in sources), int(row.sum())))

    met = report.n_met
    sections = [
        section(
            "Summary",
            Stats((
                Stat("Items", str(n_items), f"{len(order)} categories in the pack"),
                Stat("Minimums met", f"{met}/{report.n_targets}",
                     pct(met / report.n_targets if report.n_targets else None), "good" if met == report.n_targets else "bad"),
                Stat("Gaps", str(len(report.gaps)), f"{int(report.gaps['gap'].sum()) if len(report.gaps) else 0} items short"),
                Stat("Empty categories", str(len(empty)), ", ".join(empty[:6]) + (" …" if len(empty) > 6 else ""),
                     "bad" if empty else ""),
            )),
            Paragraph("A category without min_items is held to at least one item per behavior its examples and "
                      "templates name."),
        ),
        section("Gaps",
                table(("domain", "category", "severity", "expected", "minimum", "items", "short by"), gap_rows,
                      numeric=("minimum", "items", "short by")) if gap_rows else
                Paragraph("Every minimum is met.", "good")),
        section("Heatmap", behavior_map, source_map),
        section("Minimums",
                table(("domain", "category", "severity", "expected", "minimum", "items", "status"), target_rows,
                      numeric=("minimum", "items"))),
        *_quality_sections(report),
        section("By source",
                table(("category", "expected", *sources, "total"), pivot_rows, numeric=(*sources, "total"))),
    ]
    parts = {
        "policy": f"{pack.id} {pack.version}",
        "policy hash": pack.content_hash,
        "eval set hash": content_hash(sorted({str(v) for v in items["item_id"]})) if "item_id" in items else "",
    }
    return Document(
        title=f"Coverage: {pack.id} {pack.version}",
        subtitle=f"{n_items} items · {met} of {report.n_targets} minimums met",
        sections=tuple(sections),
        footer=footer(parts, lineage),
        kind="coverage",
    )
