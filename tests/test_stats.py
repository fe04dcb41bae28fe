"""Wilson intervals and McNemar's exact test against closed forms and published figures."""

from __future__ import annotations

import math

import pytest

from policyeval.stats import Rate, mcnemar_exact, mcnemar_paired, rate, wilson_interval

Z95 = 1.959963984540054


def wilson_closed_form(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    p = k / n
    centre = (2 * n * p + z * z) / (2 * (n + z * z))
    half = z * math.sqrt(z * z + 4 * n * p * (1 - p)) / (2 * (n + z * z))
    return centre - half, centre + half


# Newcombe (1998), Statistics in Medicine 17:857-872, Table I, Wilson score method.
PUBLISHED = [
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718),
    (0, 10, 0.0, 0.2775),
    (5, 10, 0.2366, 0.7634),
]


@pytest.mark.parametrize("k, n, low, high", PUBLISHED)
def test_wilson_matches_published_figures(k, n, low, high):
    got = wilson_interval(k, n)
    assert got[0] == pytest.approx(low, abs=5e-5)
    assert got[1] == pytest.approx(high, abs=5e-5)


@pytest.mark.parametrize("k, n", [(0, 10), (5, 10), (81, 263), (1, 1), (7, 7), (3, 1000), (999, 1000)])
def test_wilson_matches_closed_form(k, n):
    low, high = wilson_closed_form(k, n)
    got = wilson_interval(k, n)
    assert got[0] == pytest.approx(max(0.0, low), abs=1e-12)
    assert got[1] == pytest.approx(min(1.0, high), abs=1e-12)


def test_wilson_bounds_are_exact_at_the_ends():
    assert wilson_interval(0, 10)[0] == 0.0
    assert wilson_interval(10, 10)[1] == 1.0


def test_wilson_other_confidence():
    z90 = 1.6448536269514722
    low, high = wilson_closed_form(81, 263, z=z90)
    assert wilson_interval(81, 263, confidence=0.90) == pytest.approx((low, high), abs=1e-12)


def test_wilson_empty_is_whole_range_and_bad_input_raises():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)
    with pytest.raises(ValueError):
        wilson_interval(-1, 2)
    with pytest.raises(ValueError):
        wilson_interval(1, 2, confidence=1.0)


def test_rate_record():
    r = rate(5, 40)
    assert isinstance(r, Rate)
    assert (r.numerator, r.denominator, r.rate) == (5, 40, 0.125)
    assert (r.low, r.high) == pytest.approx(wilson_closed_form(5, 40), abs=1e-12)
    assert r.format() == f"12.5% [{100 * r.low:.1f}–{100 * r.high:.1f}] (5/40)"
    empty = rate(0, 0)
    assert empty.rate is None and (empty.low, empty.high) == (0.0, 1.0)
    assert empty.format() == "– (0/0)"


def test_mcnemar_hand_worked():
    # b=2, c=8: two-sided exact p = 2 * P(X <= 2 | n=10, 1/2) = 2 * (1 + 10 + 45) / 1024.
    result = mcnemar_exact(2, 8)
    assert (result.b, result.c, result.n_discordant, result.statistic) == (2, 8, 10, 2)
    assert result.p_value == pytest.approx(112 / 1024)
    # Symmetric in b and c.
    assert mcnemar_exact(8, 2).p_value == pytest.approx(112 / 1024)
    # b=0, c=5: 2 * (1/2)^5.
    assert mcnemar_exact(0, 5).p_value == pytest.approx(2 / 32)
    # Balanced or empty: no evidence at all.
    assert mcnemar_exact(3, 3).p_value == 1.0
    assert mcnemar_exact(0, 0).p_value == 1.0
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 2)


def test_mcnemar_agrees_with_statsmodels():
    from statsmodels.stats.contingency_tables import mcnemar

    for b, c in [(2, 8), (11, 4), (0, 7), (25, 40)]:
        expected = mcnemar([[30, b], [c, 50]], exact=True).pvalue
        assert mcnemar_exact(b, c).p_value == pytest.approx(expected)


def test_mcnemar_from_pairs():
    a = [True, True, True, False, False, True]
    b = [True, False, False, True, False, True]
    result = mcnemar_paired(a, b)
    assert (result.b, result.c) == (2, 1)
    with pytest.raises(ValueError):
        mcnemar_paired([True], [True, False])
