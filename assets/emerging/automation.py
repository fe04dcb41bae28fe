"""The emerging-risk job: both imports, the analysis and its report, in one run (no model
endpoint is called, so it is cheap to run whenever the imports change)."""

from __future__ import annotations

import dagster as dg

from .risks import deployment_conversations, emerging_risk_report, emerging_risks, redteam_findings

emerging_risks_job = dg.define_asset_job(
    "emerging_risks_job",
    selection=dg.AssetSelection.assets(redteam_findings, deployment_conversations, emerging_risks, emerging_risk_report),
    description="Import red-team findings and deployment conversations, cluster what no category covers, draft categories, report.",
)

JOBS = [emerging_risks_job]
SENSORS: list = []
SCHEDULES: list = []
