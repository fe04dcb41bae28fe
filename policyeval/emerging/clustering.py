"""Group candidates into themes: TF-IDF of word stems, k-means with k chosen by silhouette.

k-means runs with a fixed seed and several restarts, so the same candidates always give
the same clusters. k ranges from 2 to the rule-of-thumb sqrt(n/2) for n candidates (at
most `max_k`, and below the number of distinct texts); the k with the highest cosine
silhouette wins, the smaller k on a tie. The cap matters: near-copies of one request (a
finding and the same request in traffic) make the silhouette grow with k until every
paraphrase is a cluster of its own, which is a list, not a theme. A cluster with fewer
than `min_size` members is not a theme yet: its members are reported as unclustered and
get no draft category, so one odd finding does not become a proposal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score

from .text import fit_stems

UNCLUSTERED = -1
SEED = 0


@dataclass(frozen=True)
class Clustering:
    labels: tuple[int, ...]  # one per text; UNCLUSTERED for members of too-small clusters
    k: int  # clusters k-means was asked for (before small ones were dropped)
    silhouette: float | None  # of the chosen k; None when there was nothing to choose


def cluster_texts(texts: Sequence[str], max_k: int = 8, min_size: int = 3) -> Clustering:
    """Cluster labels 0..n-1 numbered by size (largest first, then first appearance)."""
    n = len(texts)
    if n < min_size:
        return Clustering(tuple(UNCLUSTERED for _ in texts), 0, None)
    _, matrix = fit_stems(texts)
    distinct = len({t.strip().lower() for t in texts})
    best: tuple[float, int, np.ndarray] | None = None
    for k in range(2, min(max_k, max(2, math.isqrt(n // 2)), distinct - 1) + 1):
        labels = KMeans(n_clusters=k, n_init=10, random_state=SEED).fit_predict(matrix)
        if len(set(labels)) < 2:
            continue
        score = float(silhouette_score(matrix, labels, metric="cosine"))
        if best is None or score > best[0] + 1e-9:
            best = (score, k, labels)
    if best is None:  # too few distinct texts to split: one theme
        labels, k, score = np.zeros(n, dtype=int), 1, None
    else:
        score, k, labels = best
    return Clustering(_renumber(labels, min_size), k, None if score is None else round(score, 6))


def _renumber(labels: np.ndarray, min_size: int) -> tuple[int, ...]:
    sizes: dict[int, int] = {}
    first: dict[int, int] = {}
    for i, label in enumerate(labels):
        sizes[int(label)] = sizes.get(int(label), 0) + 1
        first.setdefault(int(label), i)
    kept = sorted((l for l, size in sizes.items() if size >= min_size), key=lambda l: (-sizes[l], first[l]))
    new = {old: i for i, old in enumerate(kept)}
    return tuple(new.get(int(label), UNCLUSTERED) for label in labels)
