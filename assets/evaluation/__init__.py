"""Evaluation: policy versions, eval sets, responses, grades and metrics, with their
quality checks and the sensors and schedule that keep them current."""

from __future__ import annotations

from .automation import JOBS, SCHEDULES, SENSORS
from .measurement import grades, metrics, responses
from .policy import coverage_report, eval_set, policy
from .quality_checks import QUALITY_CHECKS as CHECKS

ASSETS = [policy, eval_set, coverage_report, responses, grades, metrics]

__all__ = ["ASSETS", "CHECKS", "JOBS", "SCHEDULES", "SENSORS"]
