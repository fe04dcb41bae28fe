"""Dagster resources: where policies, checkpoints, data and models are.

Every path and endpoint comes from config or an environment variable with a sensible
default relative to the working directory; nothing machine-specific is written here.
"""

from __future__ import annotations

from .campaigns import CampaignStore
from .deployment import DeploymentLogs
from .emerging import RiskImports
from .io_manager import ParquetIOManager
from .judge import JudgeResource
from .repositories import CheckpointRegistry, PolicyRepository
from .settings import RunSettings

__all__ = ["CampaignStore", "CheckpointRegistry", "DeploymentLogs", "JudgeResource", "ParquetIOManager", "PolicyRepository", "RiskImports", "RunSettings"]
