"""The jobs a user launches from the UI, and that sensors and schedules request."""

from __future__ import annotations

import dagster as dg

from assets.comparison_assets import checkpoint_comparison
from assets.evaluation_assets import grades, metrics, responses
from assets.policy_assets import coverage_report, eval_set, policy

ALL_ASSETS = [policy, eval_set, coverage_report, responses, grades, metrics, checkpoint_comparison]

policy_job = dg.define_asset_job(
    "policy_version_job",
    selection=dg.AssetSelection.assets(policy, eval_set, coverage_report),
    description="Snapshot a policy version, generate its eval set and coverage report.",
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

ALL_JOBS = [policy_job, evaluation_job, comparison_job]
