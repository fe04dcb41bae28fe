"""Statistics for policy evaluation: rates with Wilson intervals, paired checkpoint
comparison (exact McNemar) and inter-rater agreement."""

from .agreement import AgreementResult, agreement, normalize_label
from .intervals import Rate, format_rate, rate, wilson_interval
from .mcnemar import McNemarResult, mcnemar_exact, mcnemar_paired
from .metrics import (
    LEVELS,
    ComparisonResult,
    compare_checkpoints,
    compute_metrics,
    metrics_report,
    to_markdown_table,
)

__all__ = [
    "AgreementResult",
    "ComparisonResult",
    "LEVELS",
    "McNemarResult",
    "Rate",
    "agreement",
    "compare_checkpoints",
    "compute_metrics",
    "format_rate",
    "mcnemar_exact",
    "mcnemar_paired",
    "metrics_report",
    "normalize_label",
    "rate",
    "to_markdown_table",
    "wilson_interval",
]
