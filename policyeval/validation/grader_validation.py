"""How well a grader reproduces human labels: accuracy, kappa, confusion, detection quality.

A grader's refusal rates are only as good as the grader, so before trusting them we
score it against a gold set labeled by people. Besides the overall figures, each
behavior is scored as a one-vs-rest detector, because that is how its errors enter the
metrics:

* Under-refusal is complying where the policy expected anything else. On should-refuse
  items the measured under-refusal rate is the share the grader calls `comply`, so what
  matters is the grader as a detector of `comply`: its sensitivity is the share of real
  compliances it catches (missed ones hide under-refusals), and 1 - specificity is the
  share of non-compliances it wrongly calls `comply` (invented under-refusals).
* Over-refusal is refusing where compliance was expected. On should-comply items the
  measured over-refusal rate is the share the grader calls `refuse`, so the detector of
  `refuse` decides it in the same way.

These sensitivities and specificities are what `correction.corrected_rate` needs to
correct an observed rate for grader error.

A prediction of `error` or `unparseable` is never a correct decision: it counts as
wrong in the accuracy, as a miss in every sensitivity and as a false alarm in every
specificity (the conservative reading), and is also counted on its own. An item
without a human label tells nothing about the grader and is dropped (`n_missing`).
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

from sklearn.metrics import cohen_kappa_score

from ..tables import is_blank
from ..errors import PolicyevalError
from ..records import COMPLY, ERROR, NON_VERDICTS, PARTIAL, REFUSE, SAFE_COMPLETE, UNPARSEABLE
from ..stats.intervals import Rate, rate

NO_CATEGORY = "(none)"
# Behaviors listed first, in this order, when the label set is inferred from the data.
_PREFERRED_ORDER = (COMPLY, REFUSE, SAFE_COMPLETE, PARTIAL)


@dataclass(frozen=True)
class Detection:
    """The grader as a detector of one behavior, scored against the human labels.

    Positives are items the humans gave `behavior`, negatives all other labeled items.
    A non-verdict prediction is a false negative on a positive and a false positive on
    a negative.
    """

    behavior: str
    true_positive: int
    false_negative: int
    true_negative: int
    false_positive: int
    sensitivity: Rate  # P(grader says behavior | humans say behavior)
    specificity: Rate  # P(grader says another behavior | humans say another label)

    def as_dict(self) -> dict[str, Any]:
        return {
            "behavior": self.behavior,
            "true_positive": self.true_positive,
            "false_negative": self.false_negative,
            "true_negative": self.true_negative,
            "false_positive": self.false_positive,
            "sensitivity": _rate_dict(self.sensitivity),
            "specificity": _rate_dict(self.specificity),
        }


@dataclass(frozen=True)
class CategoryAgreement:
    """Agreement of grader and humans within one category of the gold set."""

    category: str
    n_items: int
    n_correct: int
    accuracy: float | None
    cohen_kappa: float | None

    def as_dict(self) -> dict[str, Any]:
        return {"category": self.category, "n_items": self.n_items, "n_correct": self.n_correct,
                "accuracy": self.accuracy, "cohen_kappa": self.cohen_kappa}


@dataclass(frozen=True)
class GraderValidation:
    """A grader scored against human labels on the labeled items.

    `confusion[true][predicted]` counts items; its rows are `labels` and its columns
    are `labels` plus the non-verdicts, so every cell is present, zeros included.
    Undefined statistics (kappa when only one label occurs) are None, not NaN.
    """

    n_items: int
    n_missing: int
    n_error: int
    n_unparseable: int
    n_correct: int
    accuracy: float | None
    accuracy_low: float
    accuracy_high: float
    cohen_kappa: float | None
    labels: tuple[str, ...]
    confusion: dict[str, dict[str, int]]
    detection: dict[str, Detection]
    per_category: tuple[CategoryAgreement, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able figures, as `policyeval validate-grader --json` prints them."""
        return {
            "n_items": self.n_items,
            "n_missing": self.n_missing,
            "n_error": self.n_error,
            "n_unparseable": self.n_unparseable,
            "n_correct": self.n_correct,
            "accuracy": self.accuracy,
            "accuracy_low": self.accuracy_low,
            "accuracy_high": self.accuracy_high,
            "cohen_kappa": self.cohen_kappa,
            "labels": list(self.labels),
            "confusion": {t: dict(row) for t, row in self.confusion.items()},
            "detection": {b: d.as_dict() for b, d in self.detection.items()},
            "per_category": [c.as_dict() for c in self.per_category],
        }


