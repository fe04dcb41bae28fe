"""Asset checks: data quality of each table (Great Expectations) and the blocking launch gate.

The composition root registers them with `asset_checks=ALL_CHECKS`.
"""

from __future__ import annotations

from .grader_checks import grader_kappa_vs_gold
from .launch_gate import launch_gate
from .quality_checks import QUALITY_CHECKS, coverage_met, eval_set_balanced, eval_set_valid, grades_error_rates, grades_valid, responses_complete

ALL_CHECKS = [*QUALITY_CHECKS, launch_gate, grader_kappa_vs_gold]

__all__ = [
    "ALL_CHECKS",
    "coverage_met",
    "eval_set_balanced",
    "eval_set_valid",
    "grades_error_rates",
    "grades_valid",
    "grader_kappa_vs_gold",
    "launch_gate",
    "responses_complete",
]
