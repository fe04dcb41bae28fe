"""Gold sets: the labels a campaign settled, with their provenance, for one policy version.

An item's label is gold when its annotators were unanimous (and, for a hidden gold
item, agreed with the old gold label) or when an adjudicator decided it. Items still in
dispute, or labeled by fewer than `min_labels` annotators, are left out and counted:
a gold set is only useful if every label in it is one people stand behind.

A behavior label only means something under the policy that defines the behaviors, so
every row carries the policy id, version label and content hash, and `gold_version` is
the hash of the set's content: two gold sets with the same version are the same labels.
A gold set can seed the hidden gold items of the next campaign (`create_campaign(gold=...)`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa

from ..records import canonical_json, content_hash
from ..tables import json_records, read_parquet, write_parquet
from .calibration import given_labels, label_matrix
from .campaign import Campaign

UNANIMOUS = "unanimous"
ADJUDICATED = "adjudicated"

GOLD_SCHEMA = pa.schema([
    pa.field("item_id", pa.string(), nullable=False),
    pa.field("label", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),  # unanimous | adjudicated
    pa.field("annotators", pa.string()),  # comma-separated names of the annotators who labeled the item
    pa.field("annotator_labels", pa.string()),  # canonical JSON {annotator: label}
    pa.field("adjudicator", pa.string()),
    pa.field("category_id", pa.string()),
    pa.field("prompt_text", pa.string()),
    pa.field("response_text", pa.string()),
    pa.field("campaign_id", pa.string(), nullable=False),
    pa.field("policy_id", pa.string()),
    pa.field("policy_version", pa.string()),
    pa.field("policy_hash", pa.string(), nullable=False),
    pa.field("gold_version", pa.string(), nullable=False),
])


@dataclass(frozen=True, eq=False)
class GoldSet:
    table: pd.DataFrame  # GOLD_SCHEMA
    gold_version: str
    n_unanimous: int
    n_adjudicated: int
    n_unresolved: int  # disagreements no adjudicator settled: left out
    n_incomplete: int  # fewer than min_labels labels and no adjudication: left out
    unresolved: tuple[str, ...]

    def summary(self) -> dict[str, object]:
        return {"gold_version": self.gold_version, "n_items": len(self.table), "n_unanimous": self.n_unanimous,
                "n_adjudicated": self.n_adjudicated, "n_unresolved": self.n_unresolved,
                "n_incomplete": self.n_incomplete}


def assemble_gold(campaign: Campaign, annotations: pd.DataFrame, adjudications: pd.DataFrame,
                  *, min_labels: int = 2) -> GoldSet:
    """Settled labels of a campaign, with counts of what was left out."""
    matrix = label_matrix(campaign, annotations)
    adjudicated = {r["item_id"]: r for r in adjudications.to_dict("records")}
    old_gold = campaign.gold_labels
    items = campaign.items.set_index("item_id")
    rows = []
    unresolved: list[str] = []
    incomplete = 0
    for item_id, labels in matrix.iterrows():
        given = given_labels(labels)
        values = set(given.values())
        consensus = next(iter(values)) if len(values) == 1 else None
        if item_id in adjudicated:
            label, source, adjudicator = adjudicated[item_id]["label"], ADJUDICATED, adjudicated[item_id]["adjudicator"]
        elif len(given) < min_labels:
            incomplete += 1
            continue
        elif consensus is not None and old_gold.get(item_id, consensus) == consensus:
            label, source, adjudicator = consensus, UNANIMOUS, None
        else:
            unresolved.append(item_id)
            continue
        rows.append({
            "item_id": item_id,
            "label": label,
            "source": source,
            "annotators": ",".join(sorted(given)),
            "annotator_labels": canonical_json(given),
            "adjudicator": adjudicator,
            "category_id": items.at[item_id, "category_id"],
            "prompt_text": items.at[item_id, "prompt_text"],
            "response_text": items.at[item_id, "response_text"],
            "campaign_id": campaign.campaign_id,
            "policy_id": campaign.policy_id,
            "policy_version": campaign.policy_version,
            "policy_hash": campaign.policy_hash,
        })
    rows.sort(key=lambda r: r["item_id"])
    version = content_hash(rows)
    table = pd.DataFrame([{**r, "gold_version": version} for r in rows], columns=GOLD_SCHEMA.names)
    return GoldSet(
        table=table,
        gold_version=version,
        n_unanimous=sum(r["source"] == UNANIMOUS for r in rows),
        n_adjudicated=sum(r["source"] == ADJUDICATED for r in rows),
        n_unresolved=len(unresolved),
        n_incomplete=incomplete,
        unresolved=tuple(sorted(unresolved)),
    )


def assemble_gold_set(campaign: Campaign, annotations: pd.DataFrame, adjudications: pd.DataFrame,
                      *, min_labels: int = 2) -> pd.DataFrame:
    """The gold set as a table (GOLD_SCHEMA); `attrs` holds the counts of what was left out."""
    gold = assemble_gold(campaign, annotations, adjudications, min_labels=min_labels)
    table = gold.table
    table.attrs.update(gold.summary())
    return table


def combine_gold(tables: list[pd.DataFrame]) -> tuple[pd.DataFrame, list[str]]:
    """One gold set from several campaigns' gold sets.

    A label belongs to one (item, response). The same pair settled in two campaigns (a
    hidden gold item, or two checkpoints that answered alike) is kept once: an
    adjudicated label wins over a unanimous one, as within a campaign; pairs whose
    labels still differ are left out and returned. `gold_version` is recomputed over
    the combined content.
    """
    frames = [t for t in tables if len(t)]
    if not frames:
        return pd.DataFrame(columns=GOLD_SCHEMA.names), []
    combined = pd.concat(frames, ignore_index=True).sort_values(["item_id", "campaign_id"], kind="stable")
    kept, conflicts = [], []
    for (item_id, _), group in combined.groupby(["item_id", "response_text"], sort=True, dropna=False):
        adjudicated = group[group["source"] == ADJUDICATED]
        deciding = adjudicated if len(adjudicated) else group
        if deciding["label"].nunique() > 1:
            conflicts.append(str(item_id))
            continue
        kept.append(deciding.iloc[0])
    table = pd.DataFrame(kept, columns=combined.columns).reset_index(drop=True)
    version = content_hash(json_records(table.drop(columns=["gold_version"])))
    return table.assign(gold_version=version).reindex(columns=GOLD_SCHEMA.names), sorted(set(conflicts))


def seed_gold(gold: pd.DataFrame | None, grades_frame: pd.DataFrame) -> pd.DataFrame | None:
    """One gold row per item for a new campaign's hidden gold items.

    A gold set may label one item under several checkpoints' responses; the row whose
    response is this checkpoint's is preferred, so calibration items look like the rest.
    """
    if gold is None or gold.empty:
        return None
    mine = set(zip(grades_frame["item_id"], grades_frame["response_text"]))
    ranked = gold.assign(_theirs=[(i, r) not in mine for i, r in zip(gold["item_id"], gold["response_text"])])
    ranked = ranked.sort_values(["item_id", "_theirs", "campaign_id"], kind="stable")
    return ranked.drop_duplicates("item_id").drop(columns="_theirs").reset_index(drop=True)


def write_gold_set(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    return write_parquet(table, path, GOLD_SCHEMA)


def read_gold_set(path: str | os.PathLike) -> pd.DataFrame:
    """An existing gold set (needs item_id and label), e.g. to mix into a new campaign."""
    return read_parquet(path, required=("item_id", "label"))
