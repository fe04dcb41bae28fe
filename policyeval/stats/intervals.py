"""Binomial proportions with Wilson score intervals.

Refusal rates are often near 0% or 100% on small categories, where the normal (Wald)
interval collapses to a zero width or leaves [0, 1]; the Wilson interval stays inside
[0, 1] and keeps close to its nominal coverage there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd
from scipy.stats import norm


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for `successes` out of `n`.

    With n == 0 nothing is known, so the interval is the whole range (0.0, 1.0).
    """
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got {successes}/{n}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n == 0:
        return (0.0, 1.0)
    z = float(norm.ppf(1.0 - (1.0 - confidence) / 2.0))
    p = successes / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2.0 * n)) / denominator
    half = z * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n)) / denominator
    # The closed form reaches the bounds only up to rounding; pin the exact cases.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return (low, high)


@dataclass(frozen=True)
class Rate:
    """A proportion k/n with its Wilson interval; `rate` is None when n == 0."""

    numerator: int
    denominator: int
    rate: float | None
    low: float
    high: float

    def format(self, digits: int = 1) -> str:
        """`12.5% [8.1–18.7] (5/40)`: the rate, its interval and the counts behind it."""
        return format_rate(self.numerator, self.denominator, self.rate, self.low, self.high, digits)


def rate(k: int, n: int, confidence: float = 0.95) -> Rate:
    """k out of n as a Rate with its Wilson interval."""
    low, high = wilson_interval(int(k), int(n), confidence)
    return Rate(int(k), int(n), (k / n) if n else None, low, high)


def format_rate(k: int, n: int, value: float | None, low: float, high: float, digits: int = 1) -> str:
    """Readable rate: percentages with the interval and the raw counts."""
    if not n or value is None or (isinstance(value, float) and math.isnan(value)):
        return f"– ({int(k)}/{int(n)})"
    return (
        f"{100 * value:.{digits}f}% [{100 * low:.{digits}f}–{100 * high:.{digits}f}] "
        f"({int(k)}/{int(n)})"
    )


def rate_text(row: Any, name: str) -> str:
    """`12.5% [8.1–18.7] (5/40)` for rate `name` of a metrics row (see stats.metrics)."""
    value = row[f"{name}_rate"]
    value = None if value is None or pd.isna(value) else float(value)
    return format_rate(int(row[f"{name}_k"]), int(row[f"{name}_n"]), value, float(row[f"{name}_low"]),
                       float(row[f"{name}_high"]))
