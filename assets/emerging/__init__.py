"""Emerging risks: the red-team and deployment imports, their clusters outside the taxonomy
with a draft category each, and the emerging-risk report."""

from __future__ import annotations

from .automation import JOBS, SCHEDULES, SENSORS
from .risks import deployment_conversations, emerging_risk_report, emerging_risks, imports_fingerprint, redteam_findings, screening_policy

ASSETS = [redteam_findings, deployment_conversations, emerging_risks, emerging_risk_report]
CHECKS: list = []

__all__ = ["ASSETS", "CHECKS", "JOBS", "SCHEDULES", "SENSORS", "imports_fingerprint", "screening_policy"]
