"""The one composition root: every asset, check, resource, job, sensor and schedule.

`defs` is what `dagster dev -w workspace.yaml` loads; `build_definitions` lets the
`policyeval run` command and tests point the same graph at other folders.
"""

from __future__ import annotations

import dagster as dg

from checks import ALL_CHECKS
from resources import CampaignStore, CheckpointRegistry, DeploymentLogs, JudgeResource, ParquetIOManager, PolicyRepository, RunSettings
from resources.paths import CAMPAIGNS, DEPLOYMENT, SNAPSHOTS, cache_root, checkpoints_root, data_root, policies_root

from .automation import ALL_SCHEDULES, ALL_SENSORS, REPORT_SCHEDULES
from .campaign_automation import CAMPAIGN_SENSORS
from .jobs import ALL_ASSETS, ALL_JOBS, HUMAN_DATA_ASSETS, REPORT_ASSETS, REPORT_JOBS, reports_automation_sensor

__all__ = ["ALL_ASSETS", "ALL_CHECKS", "HUMAN_DATA_ASSETS", "REPORT_ASSETS", "build_definitions", "defs"]


def build_definitions(
    packs_dir: str = "",
    manifests_dir: str = "",
    data_dir: str = "",
    cache_dir: str = "",
    sample_per_cell: int = 2,
    baseline_checkpoint: str = "",
) -> dg.Definitions:
    """The code location; empty strings fall back to environment variables, then defaults.

    The data root is resolved once (`resources.paths`) and every resource gets its folder
    under it: tables, campaigns, policy snapshots, deployment logs and reports move together.
    """
    root = data_root(data_dir)
    run_settings = RunSettings(sample_per_cell=sample_per_cell, cache_dir=str(cache_root(cache_dir)), baseline_checkpoint=baseline_checkpoint)
    judge = JudgeResource()
    grader_version = run_settings.grader_code_version(judge)
    assets = [
        a.map_asset_specs(lambda spec: spec.replace_attributes(code_version=grader_version))
        if isinstance(a, dg.AssetsDefinition) and a.key == dg.AssetKey("grades") else a
        for a in [*ALL_ASSETS, *HUMAN_DATA_ASSETS, *REPORT_ASSETS]
    ]
    return dg.Definitions(
        assets=assets,
        asset_checks=ALL_CHECKS,
        jobs=[*ALL_JOBS, *REPORT_JOBS],
        sensors=[*ALL_SENSORS, *CAMPAIGN_SENSORS, reports_automation_sensor],
        schedules=[*ALL_SCHEDULES, *REPORT_SCHEDULES],
        resources={
            "io_manager": ParquetIOManager(base_dir=str(root)),
            "policy_repository": PolicyRepository(packs_dir=str(policies_root(packs_dir)), snapshot_dir=str(root / SNAPSHOTS)),
            "checkpoint_registry": CheckpointRegistry(manifests_dir=str(checkpoints_root(manifests_dir))),
            "run_settings": run_settings,
            "judge": judge,
            "campaign_store": CampaignStore(root=str(root / CAMPAIGNS)),
            "deployment_logs": DeploymentLogs(root=str(root / DEPLOYMENT)),
        },
    )


defs = build_definitions()
