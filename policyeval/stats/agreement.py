"""Inter-rater agreement on nominal labels: percent, Cohen, Fleiss and Krippendorff.

Input is one column per rater and one row per item. A missing label (None, NaN or an
empty string) means the rater did not label that item; it is never a category of its
own, since "not labeled" agreeing with "not labeled" is not agreement.

Each statistic is taken over the items it can use, because they differ in what they
tolerate:

- percent_agreement: over items with at least two labels, the share of agreeing rater
  pairs on the item, averaged over items (for two raters: the share of items where
  they agree).
- cohen_kappa: two raters, over the items both labeled. With more raters, the mean of
  the pairwise kappas (Light's kappa), each pair on the items both labeled.
- fleiss_kappa: needs the same number of raters on every item, so only items labeled
  by all raters enter it (`n_items_complete`).
- krippendorff_alpha (nominal): uses every item with at least two labels.

A statistic that is undefined on the data (e.g. every label is the same category, so
chance agreement is already 1) is None rather than NaN, so it survives JSON.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import krippendorff
import numpy as np
import pandas as pd
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import fleiss_kappa as _fleiss_kappa

from ..errors import PolicyevalError


@dataclass(frozen=True)
class AgreementResult:
    """Agreement statistics; n_items counts the items with at least two labels."""

    percent_agreement: float
    cohen_kappa: float | None
    fleiss_kappa: float | None
    krippendorff_alpha: float | None
    n_items: int
    n_raters: int
    n_items_complete: int  # items labeled by every rater: the ones Fleiss' kappa uses
    categories: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """The six headline figures, as the CLI's JSON prints them."""
        return {
            "percent_agreement": self.percent_agreement,
            "cohen_kappa": self.cohen_kappa,
            "fleiss_kappa": self.fleiss_kappa,
            "krippendorff_alpha": self.krippendorff_alpha,
            "n_items": self.n_items,
            "n_raters": self.n_raters,
        }


def normalize_label(value: Any) -> str | None:
    """A label as text, or None when missing.

    Integral floats become integers ("1.0" -> "1") because pandas turns an integer
    column with a gap into floats, and 1 and 1.0 must be the same category.
    """
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return None
        if float(value).is_integer():
            return str(int(value))
        return str(float(value))
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    text = str(value).strip()
    return text or None


def agreement(labels: pd.DataFrame) -> AgreementResult:
    """Agreement statistics for `labels`: one column per rater, one row per item."""
    n_raters = labels.shape[1]
    if n_raters < 2:
        raise PolicyevalError(f"agreement needs at least 2 raters, got {n_raters}")
    if len(set(map(str, labels.columns))) != n_raters:
        raise PolicyevalError("agreement needs distinct rater columns")

    normalized = [[normalize_label(v) for v in row] for row in labels.itertuples(index=False, name=None)]
    rows = [row for row in normalized if sum(v is not None for v in row) >= 2]
    if not rows:
        raise PolicyevalError("agreement needs at least one item labeled by 2 or more raters")

    categories = tuple(sorted({v for row in rows for v in row if v is not None}))
    code = {c: i for i, c in enumerate(categories)}
    # counts[i, k]: how many raters put item i in category k.
    counts = np.zeros((len(rows), len(categories)), dtype=float)
    for i, row in enumerate(rows):
        for v in row:
            if v is not None:
                counts[i, code[v]] += 1
    complete = [i for i, row in enumerate(rows) if all(v is not None for v in row)]

    return AgreementResult(
        percent_agreement=_percent_agreement(counts),
        cohen_kappa=_mean_pairwise_cohen(rows, n_raters),
        fleiss_kappa=_defined(lambda: _fleiss_kappa(counts[complete], method="fleiss")) if complete else None,
        krippendorff_alpha=_krippendorff(counts),
        n_items=len(rows),
        n_raters=n_raters,
        n_items_complete=len(complete),
        categories=categories,
    )


def _percent_agreement(counts: np.ndarray) -> float:
    per_rater = counts.sum(axis=1)
    agreeing_pairs = (counts * (counts - 1)).sum(axis=1) / 2
    all_pairs = per_rater * (per_rater - 1) / 2
    return float(np.mean(agreeing_pairs / all_pairs))


def _mean_pairwise_cohen(rows: list[list[str | None]], n_raters: int) -> float | None:
    kappas = []
    for a, b in combinations(range(n_raters), 2):
        pairs = [(row[a], row[b]) for row in rows if row[a] is not None and row[b] is not None]
        if not pairs:
            continue
        first, second = zip(*pairs)
        kappa = _defined(lambda: cohen_kappa_score(list(first), list(second)))
        if kappa is not None:
            kappas.append(kappa)
    return float(np.mean(kappas)) if kappas else None


def _krippendorff(counts: np.ndarray) -> float | None:
    if counts.shape[1] < 2:
        return None  # one category: disagreement expected by chance is zero, alpha is 0/0
    return _defined(lambda: krippendorff.alpha(value_counts=counts, level_of_measurement="nominal"))


def _defined(compute) -> float | None:
    """Run a statistic, mapping 0/0 (NaN, inf, divide warnings) to None."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            value = float(compute())
        except (ZeroDivisionError, FloatingPointError):
            return None
    return value if math.isfinite(value) else None
