"""Run settings: how much to measure and where the response cache lives."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from policyeval.runs.cache import ResponseCache


class RunSettings(dg.ConfigurableResource):
    """`sample_per_cell`: items per category x expected behavior sent to each checkpoint
    (0 = the whole eval set). `baseline_checkpoint`: what the comparison tests against."""

    sample_per_cell: int = 2
    cache_dir: str = ""  # default $POLICYEVAL_CACHE_DIR or ./.cache/responses
    baseline_checkpoint: str = ""
    grader: str = "refusal"  # refusal | judge (judge needs the JudgeResource configured)

    def cache(self) -> ResponseCache:
        return ResponseCache(Path(self.cache_dir or os.environ.get("POLICYEVAL_CACHE_DIR", ".cache/responses")))
