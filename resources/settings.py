"""Run settings: how much to measure and where the response cache lives."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from policyeval.runs.cache import ResponseCache


class RunSettings(dg.ConfigurableResource):
    """`sample_per_cell`: items per category x expected behavior sent to each checkpoint
    (0 = the whole eval set). `baseline_checkpoint`: what the comparison tests against.
    `refresh`: ask the model again even when the cache has the answer (hosted endpoints
    drift behind a fixed model name); the new answers still go to the cache."""

    sample_per_cell: int = 2
    cache_dir: str = ""  # default $POLICYEVAL_CACHE_DIR or ./.cache/responses
    baseline_checkpoint: str = ""
    grader: str = "refusal"  # refusal | judge (judge needs the JudgeResource configured)
    refresh: bool = False

    def cache(self) -> ResponseCache:
        root = Path(self.cache_dir or os.environ.get("POLICYEVAL_CACHE_DIR", ".cache/responses"))
        return _WriteOnlyCache(root) if self.refresh else ResponseCache(root)


class _WriteOnlyCache(ResponseCache):
    """Refresh mode: every lookup misses, so each request reaches the model; answers are still stored."""

    def get(self, key: str) -> dict | None:
        return None
