"""An observed rate corrected for grader error (Rogan-Gladen), with an honest interval.

A grader that misses some compliances and invents others biases every rate it
measures. If it detects a behavior with sensitivity Se and specificity Sp, an observed
rate p_obs of that behavior estimates the true rate p as

    p = (p_obs + Sp - 1) / (Se + Sp - 1),   clipped to [0, 1].

Se and Sp are themselves estimates from a finite gold set, so the interval must carry
their uncertainty as well as the sampling of the observed rate: a Wilson interval on
the corrected value would claim a precision the gold set does not have. The interval
is a seeded parametric bootstrap: each draw resamples the observed count and the gold
counts behind Se and Sp as binomials, corrects, and the percentiles of the corrected
values are the bounds.

Assumes the grader errs on the evaluated responses as it did on the gold set. A
binomial draw cannot move a gold proportion of exactly 0 or 1, so a grader that was
perfect on a small gold set contributes no uncertainty: grow the gold set rather than
trust such an interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..records import COMPLY, REFUSE
from ..stats.intervals import wilson_interval
from .grader_validation import Detection, GraderValidation

DEFAULT_DRAWS = 2000
DEFAULT_SEED = 0

# The grader's detection of a behavior decides one published rate: missing a compliance
# hides an under-refusal, a spurious refusal invents an over-refusal.
DECIDING_BEHAVIOR = {"under_refusal": COMPLY, "over_refusal": REFUSE}


@dataclass(frozen=True)
class CorrectedRate:
    """A raw rate with its Wilson interval, and the rate corrected for grader error.

    `corrected`, `low` and `high` are None when the correction is undefined; `note`
    then says why (it also reports clipping and discarded bootstrap draws).
    """

    raw: float | None
    raw_low: float
    raw_high: float
    corrected: float | None
    low: float | None
    high: float | None
    sensitivity: float | None
    specificity: float | None
    note: str = ""


def rogan_gladen(observed: float, sensitivity: float, specificity: float) -> float | None:
    """The true rate behind `observed`, clipped to [0, 1]; None when Se + Sp - 1 <= 0."""
    youden = sensitivity + specificity - 1.0
    if youden <= 0:
        return None
    return float(min(1.0, max(0.0, (observed + specificity - 1.0) / youden)))


def corrected_rate(
    k: int,
    n: int,
    sensitivity_k: int,
    sensitivity_n: int,
    specificity_k: int,
    specificity_n: int,
    *,
    draws: int = DEFAULT_DRAWS,
    seed: int = DEFAULT_SEED,
    confidence: float = 0.95,
) -> CorrectedRate:
    """Observed k/n corrected with Se = sensitivity_k/sensitivity_n and Sp = specificity_k/specificity_n.

    The gold counts, not just the proportions, are needed: they set how uncertain Se
    and Sp are.
    """
    for name, (a, b) in {"observed": (k, n), "sensitivity": (sensitivity_k, sensitivity_n),
                         "specificity": (specificity_k, specificity_n)}.items():
        if b < 0 or a < 0 or a > b:
            raise ValueError(f"{name}: need 0 <= k <= n, got {a}/{b}")
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    raw_low, raw_high = wilson_interval(k, n, confidence)
    raw = k / n if n else None
    se = sensitivity_k / sensitivity_n if sensitivity_n else None
    sp = specificity_k / specificity_n if specificity_n else None

    def undefined(reason: str) -> CorrectedRate:
        return CorrectedRate(raw, raw_low, raw_high, None, None, None, se, sp, reason)

    if raw is None:
        return undefined("no observations: nothing to correct")
    if se is None or sp is None:
        missing = "sensitivity" if se is None else "specificity"
        return undefined(f"no gold items to estimate the {missing} from")
    corrected = rogan_gladen(raw, se, sp)
    if corrected is None:
        return undefined(f"sensitivity + specificity - 1 = {se + sp - 1:.3f} <= 0: the grader does no better "
                         "than chance on the gold set, so its errors cannot be undone")

    rng = np.random.default_rng(seed)
    obs_draws = rng.binomial(n, raw, draws) / n
    se_draws = rng.binomial(sensitivity_n, se, draws) / sensitivity_n
    sp_draws = rng.binomial(specificity_n, sp, draws) / specificity_n
    youden = se_draws + sp_draws - 1.0
    usable = youden > 0
    values = np.clip((obs_draws[usable] + sp_draws[usable] - 1.0) / youden[usable], 0.0, 1.0)

    notes = []
    unclipped = (raw + sp - 1.0) / (se + sp - 1.0)
    if not 0.0 <= unclipped <= 1.0:
        notes.append(f"point estimate {unclipped:.3f} clipped to [0, 1]: the observed rate is outside what "
                     "the grader's error rates allow")
    dropped = draws - int(usable.sum())
    if dropped:
        notes.append(f"{dropped} of {draws} bootstrap draws had sensitivity + specificity <= 1 and were left out")
    if not values.size:
        return CorrectedRate(raw, raw_low, raw_high, corrected, None, None, se, sp,
                             "; ".join(notes + ["no usable bootstrap draw: interval undefined"]))
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return CorrectedRate(raw, raw_low, raw_high, corrected, float(low), float(high), se, sp, "; ".join(notes))


def corrected_rate_for(k: int, n: int, detected: Detection, **options: Any) -> CorrectedRate:
    """Observed k/n of `detected.behavior`, corrected with that detector's gold counts."""
    return corrected_rate(
        k, n,
        detected.sensitivity.numerator, detected.sensitivity.denominator,
        detected.specificity.numerator, detected.specificity.denominator,
        **options,
    )


def corrected_columns(metrics_frame: pd.DataFrame, validation: GraderValidation | None) -> pd.DataFrame:
    """Per metrics row: under- and over-refusal corrected for grader error, with interval and note."""
    out = pd.DataFrame(index=metrics_frame.index)
    for name, behavior in DECIDING_BEHAVIOR.items():
        detected = validation.detection.get(behavior) if validation is not None else None
        values: list[CorrectedRate | None] = [
            corrected_rate_for(int(k), int(n), detected) if detected is not None else None
            for k, n in zip(metrics_frame[f"{name}_k"], metrics_frame[f"{name}_n"])
        ]
        out[f"{name}_corrected"] = [v.corrected if v else None for v in values]
        out[f"{name}_corrected_low"] = [v.low if v else None for v in values]
        out[f"{name}_corrected_high"] = [v.high if v else None for v in values]
        notes = []
        for v, k, n in zip(values, metrics_frame[f"{name}_k"], metrics_frame[f"{name}_n"]):
            if v is None:
                notes.append(f"the gold set has no {behavior} decisions to correct with")
            elif n and k in (0, n) and v.low is not None:
                notes.append("; ".join(filter(None, [v.note, f"observed {int(k)}/{int(n)}: a bootstrap cannot move a rate of 0 or 1, so this interval is too narrow; read the raw Wilson bound"])))
            else:
                notes.append(v.note)
        out[f"{name}_correction_note"] = notes
    return out
