"""Where the project's data lives: the one place the data-root setting is read.

`POLICYEVAL_DATA_DIR` (default `./data`) holds the Parquet tables (`assets/`), reports,
campaigns, policy snapshots and deployment logs; `POLICYEVAL_CACHE_DIR` (default
`./.cache/responses`) the response cache. `build_definitions` resolves the root once and
hands each resource its folder under it, so the UI, sensors and `policyeval run` agree;
a resource built without a path (a test, a notebook) falls back to the same rule here.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "POLICYEVAL_DATA_DIR"
CACHE_DIR_ENV = "POLICYEVAL_CACHE_DIR"
POLICIES_DIR_ENV = "POLICYEVAL_POLICIES"
CHECKPOINTS_DIR_ENV = "POLICYEVAL_CHECKPOINTS"

ASSETS = "assets"
REPORTS = "reports"
CAMPAIGNS = "campaigns"
SNAPSHOTS = "policy_snapshots"
DEPLOYMENT = "deployment"


def data_root(configured: str = "") -> Path:
    """The data root: `configured` when given, else $POLICYEVAL_DATA_DIR, else ./data."""
    return Path(configured or os.environ.get(DATA_DIR_ENV) or "data")


def policies_root(configured: str = "") -> Path:
    """Policy packs: `configured`, else $POLICYEVAL_POLICIES, else ./policies."""
    return Path(configured or os.environ.get(POLICIES_DIR_ENV) or "policies")


def checkpoints_root(configured: str = "") -> Path:
    """Checkpoint manifests: `configured`, else $POLICYEVAL_CHECKPOINTS, else ./checkpoints."""
    return Path(configured or os.environ.get(CHECKPOINTS_DIR_ENV) or "checkpoints")


def cache_root(configured: str = "") -> Path:
    """The response cache: `configured` when given, else $POLICYEVAL_CACHE_DIR, else ./.cache/responses."""
    return Path(configured or os.environ.get(CACHE_DIR_ENV) or ".cache/responses")
