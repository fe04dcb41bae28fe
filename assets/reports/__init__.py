"""Reports: the checkpoint comparison, safety, comparison, policy-diff, coverage and drift
reports, the ambiguity queue, the launch gate and launch approval, and the automation that keeps them current."""

from __future__ import annotations

from .ambiguity import ambiguity_queue
from .automation import JOBS, SCHEDULES, SENSORS
from .comparison import checkpoint_comparison
from .launch import launch_approval
from .launch_gate import launch_gate
from .reports import comparison_report, coverage_heatmap, deployment_drift, policy_diff_report, safety_report

# The comparison is apart because it needs only the evaluation chain's resources; the
# rest need the campaign store and deployment logs too.
COMPARISON_ASSETS = [checkpoint_comparison]
REPORT_ASSETS = [safety_report, comparison_report, policy_diff_report, coverage_heatmap, deployment_drift, launch_approval]
# The ambiguity queue reads the human data loop's `annotations` too: definitions that leave
# that loop out (the evaluation chain with its reports) leave the queue out as well.
AMBIGUITY_ASSETS = [ambiguity_queue]
CHECKS = [launch_gate]

__all__ = ["AMBIGUITY_ASSETS", "CHECKS", "COMPARISON_ASSETS", "JOBS", "REPORT_ASSETS", "SCHEDULES", "SENSORS"]
