"""McNemar's exact test for two checkpoints graded on the same items.

The two checkpoints' results are paired by item, so only the items where they disagree
(one correct, the other not) carry information about which is better. Under the null
hypothesis each such item is equally likely to go either way: a two-sided binomial
test with p = 1/2. The exact test is used because per-category discordant counts are
usually far too small for the chi-square approximation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from scipy.stats import binomtest


@dataclass(frozen=True)
class McNemarResult:
    """Discordant counts and the exact two-sided p-value.

    b: items the first checkpoint got right and the second did not; c: the reverse.
    statistic: min(b, c), the binomial count the exact test is taken on.
    """

    b: int
    c: int
    n_discordant: int
    p_value: float
    statistic: int


def mcnemar_exact(b: int, c: int) -> McNemarResult:
    """Exact McNemar test from the two discordant counts; p = 1.0 when there are none."""
    b, c = int(b), int(c)
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be non-negative, got b={b}, c={c}")
    n = b + c
    p_value = 1.0 if n == 0 else float(binomtest(min(b, c), n, 0.5, alternative="two-sided").pvalue)
    return McNemarResult(b=b, c=c, n_discordant=n, p_value=min(1.0, p_value), statistic=min(b, c))


def mcnemar_paired(correct_a: Iterable[bool], correct_b: Iterable[bool]) -> McNemarResult:
    """Exact McNemar test from per-item correctness of A and B (same items, same order)."""
    a, b_ = list(correct_a), list(correct_b)
    if len(a) != len(b_):
        raise ValueError(f"paired sequences differ in length: {len(a)} vs {len(b_)}")
    b = sum(1 for x, y in zip(a, b_) if x and not y)
    c = sum(1 for x, y in zip(a, b_) if y and not x)
    return mcnemar_exact(b, c)
