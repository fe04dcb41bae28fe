"""Reports: the checkpoint comparison, safety, comparison, policy-diff, coverage and drift
reports, the launch gate and launch approval, and the automation that keeps them current."""

from __future__ import annotations

from .automation import JOBS, SCHEDULES, SENSORS
from .comparison import checkpoint_comparison
from .launch import launch_approval
from .launch_gate import launch_gate
from .reports import comparison_report, coverage_heatmap, deployment_drift, policy_diff_report, safety_report

# The comparison is apart because it needs only the evaluation chain's resources; the
# rest need the campaign store and deployment logs too.
COMPARISON_ASSETS = [checkpoint_comparison]
REPORT_ASSETS = [safety_report, comparison_report, policy_diff_report, coverage_heatmap, deployment_drift, launch_approval]
CHECKS = [launch_gate]

__all__ = ["CHECKS", "COMPARISON_ASSETS", "JOBS", "REPORT_ASSETS", "SCHEDULES", "SENSORS"]
