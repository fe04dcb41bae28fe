"""How far annotators agree with each other and with gold.

Inter-annotator agreement is computed for the whole campaign, per category (a policy
boundary that people cannot apply consistently shows up here first) and per annotator
pair (one annotator out of step shows up here). Hidden gold items measure each
annotator against settled labels: accuracy and Cohen's kappa vs gold, and an annotator
under either threshold is flagged together with the items they missed.

In a campaign each item has `overlap_k` annotators out of many, so Fleiss' kappa is
computed on rating slots (each item's labels side by side, over items with the full
number of labels) rather than on annotator columns, where no item would be complete.
Percent agreement, Cohen's kappa (mean over pairs) and Krippendorff's alpha are those
of `policyeval.stats.agreement` on annotator columns.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import pandas as pd

from ..errors import PolicyevalError
from ..stats.agreement import AgreementResult, agreement
from .campaign import Campaign

DEFAULT_MIN_KAPPA = 0.6
DEFAULT_MIN_ACCURACY = 0.8


@dataclass(frozen=True)
class GoldCalibration:
    """One annotator against hidden gold items."""

    annotator: str
    n_gold: int  # gold items this annotator labeled
    correct: int
    accuracy: float | None
    kappa: float | None  # None when undefined (e.g. every gold label the same and matched)
    flagged: bool
    missed: tuple[tuple[str, str, str], ...]  # (item_id, annotator's label, gold label)


@dataclass(frozen=True)
class PairAgreement:
    first: str
    second: str
    n_items: int  # items both labeled
    result: AgreementResult | None


@dataclass(frozen=True)
class CalibrationReport:
    campaign_id: str
    policy_hash: str
    n_labels: int
    overall: AgreementResult | None
    by_category: dict[str, AgreementResult | None]
    by_pair: list[PairAgreement]
    gold: list[GoldCalibration]
    min_kappa: float
    min_accuracy: float

    @property
    def flagged(self) -> list[GoldCalibration]:
        return [g for g in self.gold if g.flagged]

    def as_dict(self) -> dict[str, Any]:
        def stats(result: AgreementResult | None) -> dict[str, Any] | None:
            return None if result is None else {**result.as_dict(), "n_items_complete": result.n_items_complete}

        return {
            "campaign_id": self.campaign_id,
            "policy_hash": self.policy_hash,
            "n_labels": self.n_labels,
            "overall": stats(self.overall),
            "by_category": {c: stats(r) for c, r in self.by_category.items()},
            "by_pair": [{"annotators": [p.first, p.second], "n_items": p.n_items, **(stats(p.result) or {})}
                        for p in self.by_pair],
            "gold": [{"annotator": g.annotator, "n_gold": g.n_gold, "correct": g.correct, "accuracy": g.accuracy,
                      "kappa": g.kappa, "flagged": g.flagged,
                      "missed": [{"item_id": i, "label": lab, "gold": gold} for i, lab, gold in g.missed]}
                     for g in self.gold],
            "thresholds": {"min_kappa": self.min_kappa, "min_accuracy": self.min_accuracy},
        }


AGREEMENT_COLUMNS = ["scope", "name", "n_items", "n_items_complete", "percent_agreement", "cohen_kappa", "fleiss_kappa", "krippendorff_alpha", "accuracy", "flagged", "missed"]


def agreement_table(report: CalibrationReport) -> pd.DataFrame:
    """A calibration report as one table: a row overall, per category, per annotator pair
    (scopes overall, category, pair) and per annotator against hidden gold (scope vs_gold)."""

    def row(scope: str, name: str, result: AgreementResult | None) -> dict[str, Any]:
        if result is None:
            return {"scope": scope, "name": name, "n_items": 0, "n_items_complete": 0}
        return {"scope": scope, "name": name, "n_items": result.n_items, "n_items_complete": result.n_items_complete,
                "percent_agreement": result.percent_agreement, "cohen_kappa": result.cohen_kappa,
                "fleiss_kappa": result.fleiss_kappa, "krippendorff_alpha": result.krippendorff_alpha}

    rows = [row("overall", "overall", report.overall)]
    rows += [row("category", category, result) for category, result in report.by_category.items()]
    rows += [row("pair", f"{p.first} / {p.second}", p.result) for p in report.by_pair]
    rows += [
        {"scope": "vs_gold", "name": g.annotator, "n_items": g.n_gold, "cohen_kappa": g.kappa, "accuracy": g.accuracy,
         "flagged": g.flagged, "missed": ", ".join(item for item, _, _ in g.missed)}
        for g in report.gold
    ]
    return pd.DataFrame(rows, columns=AGREEMENT_COLUMNS)


def label_matrix(campaign: Campaign, annotations: pd.DataFrame) -> pd.DataFrame:
    """One row per campaign item (index item_id), one column per annotator; None where unlabeled."""
    matrix = pd.DataFrame(index=pd.Index(campaign.items["item_id"], name="item_id"),
                          columns=list(campaign.annotators), dtype=object)
    for annotator, item_id, label in annotations[["annotator", "item_id", "label"]].itertuples(index=False):
        if item_id in matrix.index and annotator in matrix.columns:
            matrix.at[item_id, annotator] = label
    return matrix.astype(object).where(matrix.notna(), None)


def given_labels(row: pd.Series) -> dict[str, str]:
    """Annotator -> label for one row of `label_matrix`, leaving out annotators without one.

    A row taken out of the matrix (iterrows) holds NaN, not None, where nobody labeled."""
    return {str(a): v for a, v in row.items() if isinstance(v, str)}


def calibrate(campaign: Campaign, annotations: pd.DataFrame, *, min_kappa: float = DEFAULT_MIN_KAPPA,
              min_accuracy: float = DEFAULT_MIN_ACCURACY) -> CalibrationReport:
    """Agreement overall, per category and per annotator pair, and each annotator vs gold."""
    matrix = label_matrix(campaign, annotations)
    categories = campaign.items.set_index("item_id")["category_id"]
    by_category = {str(c): campaign_agreement(matrix[categories.reindex(matrix.index) == c])
                   for c in sorted(categories.dropna().unique())}
    pairs = []
    for a, b in combinations(campaign.annotators, 2):
        both = matrix[[a, b]].dropna()
        pairs.append(PairAgreement(a, b, len(both), _agreement_or_none(both) if len(both) else None))
    gold = [_gold_calibration(a, matrix[a], campaign.gold_labels, min_kappa, min_accuracy) for a in campaign.annotators]
    return CalibrationReport(
        campaign_id=campaign.campaign_id,
        policy_hash=campaign.policy_hash,
        n_labels=int(matrix.notna().sum().sum()),
        overall=campaign_agreement(matrix),
        by_category=by_category,
        by_pair=pairs,
        gold=gold,
        min_kappa=min_kappa,
        min_accuracy=min_accuracy,
    )


def campaign_agreement(matrix: pd.DataFrame) -> AgreementResult | None:
    """Agreement of an annotator matrix, with Fleiss' kappa taken over rating slots."""
    result = _agreement_or_none(matrix)
    if result is None:
        return None
    per_item = [[v for v in row if v is not None] for row in matrix.itertuples(index=False, name=None)]
    width = max(len(labels) for labels in per_item)
    slots = pd.DataFrame([labels + [None] * (width - len(labels)) for labels in per_item],
                         columns=[f"slot_{i}" for i in range(width)])
    by_slot = _agreement_or_none(slots)
    if by_slot is None:
        return result
    return dataclasses.replace(result, fleiss_kappa=by_slot.fleiss_kappa, n_items_complete=by_slot.n_items_complete)


def _agreement_or_none(frame: pd.DataFrame) -> AgreementResult | None:
    if frame.shape[1] < 2 or frame.empty:
        return None
    try:
        return agreement(frame)
    except PolicyevalError:  # fewer than two labels on every item
        return None


def _gold_calibration(annotator: str, labels: pd.Series, gold: dict[str, str], min_kappa: float,
                      min_accuracy: float) -> GoldCalibration:
    pairs = [(item_id, labels[item_id], g) for item_id, g in sorted(gold.items())
             if item_id in labels.index and labels[item_id] is not None]
    if not pairs:
        return GoldCalibration(annotator, 0, 0, None, None, False, ())
    correct = sum(label == g for _, label, g in pairs)
    accuracy = correct / len(pairs)
    versus = _agreement_or_none(pd.DataFrame({"annotator": [p[1] for p in pairs], "gold": [p[2] for p in pairs]}))
    kappa = versus.cohen_kappa if versus is not None else None
    flagged = accuracy < min_accuracy or (kappa is not None and kappa < min_kappa)
    missed = tuple((i, label, g) for i, label, g in pairs if label != g)
    return GoldCalibration(annotator, len(pairs), correct, accuracy, kappa, flagged, missed)
