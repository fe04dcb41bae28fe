"""Emerging risks: red-team findings and deployment conversations no category covers,
clustered into themes, summarized with redacted examples and counts over time, and
proposed as draft categories of the pack.

One concept per module: `imports.py` (both imports as scrubbed records), `text.py` (the
TF-IDF representation), `candidates.py` (outside the taxonomy and risky), `clustering.py`
(k-means, k by silhouette), `summary.py` (per-cluster facts and redacted examples),
`drafts.py` (a draft category per cluster, as a domain file), `analysis.py` (all of it).
The report is `policyeval.reports.emerging`.
"""

from .analysis import SCREEN_COLUMNS, EmergingRisks, Settings, analyze, finish
from .candidates import CANDIDATE_REASONS, DEFAULT_THRESHOLD, Screened, screen
from .clustering import UNCLUSTERED, Clustering, cluster_texts
from .drafts import Draft, draft_categories
from .imports import DEPLOYMENT, REDTEAM, Imported, RiskRecord, read_deployment, read_redteam, records_from_frame, records_to_frame
from .summary import ClusterSummary, Example, summarize

__all__ = [
    "CANDIDATE_REASONS", "DEFAULT_THRESHOLD", "DEPLOYMENT", "REDTEAM", "SCREEN_COLUMNS", "UNCLUSTERED",
    "ClusterSummary", "Clustering", "Draft", "EmergingRisks", "Example", "Imported", "RiskRecord", "Screened", "Settings",
    "analyze", "cluster_texts", "draft_categories", "finish", "read_deployment", "read_redteam", "records_from_frame",
    "records_to_frame", "screen", "summarize",
]
