"""Deployment monitoring: where sampled production conversations arrive, and what their
refusal rates are compared with.

Files: JSON Lines (one conversation per line, see `policyeval.deployment.conversations`)
directly under `root` (default: `deployment/` under the data root), named
`YYYY-MM-DD*.jsonl` after the UTC day they hold: `2026-03-02.jsonl`,
`2026-03-02-eu-west.jsonl`. The name selects the files of a day, so a day's run reads
only its own files however large the folder grows; each record's own timestamp then
decides: a record stamped on another UTC day (a file rotated late) is left out and
counted, so no conversation is counted in two days. Only the top-level folder is read;
partial downloads (`*.jsonl.part`) do not match the pattern.

Baseline: the refusal rates of `grades` of `baseline_checkpoint` (empty: the
`run_settings` baseline) under `baseline_policy_version` (empty: the most recently
registered policy version that has grades of that checkpoint).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg

from policyeval.deployment import DEFAULT_MARGIN
from .environment import DEPLOYMENT, data_root



class DeploymentLogs(dg.ConfigurableResource):
    """Sampled deployment conversations by UTC day, and the drift rule's settings.

    `margin`: a category's daily refusal rate is flagged when it differs from the eval
    baseline by more than this (and the two Wilson intervals do not overlap).
    """

    root: str = ""
    baseline_policy_version: str = ""
    baseline_checkpoint: str = ""
    margin: float = DEFAULT_MARGIN

    def root_dir(self) -> Path:
        return Path(self.root) if self.root else data_root() / DEPLOYMENT

    def files_for(self, day: date) -> list[Path]:
        """The day's files, sorted by name."""
        root = self.root_dir()
        if not root.is_dir():
            return []
        return sorted(p for p in root.glob(f"{day.isoformat()}*.jsonl") if p.is_file())
