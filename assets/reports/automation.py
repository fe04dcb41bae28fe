"""Jobs, a schedule and the automation sensor of the reports domain.

Reports and the checkpoint comparison follow their inputs by themselves
(`AutomationCondition`s on each asset): a checkpoint a sensor evaluated, a run launched
from the UI or a regrade brings them up to date on the next tick of
`reports_automation_sensor`. They call no model endpoint, so that sensor starts RUNNING
(the automation daemon runs with `dagster dev`); stop it in the Automation tab.

A job has one partitions definition, so the reports run as several jobs: per policy
version, per policy version x checkpoint, per day of deployment traffic.
"""

from __future__ import annotations

import dagster as dg

from assets.reports.ambiguity import ambiguity_queue
from assets.reports.comparison import checkpoint_comparison
from assets.reports.launch import launch_approval
from assets.reports.reports import comparison_report, coverage_heatmap, deployment_drift, policy_diff_report, safety_report

comparison_job = dg.define_asset_job(
    "comparison_job",
    selection=dg.AssetSelection.assets(checkpoint_comparison),
    description="Rank the checkpoints measured on a policy version and test them against the baseline.",
)
reports_job = dg.define_asset_job(
    "reports_job",
    selection=dg.AssetSelection.assets(comparison_report, policy_diff_report, coverage_heatmap, ambiguity_queue),
    description="A policy version's reports: checkpoint comparison, policy diff, coverage heatmap and ambiguity queue (HTML and Markdown).",
)
safety_report_job = dg.define_asset_job(
    "safety_report_job",
    selection=dg.AssetSelection.assets(safety_report),
    description="The safety report of one checkpoint under one policy version (HTML and Markdown).",
)
drift_job = dg.define_asset_job(
    "drift_job",
    selection=dg.AssetSelection.assets(deployment_drift),
    description="One day of sampled deployment conversations against the eval baseline (HTML and Markdown).",
)
launch_approval_job = dg.define_asset_job(
    "launch_approval_job",
    selection=dg.AssetSelection.assets(launch_approval),
    description="Approve a checkpoint for launch under a policy version: succeeds only if it passes the launch gate.",
)

# Deployment drift: each day's partition once the day is over (stopped until turned on).
drift_schedule = dg.build_schedule_from_partitioned_job(
    drift_job, name="deployment_drift_schedule", hour_of_day=7, default_status=dg.DefaultScheduleStatus.STOPPED
)

reports_automation_sensor = dg.AutomationConditionSensorDefinition(
    "reports_automation_sensor",
    target=dg.AssetSelection.assets(checkpoint_comparison, safety_report, comparison_report, policy_diff_report, coverage_heatmap, ambiguity_queue),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Brings the reports and the checkpoint comparison up to date when the grades and metrics they read change.",
)

JOBS = [comparison_job, reports_job, safety_report_job, drift_job, launch_approval_job]
SENSORS = [reports_automation_sensor]
SCHEDULES = [drift_schedule]
