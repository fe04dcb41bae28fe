"""The emerging-risk analysis end to end: screen every imported record against the pack,
cluster the candidates, summarize each cluster and draft a category for it.

Deterministic: the same records and pack give the same clusters, summaries and drafts
byte for byte (TF-IDF fitted on the inputs, k-means with a fixed seed, stable orders). It
calls no model endpoint; the only grader is the learned one, run locally.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import pandas as pd

from ..policy.model import PolicyPack
from .candidates import CANDIDATE_REASONS, DEFAULT_THRESHOLD, screen
from .clustering import UNCLUSTERED, cluster_texts
from .drafts import Draft, draft_categories
from .imports import RECORD_COLUMNS, RiskRecord, placeholder_counts, records_to_frame
from .summary import ClusterSummary, summarize

SCREEN_COLUMNS = [*RECORD_COLUMNS, "reason", "candidate", "nearest_category", "similarity", "harmful", "cluster"]


@dataclass(frozen=True)
class Settings:
    threshold: float = DEFAULT_THRESHOLD  # similarity at or above which a record counts as covered
    max_k: int = 8
    min_cluster_size: int = 3


@dataclass(frozen=True)
class EmergingRisks:
    policy_version: str
    screened: pd.DataFrame  # every record (SCREEN_COLUMNS); cluster UNCLUSTERED unless a candidate in a cluster
    summaries: tuple[ClusterSummary, ...]
    drafts: tuple[Draft, ...]
    k: int
    silhouette: float | None
    settings: Settings = field(default_factory=Settings)
    scrubbed: dict[str, int] = field(default_factory=dict)

    @property
    def candidates(self) -> pd.DataFrame:
        return candidate_rows(self.screened)

    def counts(self) -> dict[str, int]:
        """Records per source, candidates, clustered candidates and clusters: the headline numbers."""
        frame, candidates = self.screened, self.candidates
        return {
            "records": len(frame),
            "redteam_findings": int((frame["source"] == "redteam").sum()),
            "deployment_conversations": int((frame["source"] == "deployment").sum()),
            "candidates": len(candidates),
            "clustered": int((candidates["cluster"] != UNCLUSTERED).sum()),
            "clusters": len(self.summaries),
        }

    def reasons(self) -> dict[str, int]:
        return dict(sorted(Counter(self.screened["reason"]).items()))


def analyze(records: Sequence[RiskRecord], pack: PolicyPack, policy_version: str, settings: Settings = Settings(),
            harmful: Sequence[bool | None] | None = None, scrubbed: dict[str, int] | None = None) -> EmergingRisks:
    """Screen, cluster, summarize and draft. `harmful` overrides the harm head (tests); `scrubbed`
    defaults to the placeholders found in the records."""
    screened = screen(records, pack, settings.threshold, harmful)
    frame = records_to_frame(records)
    frame["reason"] = [s.reason for s in screened]
    frame["candidate"] = pd.Series([s.reason in CANDIDATE_REASONS for s in screened], index=frame.index, dtype=bool)
    frame["nearest_category"] = pd.Series([s.nearest_category for s in screened], index=frame.index, dtype=object)
    frame["similarity"] = pd.Series([s.similarity for s in screened], index=frame.index, dtype="float64")
    frame["reason"] = frame["reason"].astype(object)
    frame["harmful"] = pd.array([s.harmful for s in screened], dtype="boolean")
    frame["cluster"] = pd.Series(UNCLUSTERED, index=frame.index, dtype="int64")
    candidate_index = frame.index[frame["candidate"]]
    clustering = cluster_texts(frame.loc[candidate_index, "prompt_text"].tolist(), settings.max_k, settings.min_cluster_size)
    frame.loc[candidate_index, "cluster"] = list(clustering.labels)
    frame["cluster"] = frame["cluster"].astype("int64")
    return finish(frame[SCREEN_COLUMNS], pack, policy_version, settings, clustering.k, clustering.silhouette,
                  placeholder_counts(frame) if scrubbed is None else scrubbed)


def candidate_rows(screened: pd.DataFrame) -> pd.DataFrame:
    """The candidates of a screened table, renumbered from 0."""
    return screened.loc[screened["candidate"].astype(bool)].reset_index(drop=True)


def finish(screened: pd.DataFrame, pack: PolicyPack, policy_version: str, settings: Settings, k: int,
           silhouette: float | None, scrubbed: dict[str, int]) -> EmergingRisks:
    """Summaries and drafts of an already screened and clustered table (also what a report rebuilds from)."""
    summaries = tuple(summarize(candidate_rows(screened)))
    drafts = tuple(draft_categories(summaries, pack, policy_version))
    return EmergingRisks(policy_version, screened, summaries, drafts, k, silhouette, settings, dict(scrubbed))
