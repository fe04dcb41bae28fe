"""The one place the environment is read: where the project's data lives, and the few
settings fixed when the definitions load.

`POLICYEVAL_DATA_DIR` (default `./data`) holds the Parquet tables (`assets/`), reports,
campaigns, policy snapshots and deployment logs; `POLICYEVAL_CACHE_DIR` (default
`./.cache/responses`) the response cache. `build_definitions` resolves the root once and
hands each resource its folder under it, so the UI, sensors and `policyeval run` agree;
a resource built without a path (a test, a notebook) falls back to the same rule here.

`POLICYEVAL_REEVAL_CRON` and `POLICYEVAL_DEPLOYMENT_START` shape a schedule and a
partitions definition, which exist before any resource does, so they are read here too;
`POLICYEVAL_REEVAL_LATEST_CHECKPOINTS` is read on each tick of the re-evaluation schedule.

`POLICYEVAL_REDTEAM_DIR` and `POLICYEVAL_CONVERSATIONS_DIR` are the folders the
emerging-risk analysis reads: red-team findings and deployment conversations as JSON
Lines (defaults: the demo's `examples/redteam` and `examples/deployment`, as the policy
and checkpoint folders default to the demo's).

`POLICYEVAL_CELERY_SETTINGS` names the Celery settings file (default
`deploy/distributed/celery.yaml` in the project) that the celery executor and its workers share;
the broker and backend URLs in it are Dagster `env:` sources (`POLICYEVAL_CELERY_BROKER`,
`POLICYEVAL_CELERY_BACKEND`), resolved by Dagster where a run executes, never read here.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "POLICYEVAL_DATA_DIR"
CACHE_DIR_ENV = "POLICYEVAL_CACHE_DIR"
POLICIES_DIR_ENV = "POLICYEVAL_POLICIES"
CHECKPOINTS_DIR_ENV = "POLICYEVAL_CHECKPOINTS"
REEVAL_CRON_ENV = "POLICYEVAL_REEVAL_CRON"
REEVAL_CRON_DEFAULT = "0 6 * * *"
REEVAL_LATEST_ENV = "POLICYEVAL_REEVAL_LATEST_CHECKPOINTS"
DEPLOYMENT_START_ENV = "POLICYEVAL_DEPLOYMENT_START"
DEPLOYMENT_START_DEFAULT = "2026-01-01"
REDTEAM_DIR_ENV = "POLICYEVAL_REDTEAM_DIR"
CONVERSATIONS_DIR_ENV = "POLICYEVAL_CONVERSATIONS_DIR"
CELERY_SETTINGS_ENV = "POLICYEVAL_CELERY_SETTINGS"
CELERY_SETTINGS_DEFAULT = Path(__file__).resolve().parents[1] / "deploy" / "distributed" / "celery.yaml"

ASSETS = "assets"
REPORTS = "reports"
CAMPAIGNS = "campaigns"
SNAPSHOTS = "policy_snapshots"
DEPLOYMENT = "deployment"
EMERGING = "emerging"


def data_root(configured: str = "") -> Path:
    """The data root: `configured` when given, else $POLICYEVAL_DATA_DIR, else ./data."""
    return Path(configured or os.environ.get(DATA_DIR_ENV) or "data")


def policies_root(configured: str = "") -> Path:
    """Policy packs: `configured`, else $POLICYEVAL_POLICIES, else ./policies."""
    return Path(configured or os.environ.get(POLICIES_DIR_ENV) or "policies")


def checkpoints_root(configured: str = "") -> Path:
    """Checkpoint manifests: `configured`, else $POLICYEVAL_CHECKPOINTS, else ./checkpoints."""
    return Path(configured or os.environ.get(CHECKPOINTS_DIR_ENV) or "checkpoints")


def redteam_root(configured: str = "") -> Path:
    """Red-team findings for the emerging-risk analysis: `configured`, else $POLICYEVAL_REDTEAM_DIR, else ./examples/redteam."""
    return Path(configured or os.environ.get(REDTEAM_DIR_ENV) or "examples/redteam")


def conversations_root(configured: str = "") -> Path:
    """Deployment conversations for the emerging-risk analysis: `configured`, else $POLICYEVAL_CONVERSATIONS_DIR,
    else ./examples/deployment."""
    return Path(configured or os.environ.get(CONVERSATIONS_DIR_ENV) or "examples/deployment")


def cache_root(configured: str = "") -> Path:
    """The response cache: `configured` when given, else $POLICYEVAL_CACHE_DIR, else ./.cache/responses."""
    return Path(configured or os.environ.get(CACHE_DIR_ENV) or ".cache/responses")


def celery_settings_path(configured: str = "") -> Path:
    """The Celery settings file: `configured`, else $POLICYEVAL_CELERY_SETTINGS, else the project's
    deploy/distributed/celery.yaml (absolute: a code server may run from another folder)."""
    return Path(configured or os.environ.get(CELERY_SETTINGS_ENV) or CELERY_SETTINGS_DEFAULT)


def reevaluation_cron() -> str:
    """The re-evaluation schedule's cron: $POLICYEVAL_REEVAL_CRON, else daily at 06:00."""
    return os.environ.get(REEVAL_CRON_ENV) or REEVAL_CRON_DEFAULT


def reevaluation_latest_checkpoints() -> int | None:
    """How many of the most recently registered checkpoints the schedule re-asks:
    $POLICYEVAL_REEVAL_LATEST_CHECKPOINTS; None (all) when unset, empty, 'all' or 0."""
    raw = os.environ.get(REEVAL_LATEST_ENV, "").strip().lower()
    if raw in ("", "all", "0"):
        return None
    if not raw.isdigit():
        raise ValueError(f"{REEVAL_LATEST_ENV} must be a positive integer or 'all', got {raw!r}")
    return int(raw)


def deployment_start() -> str:
    """The first day of sampled deployment traffic: $POLICYEVAL_DEPLOYMENT_START, else 2026-01-01."""
    return os.environ.get(DEPLOYMENT_START_ENV) or DEPLOYMENT_START_DEFAULT
