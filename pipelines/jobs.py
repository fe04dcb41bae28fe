"""The jobs a user launches from the UI, and that sensors and schedules request."""

from __future__ import annotations

import dagster as dg

from assets.campaign_assets import (
    adjudication_queue,
    annotations,
    annotator_agreement,
    gold_set,
    grader_validation,
    labeling_campaign,
    labeling_guidance,
    published_metrics,
)
from assets.comparison_assets import checkpoint_comparison
from assets.evaluation_assets import grades, metrics, responses
from assets.grader_model_assets import grader_model
from assets.launch_assets import launch_approval
from assets.policy_assets import coverage_report, eval_set, policy
from assets.report_assets import comparison_report, coverage_heatmap, deployment_drift, policy_diff_report, safety_report

# `grader_model` (group human_data) is here because `grades` reads it; it needs `campaign_store`.
ALL_ASSETS = [policy, eval_set, coverage_report, grader_model, responses, grades, metrics, checkpoint_comparison]
# Kept apart from ALL_ASSETS: the rest of the human-data loop, which definitions for the
# evaluation chain alone (tests, other entry points) leave out.
HUMAN_DATA_ASSETS = [labeling_guidance, labeling_campaign, annotations, annotator_agreement, adjudication_queue, gold_set, grader_validation, published_metrics]
# Kept apart too: they need `campaign_store` and `deployment_logs`.
REPORT_ASSETS = [safety_report, comparison_report, policy_diff_report, coverage_heatmap, deployment_drift, launch_approval]

policy_job = dg.define_asset_job(
    "policy_version_job",
    selection=dg.AssetSelection.assets(policy, eval_set, coverage_report, grader_model),
    description="Snapshot a policy version, generate its eval set and coverage report, pick its learned grader.",
)
grader_model_job = dg.define_asset_job(
    "grader_model_job",
    selection=dg.AssetSelection.assets(grader_model),
    description="Train a policy version's learned grader on its gold set (or fall back to the shipped default).",
)
evaluation_job = dg.define_asset_job(
    "evaluation_job",
    selection=dg.AssetSelection.assets(responses, grades, metrics),
    description="Run one checkpoint on one policy version's eval set: responses, grades, metrics.",
)
comparison_job = dg.define_asset_job(
    "comparison_job",
    selection=dg.AssetSelection.assets(checkpoint_comparison),
    description="Rank the checkpoints measured on a policy version and test them against the baseline.",
)

human_data_job = dg.define_asset_job(
    "human_data_job",
    selection=dg.AssetSelection.assets(annotations, annotator_agreement, adjudication_queue),
    description="Import a campaign's inbox files (annotations, adjudications); agreement and the adjudication queue.",
)

ALL_JOBS = [policy_job, grader_model_job, evaluation_job, comparison_job, human_data_job]

# A job has one partitions definition, so the reports run as three jobs: per policy
# version, per policy version x checkpoint, per day of deployment traffic.
reports_job = dg.define_asset_job(
    "reports_job",
    selection=dg.AssetSelection.assets(comparison_report, policy_diff_report, coverage_heatmap),
    description="A policy version's reports: checkpoint comparison, policy diff and coverage heatmap (HTML and Markdown).",
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

REPORT_JOBS = [reports_job, safety_report_job, drift_job, launch_approval_job]

# Reports and the comparison follow their inputs by themselves (AutomationCondition.eager()
# on each): a checkpoint a sensor evaluated, a run launched from the UI or a regrade brings
# them up to date on the next tick. They call no model endpoint, so this sensor starts RUNNING
# (the automation daemon runs with `dagster dev`); stop it in the Automation tab.
reports_automation_sensor = dg.AutomationConditionSensorDefinition(
    "reports_automation_sensor",
    target=dg.AssetSelection.assets(checkpoint_comparison, safety_report, comparison_report, policy_diff_report, coverage_heatmap),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Brings the reports and the checkpoint comparison up to date when the grades and metrics they read change.",
)
