"""The one composition root: every asset, check, resource, job, sensor and schedule.

`defs` is what `dagster dev -w workspace.yaml` loads; `build_definitions` lets the
`policyeval run` command and tests point the same graph at other folders, and the distributed
code location (`pipelines/distributed.py`) default its runs to Celery workers.
"""

from __future__ import annotations

import dagster as dg

from assets import emerging, evaluation, human_data, reports
from resources import CampaignStore, CheckpointRegistry, DeploymentLogs, JudgeResource, ParquetIOManager, PolicyRepository, RiskImports, RunSettings
from resources.environment import CAMPAIGNS, DEPLOYMENT, SNAPSHOTS, cache_root, celery_settings_path, checkpoints_root, conversations_root, data_root, policies_root, redteam_root

from .executors import execution_config, policyeval_executor


DOMAINS = (evaluation, human_data, reports, emerging)
# The evaluation chain: what `policyeval run` and most tests materialize. It needs the
# learned grader (`grades` reads it) and ends in the checkpoint comparison.
ALL_ASSETS = [*evaluation.ASSETS, *human_data.GRADER_ASSETS, *reports.COMPARISON_ASSETS]
# The rest of the human data loop and the reports: they also need `campaign_store` and
# `deployment_logs`, which definitions for the chain alone may leave out.
HUMAN_DATA_ASSETS = human_data.CAMPAIGN_ASSETS
REPORT_ASSETS = reports.REPORT_ASSETS
# Reads the reports' inputs and every campaign's annotations: needs the human data assets beside it.
AMBIGUITY_ASSETS = reports.AMBIGUITY_ASSETS
# The red-team and deployment imports, what no category covers in them, and its report: need `risk_imports`.
EMERGING_ASSETS = emerging.ASSETS
ALL_CHECKS = [check for domain in DOMAINS for check in domain.CHECKS]

__all__ = ["ALL_ASSETS", "ALL_CHECKS", "AMBIGUITY_ASSETS", "DOMAINS", "EMERGING_ASSETS", "HUMAN_DATA_ASSETS", "REPORT_ASSETS", "build_definitions", "defs"]


def build_definitions(
    packs_dir: str = "",
    manifests_dir: str = "",
    data_dir: str = "",
    cache_dir: str = "",
    sample_per_cell: int = 2,
    baseline_checkpoint: str = "",
    executor: str = "multiprocess",
    celery_settings: str = "",
) -> dg.Definitions:
    """The code location; empty strings fall back to environment variables, then defaults.

    The data root is resolved once (`resources.environment`) and every resource gets its folder
    under it: tables, campaigns, policy snapshots, deployment logs and reports move together.
    `executor` is the mode a run without `execution` config gets (`pipelines.executors`): the UI,
    sensors and schedules use it; `policyeval run` always names one.
    """
    root = data_root(data_dir)
    run_settings = RunSettings(sample_per_cell=sample_per_cell, cache_dir=str(cache_root(cache_dir)), baseline_checkpoint=baseline_checkpoint)
    judge = JudgeResource()
    grader_version = run_settings.grader_code_version(judge)
    assets = [
        a.map_asset_specs(lambda spec: spec.replace_attributes(code_version=grader_version))
        if isinstance(a, dg.AssetsDefinition) and a.key == dg.AssetKey("grades") else a
        for a in [*ALL_ASSETS, *HUMAN_DATA_ASSETS, *REPORT_ASSETS, *AMBIGUITY_ASSETS, *EMERGING_ASSETS]
    ]
    default_execution = execution_config(executor, celery_settings_path(celery_settings) if executor == "celery" else None)
    return dg.Definitions(
        assets=assets,
        executor=policyeval_executor(default_execution),
        asset_checks=ALL_CHECKS,
        jobs=[job for domain in DOMAINS for job in domain.JOBS],
        sensors=[sensor for domain in DOMAINS for sensor in domain.SENSORS],
        schedules=[schedule for domain in DOMAINS for schedule in domain.SCHEDULES],
        resources={
            "io_manager": ParquetIOManager(base_dir=str(root)),
            "policy_repository": PolicyRepository(packs_dir=str(policies_root(packs_dir)), snapshot_dir=str(root / SNAPSHOTS)),
            "checkpoint_registry": CheckpointRegistry(manifests_dir=str(checkpoints_root(manifests_dir))),
            "run_settings": run_settings,
            "judge": judge,
            "campaign_store": CampaignStore(root=str(root / CAMPAIGNS)),
            "deployment_logs": DeploymentLogs(root=str(root / DEPLOYMENT)),
            # absolute: runs execute in the code location's working directory
            "risk_imports": RiskImports(redteam_dir=str(redteam_root().absolute()), deployment_dir=str(conversations_root().absolute())),
        },
    )


defs = build_definitions()
