"""The one composition root: every asset, check, resource, job, sensor and schedule.

`defs` is what `dagster dev -w workspace.yaml` loads; `build_definitions` lets the
`policyeval run` command and tests point the same graph at other folders.
"""

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


def build_definitions(
    packs_dir: str = "",
    manifests_dir: str = "",
    data_dir: str = "",
    cache_dir: str = "",
    sample_per_cell: int = 2,
    baseline_checkpoint: str = "",
) -> dg.Definitions:
    """The code location; empty strings fall back to environment variables, then defaults."""
    return dg.Definitions(
        assets=ALL_ASSETS,
        jobs=[policy_job, evaluation_job, comparison_job],
        resources={
            "io_manager": ParquetIOManager(base_dir=data_dir),
            "policy_repository": PolicyRepository(packs_dir=packs_dir),
            "checkpoint_registry": CheckpointRegistry(manifests_dir=manifests_dir),
            "run_settings": RunSettings(sample_per_cell=sample_per_cell, cache_dir=cache_dir, baseline_checkpoint=baseline_checkpoint),
            "judge": JudgeResource(),
        },
    )


defs = build_definitions()
