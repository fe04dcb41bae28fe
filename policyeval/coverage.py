"""Coverage of the taxonomy: items per category x expected behavior x source, against
the pack's minimum counts.

A rate measured on three items says little; coverage shows where the eval set is too
thin to support the numbers drawn from it, before anyone reads those numbers.

Coverage of the measurement goes beyond counts: a category with no items of a behavior
the policy expects in it cannot show that failure mode at all; a category whose items
come almost all from one source (one template, one mutation) measures that source more
than the category; and a category without human gold labels has rates nobody has
checked the grader on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from .policy.model import PolicyPack
from .records import COMPLY

DOMINANT_SOURCE_SHARE = 0.8  # one source above this share of a category's items is flagged
MISSING_BEHAVIOR_COLUMNS = ["domain_id", "category_id", "expected_behavior", "n", "exempt_reason"]
SOURCE_SHARE_COLUMNS = ["category_id", "source", "n", "share", "dominant"]
GOLD_COVERAGE_COLUMNS = ["domain_id", "category_id", "n_gold", "labels"]


def _empty(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(columns=columns)


@dataclass(frozen=True)
class CoverageReport:
    cells: pd.DataFrame  # domain_id, category_id, severity, expected_behavior, source, n
    targets: pd.DataFrame  # domain_id, category_id, expected_behavior, minimum, n, gap, met
    gaps: pd.DataFrame  # the rows of `targets` that are not met
    missing_behaviors: pd.DataFrame = field(default_factory=lambda: _empty(MISSING_BEHAVIOR_COLUMNS))
    source_shares: pd.DataFrame = field(default_factory=lambda: _empty(SOURCE_SHARE_COLUMNS))
    gold: pd.DataFrame | None = None  # per category gold label counts; None when no gold set was given

    @property
    def dominated(self) -> pd.DataFrame:
        """Categories where one source supplies more than DOMINANT_SOURCE_SHARE of the items."""
        shares = self.source_shares
        return shares[shares["dominant"].astype(bool)].reset_index(drop=True) if len(shares) else shares

    @property
    def missing_gold(self) -> pd.DataFrame | None:
        """Categories without a single gold label (None when no gold set was given)."""
        if self.gold is None:
            return None
        return self.gold[self.gold["n_gold"] == 0].reset_index(drop=True)

    @property
    def n_targets(self) -> int:
        return len(self.targets)

    @property
    def n_met(self) -> int:
        return int(self.targets["met"].sum()) if len(self.targets) else 0


def coverage_report(pack: PolicyPack, items: pd.DataFrame, gold: pd.DataFrame | None = None) -> CoverageReport:
    """Count items per taxonomy leaf and compare with each category's `min_items`.

    Every category of the pack appears in `targets`, including those with no items at all;
    a category with no `min_items` is held to at least one item per behavior it names.
    With `gold` (a gold set: category_id, label), the report also counts gold labels per
    category.
    """
    columns = ["domain_id", "category_id", "severity", "expected_behavior", "source"]
    if len(items):
        cells = items.groupby(columns, dropna=False).size().reset_index(name="n")
    else:
        cells = pd.DataFrame(columns=columns + ["n"])
    per_behavior = cells.groupby(["category_id", "expected_behavior"])["n"].sum().to_dict() if len(cells) else {}

    rows = []
    for domain, category in pack.categories():
        minimums = dict(category.min_items)
        if not minimums:
            named = {e.expected for e in category.examples} | {t.expected for t in category.templates}
            minimums = {behavior: 1 for behavior in sorted(named)}
        for behavior, minimum in sorted(minimums.items()):
            n = int(per_behavior.get((category.id, behavior), 0))
            rows.append(
                {
                    "domain_id": domain.id,
                    "category_id": category.id,
                    "severity": category.severity,
                    "expected_behavior": behavior,
                    "minimum": int(minimum),
                    "n": n,
                    "gap": max(0, int(minimum) - n),
                    "met": n >= minimum,
                }
            )
    targets = pd.DataFrame(rows, columns=["domain_id", "category_id", "severity", "expected_behavior", "minimum", "n", "gap", "met"])
    gaps = targets[~targets["met"]].reset_index(drop=True) if len(targets) else targets
    return CoverageReport(
        cells=cells,
        targets=targets,
        gaps=gaps,
        missing_behaviors=missing_behaviors(pack, items),
        source_shares=source_shares(items),
        gold=None if gold is None else gold_coverage(pack, gold),
    )


def missing_behaviors(pack: PolicyPack, items: pd.DataFrame) -> pd.DataFrame:
    """Category x expected behavior pairs with no item at all.

    The behaviors a category expects are the two sides of its boundary plus any named in
    `min_items`. A pair the pack exempts (`no_comply_material_reason` for comply,
    `no_refuse_material_reason` for the other side) is listed with its reason.
    """
    have = set()
    if len(items) and {"category_id", "expected_behavior"} <= set(items.columns):
        have = set(zip(items["category_id"], items["expected_behavior"]))
    rows = []
    for domain, category in pack.categories():
        expected = dict.fromkeys([category.expected.allowed, category.expected.disallowed, *sorted(category.min_items)])
        for behavior in expected:
            if (category.id, behavior) in have:
                continue
            reason = category.no_comply_material_reason if behavior == COMPLY else category.no_refuse_material_reason
            rows.append({"domain_id": domain.id, "category_id": category.id, "expected_behavior": behavior, "n": 0, "exempt_reason": reason or ""})
    return pd.DataFrame(rows, columns=MISSING_BEHAVIOR_COLUMNS)


def source_shares(items: pd.DataFrame, threshold: float = DOMINANT_SOURCE_SHARE) -> pd.DataFrame:
    """Share of each category's items per source; `dominant` where one source exceeds `threshold`."""
    if not len(items) or not {"category_id", "source"} <= set(items.columns):
        return _empty(SOURCE_SHARE_COLUMNS)
    counts = items.groupby(["category_id", "source"], dropna=False).size().rename("n").reset_index()
    totals = counts.groupby("category_id")["n"].transform("sum")
    counts["share"] = counts["n"] / totals
    counts["dominant"] = counts["share"] > threshold
    return counts.sort_values(["category_id", "n", "source"], ascending=[True, False, True]).reset_index(drop=True)[SOURCE_SHARE_COLUMNS]


def gold_coverage(pack: PolicyPack, gold: pd.DataFrame) -> pd.DataFrame:
    """Gold labels per pack category (zero where a category has none), with the labels seen."""
    by_category: dict[str, list[str]] = {}
    if len(gold) and {"category_id", "label"} <= set(gold.columns):
        for category_id, label in zip(gold["category_id"], gold["label"]):
            by_category.setdefault(str(category_id), []).append(str(label))
    rows = []
    for domain, category in pack.categories():
        labels = by_category.get(category.id, [])
        counted = ", ".join(f"{label} {labels.count(label)}" for label in sorted(set(labels)))
        rows.append({"domain_id": domain.id, "category_id": category.id, "n_gold": len(labels), "labels": counted})
    return pd.DataFrame(rows, columns=GOLD_COVERAGE_COLUMNS)
