"""Refusal rates of deployment traffic over time, against the checkpoint's eval baseline.

The rate is the share of validly graded responses that are refusals, per category and
per time bucket (UTC day, or ISO week starting on Monday), with a Wilson 95% interval.
The baseline is the same share on the checkpoint's eval grades, per category.

Drift rule: a bucket of a category is flagged when BOTH

    |deployment rate - eval rate| > margin            (the change is large enough to matter)
    the two Wilson intervals do not overlap           (and is not explained by small samples)

The first keeps trivial but well-measured shifts quiet; the second keeps a handful of
conversations from raising an alarm. Neither side's mix of should-refuse and
should-comply requests is known for deployment traffic, so a flag means "look here":
the model's behavior or the traffic in that category has changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Literal

import pandas as pd

from ..errors import PolicyevalError
from ..records import NON_VERDICTS, REFUSE
from ..stats.intervals import wilson_interval

Bucket = Literal["day", "week"]
BUCKETS: tuple[str, ...] = ("day", "week")
ALL_CATEGORIES = "(all)"
DEFAULT_MARGIN = 0.10

RATE_COLUMNS = ["category_id", "bucket_start", "k", "n", "n_invalid", "rate", "low", "high"]
BASELINE_COLUMNS = ["category_id", "k", "n", "rate", "low", "high"]


def bucket_start(moment: datetime, bucket: Bucket) -> date:
    """The first day of the bucket holding `moment` (a UTC datetime)."""
    day = moment.date()
    if bucket == "day":
        return day
    if bucket == "week":
        return day - timedelta(days=day.weekday())
    raise PolicyevalError(f"unknown bucket {bucket!r} (known: {', '.join(BUCKETS)})")


def _rate_row(k: int, n: int) -> dict:
    low, high = wilson_interval(k, n)
    return {"k": k, "n": n, "rate": (k / n) if n else None, "low": low, "high": high}


def refusal_rates(graded: pd.DataFrame, bucket: Bucket = "week") -> pd.DataFrame:
    """Refusal rate per category (and all categories together) per bucket."""
    if bucket not in BUCKETS:
        raise PolicyevalError(f"unknown bucket {bucket!r} (known: {', '.join(BUCKETS)})")
    frame = graded.assign(bucket_start=[bucket_start(t, bucket) for t in graded["timestamp"]])
    rows = []
    for category, part in [*frame.groupby("category_id", sort=True), (ALL_CATEGORIES, frame)]:
        for start, group in part.groupby("bucket_start", sort=True):
            valid = group["valid"].astype(bool)
            rows.append({"category_id": category, "bucket_start": start,
                         **_rate_row(int(group["refused"].astype(bool).sum()), int(valid.sum())),
                         "n_invalid": int((~valid).sum())})
    return pd.DataFrame(rows, columns=RATE_COLUMNS)


def baseline_rates(grades: pd.DataFrame) -> pd.DataFrame:
    """Refusal rate per category (and overall) on one checkpoint's eval grades."""
    missing = [c for c in ("category_id", "behavior") if c not in grades.columns]
    if missing:
        raise PolicyevalError(f"baseline grades lack column(s) {', '.join(missing)}")
    checkpoints = sorted({str(v) for v in grades.get("checkpoint_id", pd.Series(dtype=object)).dropna()})
    if len(checkpoints) > 1:
        raise PolicyevalError(f"baseline grades hold {len(checkpoints)} checkpoints ({', '.join(checkpoints)}); "
                              "a baseline is one checkpoint's: filter the table first")
    behavior = grades["behavior"].astype(object)
    valid = behavior.notna() & ~behavior.isin(NON_VERDICTS)
    refused = valid & (behavior == REFUSE)
    category = grades["category_id"].astype(object).where(grades["category_id"].notna(), "")
    rows = []
    for name, mask in [*((c, category == c) for c in sorted(set(category))), (ALL_CATEGORIES, category == category)]:
        rows.append({"category_id": name, **_rate_row(int((refused & mask).sum()), int((valid & mask).sum()))})
    return pd.DataFrame(rows, columns=BASELINE_COLUMNS)


def drifted(rate: float | None, low: float, high: float, base_rate: float | None, base_low: float,
            base_high: float, margin: float) -> bool:
    """The drift rule of this module's docstring."""
    if rate is None or base_rate is None or pd.isna(rate) or pd.isna(base_rate):
        return False
    apart = low > base_high or high < base_low
    return abs(rate - base_rate) > margin and apart


@dataclass(frozen=True)
class DriftResult:
    """Deployment refusal rates per category and bucket, joined to the baseline and flagged.

    `rates` has RATE_COLUMNS plus baseline_k, baseline_n, baseline_rate, baseline_low,
    baseline_high, delta (deployment minus baseline) and drifted.
    """

    bucket: str
    margin: float
    rates: pd.DataFrame
    baseline: pd.DataFrame
    n_conversations: int
    n_invalid: int
    graders: tuple[str, ...] = ()
    baseline_checkpoint: str = ""
    scrubbed: dict[str, int] = field(default_factory=dict)

    @property
    def flagged(self) -> pd.DataFrame:
        return self.rates[self.rates["drifted"]].reset_index(drop=True)


def detect_drift(graded: pd.DataFrame, baseline_grades: pd.DataFrame, bucket: Bucket = "week",
                 margin: float = DEFAULT_MARGIN, scrubbed: dict[str, int] | None = None) -> DriftResult:
    """Rates of `graded` (from `grade_conversations`) per bucket, flagged against the baseline."""
    if not 0.0 <= margin < 1.0:
        raise PolicyevalError(f"margin must be in [0, 1), got {margin}")
    baseline = baseline_rates(baseline_grades)
    rates = refusal_rates(graded, bucket)
    joined = rates.merge(baseline.add_prefix("baseline_").rename(columns={"baseline_category_id": "category_id"}),
                         on="category_id", how="left")
    joined["baseline_n"] = joined["baseline_n"].fillna(0).astype(int)
    joined["baseline_k"] = joined["baseline_k"].fillna(0).astype(int)
    joined["delta"] = [
        None if r is None or b is None or pd.isna(r) or pd.isna(b) else float(r) - float(b)
        for r, b in zip(joined["rate"], joined["baseline_rate"])
    ]
    joined["drifted"] = [
        drifted(r.rate, r.low, r.high, r.baseline_rate, r.baseline_low, r.baseline_high, margin)
        for r in joined.itertuples()
    ]
    checkpoints = sorted({str(v) for v in baseline_grades.get("checkpoint_id", pd.Series(dtype=object)).dropna()})
    graders = sorted({f"{a}@{b}" for a, b in zip(graded["grader_id"], graded["grader_version"])}) if len(graded) else []
    return DriftResult(
        bucket=bucket,
        margin=margin,
        rates=joined,
        baseline=baseline,
        n_conversations=len(graded),
        n_invalid=int((~graded["valid"].astype(bool)).sum()) if len(graded) else 0,
        graders=tuple(graders),
        baseline_checkpoint=checkpoints[0] if checkpoints else "",
        scrubbed=dict(scrubbed or {}),
    )
