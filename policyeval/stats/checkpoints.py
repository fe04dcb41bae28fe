"""Which checkpoints a comparison pairs: the graded ones, the baseline, and one measured
under two policy versions."""

from __future__ import annotations

from typing import Iterable, Mapping

import pandas as pd


def graded_by_checkpoint(tables: Iterable[pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Grades tables by the checkpoint they hold; empty tables (nothing graded yet) are left out."""
    return {str(frame["checkpoint_id"].iloc[0]): frame for frame in tables if len(frame)}


def choose_baseline(configured: str, checkpoints: Iterable[str]) -> str:
    """The configured baseline checkpoint, else the first graded one by id.

    The configured one is returned even when it was not graded: the caller decides
    whether that is an error.
    """
    return configured or sorted(checkpoints)[0]


def measured_under_both(
    old_grades: Mapping[str, pd.DataFrame], new_grades: Mapping[str, pd.DataFrame], baseline: str
) -> tuple[str, pd.DataFrame | None, pd.DataFrame | None]:
    """A checkpoint graded under both versions (the baseline if it is), with both grades tables."""
    both = [c for c in sorted(new_grades) if c in old_grades]
    if not both:
        return "", None, None
    checkpoint = baseline if baseline in both else both[0]
    return checkpoint, old_grades[checkpoint], new_grades[checkpoint]
