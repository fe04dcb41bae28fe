"""Statistics for policy evaluation: rates with Wilson intervals, paired checkpoint
comparison (exact McNemar) and inter-rater agreement."""

from .agreement import AgreementResult, agreement, normalize_label
from .checkpoints import choose_baseline, graded_by_checkpoint, measured_under_both
from .intervals import Rate, format_rate, rate, rate_text, wilson_interval
from .mcnemar import McNemarResult, mcnemar_exact, mcnemar_paired
from .metrics import (
    DEFAULT_ALPHA,
    LEVELS,
    ComparisonResult,
    compare_checkpoints,
    compute_metrics,
    metrics_report,
    significant_changes,
)

__all__ = [
    "AgreementResult",
    "ComparisonResult",
    "DEFAULT_ALPHA",
    "LEVELS",
    "McNemarResult",
    "Rate",
    "agreement",
    "choose_baseline",
    "compare_checkpoints",
    "compute_metrics",
    "format_rate",
    "graded_by_checkpoint",
    "mcnemar_exact",
    "mcnemar_paired",
    "measured_under_both",
    "metrics_report",
    "normalize_label",
    "rate",
    "rate_text",
    "significant_changes",
    "wilson_interval",
]
