"""Where a run's steps execute: in the run's own process, a process per step, or on Celery workers.

Every job of the code location gets one executor whose mode is chosen per run in run config,
as Dagster's default executor chooses between its two modes:

    execution: {config: {in_process: {}}}            # the steps in the run's process
    execution: {config: {multiprocess: {...}}}       # a process per step, on the run's host
    execution: {config: {celery: {broker: ..., ...}}}  # a Celery task per step, on any worker

So `policyeval run --executor celery`, the Launchpad and a sensor's run request all pick the
mode without another job or code location; the code location's default mode (what a run
without `execution` gets) is an argument of `build_definitions`. Asset jobs cannot take an
executor per run otherwise: `define_asset_job(executor_def=...)` fixes one for every run.

Celery settings (broker, result backend, queue, acks) live in one file,
`deploy/distributed/celery.yaml`, read both by the workers (`dagster-celery worker start -y`)
and here, so the producer and the consumers cannot drift apart. Its broker and backend are
`env:` sources, resolved by Dagster in the process that runs the run: a password in the broker
URL never enters run config, the job snapshot or the UI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import yaml
from dagster._core.definitions.executor_definition import (
    IN_PROC_CONFIG,
    MULTI_PROC_CONFIG,
    _core_in_process_executor_creation,
    _core_multiprocess_executor_creation,
)
from dagster_celery.executor import CELERY_CONFIG, celery_executor

from policyeval.errors import PolicyevalError

MODES = ("in_process", "multiprocess", "celery")
STEP_PROCESS_MODES = ("multiprocess", "celery")  # each step reloads the code location elsewhere


def celery_config(path: Path) -> dict[str, Any]:
    """The executor config block (`execution.config`) of a dagster-celery worker YAML file."""
    try:
        parsed = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise PolicyevalError(f"{path}: cannot read the Celery settings ({exc})") from exc
    config = (parsed.get("execution") or {}).get("config") if isinstance(parsed, dict) else None
    if not isinstance(config, dict) or not config.get("broker"):
        raise PolicyevalError(f"{path}: expected `execution: {{config: {{broker: ...}}}}` (dagster-celery worker config)")
    return config


def execution_config(mode: str, celery_settings: Path | None = None) -> dict[str, Any]:
    """The `execution.config` value that selects `mode` (Celery's settings from the file)."""
    if mode not in MODES:
        raise PolicyevalError(f"unknown executor {mode!r}: one of {', '.join(MODES)}")
    if mode != "celery":
        return {mode: {}}
    if celery_settings is None:
        raise PolicyevalError("the celery executor needs its settings file (deploy/distributed/celery.yaml)")
    return {"celery": celery_config(celery_settings)}


def _requirements(config: dict) -> list:
    return dg.multiple_process_executor_requirements() if set(config) & set(STEP_PROCESS_MODES) else []


def policyeval_executor(default: dict[str, Any]) -> dg.ExecutorDefinition:
    """The code location's executor; `default` (from `execution_config`) applies to runs without `execution`."""

    @dg.executor(
        name="policyeval_executor",
        config_schema=dg.Field(
            dg.Selector({"in_process": IN_PROC_CONFIG, "multiprocess": MULTI_PROC_CONFIG, "celery": CELERY_CONFIG}),
            default_value=default,
        ),
        requirements=_requirements,
    )
    def _executor(init_context: dg.InitExecutorContext) -> dg.Executor:
        """In the run's process, a process per step, or a Celery task per step (pick in run config)."""
        config = init_context.executor_config
        if "in_process" in config:
            return _core_in_process_executor_creation(config["in_process"])
        if "multiprocess" in config:
            return _core_multiprocess_executor_creation(config["multiprocess"])
        return celery_executor.executor_creation_fn(init_context._replace(executor_config=config["celery"]))

    return _executor
