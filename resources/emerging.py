"""Where the emerging-risk analysis reads its two imports, and its settings.

Both folders hold JSON Lines files (`*.jsonl`, top level only): red-team findings in the
format of `policyeval generate --redteam` (category optional here, `found_at` for counts
over time), and deployment conversations in the deployment-log format (one file per UTC
day, `YYYY-MM-DD*.jsonl`). A folder that does not exist is an empty import.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from policyeval.emerging import DEFAULT_THRESHOLD, Settings
from .environment import conversations_root, redteam_root


class RiskImports(dg.ConfigurableResource):
    """The folders of red-team findings and deployment conversations, and the analysis settings.

    `policy_version`: the policy version whose taxonomy the records are screened against
    (empty: the most recently registered one). `similarity_threshold`: a record at least this
    similar to a category's text counts as covered. `min_cluster_size`: smaller clusters get
    no draft. `max_clusters`: the largest k tried.
    """

    redteam_dir: str = ""
    deployment_dir: str = ""
    policy_version: str = ""
    similarity_threshold: float = DEFAULT_THRESHOLD
    min_cluster_size: int = 3
    max_clusters: int = 8

    def redteam_root(self) -> Path:
        return redteam_root(self.redteam_dir)

    def deployment_root(self) -> Path:
        return conversations_root(self.deployment_dir)

    def settings(self) -> Settings:
        return Settings(threshold=self.similarity_threshold, max_k=self.max_clusters, min_cluster_size=self.min_cluster_size)
