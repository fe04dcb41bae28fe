"""The one composition root: every asset, check, resource, job, sensor and schedule."""

from __future__ import annotations

import dagster as dg

from assets.comparison_assets import checkpoint_comparison
from assets.evaluation_assets import grades, metrics, responses
from assets.policy_assets import coverage_report, eval_set, policy
from resources import CheckpointRegistry, JudgeResource, ParquetIOManager, PolicyRepository, RunSettings

ALL_ASSETS = [policy, eval_set, coverage_report, responses, grades, metrics, checkpoint_comparison]

POLICY_ASSETS = dg.AssetSelection.assets(policy, eval_set, coverage_report)
EVALUATION_ASSETS = dg.AssetSelection.assets(responses, grades, metrics)

policy_job = dg.define_asset_job(
    "policy_version_job",
    selection=POLICY_ASSETS,
    description="Snapshot a policy version, generate its eval set and coverage report.",
)
evaluation_job = dg.define_asset_job(
    "evaluation_job",
    selection=EVALUATION_ASSETS,
    description="Run one checkpoint on one policy version's eval set: responses, grades, metrics.",
)
comparison_job = dg.define_asset_job(
    "comparison_job",
    selection=dg.AssetSelection.assets(checkpoint_comparison),
    description="Rank the checkpoints measured on a policy version and test them against the baseline.",
)


def default_resources() -> dict:
    return {
        "io_manager": ParquetIOManager(),
        "policy_repository": PolicyRepository(),
        "checkpoint_registry": CheckpointRegistry(),
        "run_settings": RunSettings(),
        "judge": JudgeResource(),
    }


defs = dg.Definitions(
    assets=ALL_ASSETS,
    jobs=[policy_job, evaluation_job, comparison_job],
    resources=default_resources(),
)