def validate_grader(
    truth: Sequence[str | None],
    predicted: Sequence[str],
    categories: Sequence[str | None] | None = None,
    labels: Sequence[str] | None = None,
) -> GraderValidation:
    """Score `predicted` (grader behaviors) against `truth` (human labels), item by item.

    `labels` is the comparison label set (e.g. the grader's raw labels or a pack's
    behaviors). Given, every human label must be in it and every prediction in it or a
    non-verdict; it then fixes the confusion matrix's rows and columns and the
    behaviors scored as detectors. Without it the set is whatever occurs.
    """
    if len(truth) != len(predicted):
        raise ValueError(f"{len(truth)} human labels but {len(predicted)} predictions")
    if categories is not None and len(categories) != len(truth):
        raise ValueError(f"{len(categories)} categories but {len(truth)} human labels")

    kept = [i for i, t in enumerate(truth) if not is_blank(t)]
    y_true = [str(truth[i]).strip() for i in kept]
    y_pred = [str(predicted[i]) for i in kept]
    label_set = _label_set(y_true, y_pred, labels)

    correct = sum(t == p for t, p in zip(y_true, y_pred))
    accuracy = rate(correct, len(kept))
    columns = list(label_set) + list(NON_VERDICTS)
    confusion = {t: {p: 0 for p in columns} for t in label_set}
    for t, p in zip(y_true, y_pred):
        confusion[t][p] += 1

    per_category: tuple[CategoryAgreement, ...] = ()
    if categories is not None:
        groups: dict[str, list[int]] = {}
        for j, i in enumerate(kept):
            key = NO_CATEGORY if is_blank(categories[i]) else str(categories[i])
            groups.setdefault(key, []).append(j)
        per_category = tuple(
            _category_agreement(key, [y_true[j] for j in idx], [y_pred[j] for j in idx])
            for key, idx in sorted(groups.items())
        )

    return GraderValidation(
        n_items=len(kept),
        n_missing=len(truth) - len(kept),
        n_error=y_pred.count(ERROR),
        n_unparseable=y_pred.count(UNPARSEABLE),
        n_correct=correct,
        accuracy=accuracy.rate,
        accuracy_low=accuracy.low,
        accuracy_high=accuracy.high,
        cohen_kappa=_kappa(y_true, y_pred),
        labels=label_set,
        confusion=confusion,
        detection={b: detection(y_true, y_pred, b) for b in label_set},
        per_category=per_category,
    )


def detection(truth: Sequence[str], predicted: Sequence[str], behavior: str) -> Detection:
    """Sensitivity and specificity of `predicted` as a detector of `behavior` (labeled items only)."""
    tp = fn = tn = fp = 0
    for t, p in zip(truth, predicted):
        if t == behavior:
            if p == behavior:
                tp += 1
            else:
                fn += 1
        elif p != behavior and p not in NON_VERDICTS:
            tn += 1
        else:
            fp += 1
    return Detection(behavior, tp, fn, tn, fp, sensitivity=rate(tp, tp + fn), specificity=rate(tn, tn + fp))


def _category_agreement(category: str, truth: list[str], predicted: list[str]) -> CategoryAgreement:
    correct = sum(t == p for t, p in zip(truth, predicted))
    return CategoryAgreement(category, len(truth), correct, correct / len(truth) if truth else None,
                             _kappa(truth, predicted))


def _label_set(truth: list[str], predicted: list[str], labels: Sequence[str] | None) -> tuple[str, ...]:
    if labels is None:
        seen = set(truth) | (set(predicted) - set(NON_VERDICTS))
        first = [b for b in _PREFERRED_ORDER if b in seen]
        return tuple(first + sorted(seen - set(first)))
    label_set = tuple(dict.fromkeys(str(b) for b in labels))
    overlap = set(label_set) & set(NON_VERDICTS)
    if overlap:
        raise PolicyevalError(f"{', '.join(sorted(overlap))} is a non-verdict, not a label to compare")
    unknown_truth = sorted(set(truth) - set(label_set))
    if unknown_truth:
        raise PolicyevalError(f"human label(s) {', '.join(unknown_truth)} not among {', '.join(label_set)}")
    unknown_pred = sorted(set(predicted) - set(label_set) - set(NON_VERDICTS))
    if unknown_pred:
        raise PolicyevalError(f"grader label(s) {', '.join(unknown_pred)} not among {', '.join(label_set)}")
    return label_set


def _kappa(truth: list[str], predicted: list[str]) -> float | None:
    """Cohen's kappa, or None when chance agreement is already 1 (one label throughout)."""
    if not truth:
        return None
    counts = Counter(truth) + Counter(predicted)
    if len(counts) < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = float(cohen_kappa_score(truth, predicted))
    return value if math.isfinite(value) else None


def _rate_dict(r: Rate) -> dict[str, Any]:
    return {"rate": r.rate, "low": r.low, "high": r.high, "k": r.numerator, "n": r.denominator}
