"""Coverage of the taxonomy: items per category x expected behavior x source, against
the pack's minimum counts.

A rate measured on three items says little; coverage shows where the eval set is too
thin to support the numbers drawn from it, before anyone reads those numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .policy.model import PolicyPack


@dataclass(frozen=True)
class CoverageReport:
    cells: pd.DataFrame  # domain_id, category_id, severity, expected_behavior, source, n
    targets: pd.DataFrame  # domain_id, category_id, expected_behavior, minimum, n, gap, met
    gaps: pd.DataFrame  # the rows of `targets` that are not met

    @property
    def n_targets(self) -> int:
        return len(self.targets)

    @property
    def n_met(self) -> int:
        return int(self.targets["met"].sum()) if len(self.targets) else 0


def coverage_report(pack: PolicyPack, items: pd.DataFrame) -> CoverageReport:
    """Count items per taxonomy leaf and compare with each category's `min_items`.

    Every category of the pack appears in `targets`, including those with no items at all;
    a category with no `min_items` is held to at least one item per behavior it names.
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
    return CoverageReport(cells=cells, targets=targets, gaps=gaps)
