"""The adjudication queue: items whose labels disagree, settled by one adjudicator.

An item enters the queue when its annotators disagree with each other, or when it is a
hidden gold item and some annotator disagrees with the gold label (either the annotator
or the old gold label is wrong, and only a person can say which). The queue is a CSV
an adjudicator fills in (`adjudicated_label`, and `adjudicator` unless given on import).

Adjudications are validated and merged exactly like annotations (all problems at once,
nothing half imported, re-importing is idempotent). Any campaign item may be
adjudicated, not only queued ones: an adjudicator who spots a unanimous but wrong label
can correct it, and an adjudicated label always wins in the gold set.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from ..tables import atomic_write_bytes, read_parquet, write_parquet
from .annotations import ImportResult, load_annotations
from .calibration import given_labels, label_matrix
from .campaign import Campaign, load_campaign
from .export import csv_bytes
from .importing import Problems, file_sha256, match_label, merge_labels, read_csv, read_text
from .layout import CampaignPaths

DISAGREE = "annotators disagree"
VS_GOLD = "disagrees with gold"

ADJUDICATION_SCHEMA = pa.schema([
    pa.field("campaign_id", pa.string(), nullable=False),
    pa.field("item_id", pa.string(), nullable=False),
    pa.field("label", pa.string(), nullable=False),
    pa.field("adjudicator", pa.string(), nullable=False),
    pa.field("notes", pa.string()),
    pa.field("source_file", pa.string()),
    pa.field("source_sha256", pa.string()),
    pa.field("source_line", pa.int64()),
    pa.field("source_row", pa.int64()),
])


def label_column(annotator: str) -> str:
    return f"label_{annotator}"


def adjudication_queue(campaign: Campaign, annotations: pd.DataFrame) -> pd.DataFrame:
    """Items to adjudicate, with each annotator's label and an empty `adjudicated_label`."""
    matrix = label_matrix(campaign, annotations)
    gold = campaign.gold_labels
    items = campaign.items.set_index("item_id")
    rows: list[dict[str, Any]] = []
    for item_id, labels in matrix.iterrows():
        given = list(given_labels(labels).values())
        reasons = []
        if len(set(given)) > 1:
            reasons.append(DISAGREE)
        if item_id in gold and any(v != gold[item_id] for v in given):
            reasons.append(VS_GOLD)
        if not reasons:
            continue
        row = {
            "item_id": item_id,
            "category": items.at[item_id, "category_id"],
            "prompt": items.at[item_id, "prompt_text"],
            "response": items.at[item_id, "response_text"],
            "reason": "; ".join(reasons),
        }
        present = given_labels(labels)
        row.update({label_column(a): present.get(a, "") for a in campaign.annotators})
        row.update({"gold_label": gold.get(item_id, ""), "adjudicated_label": "", "adjudicator": "", "notes": ""})
        rows.append(row)
    columns = (["item_id", "category", "prompt", "response", "reason"]
               + [label_column(a) for a in campaign.annotators]
               + ["gold_label", "adjudicated_label", "adjudicator", "notes"])
    queue = pd.DataFrame(rows, columns=columns)
    return queue.sort_values(["category", "item_id"], kind="stable").reset_index(drop=True)


def queue_with_decisions(campaign: Campaign, queue: pd.DataFrame, decided: pd.DataFrame) -> pd.DataFrame:
    """The queue with each adjudication filled in, plus items adjudicated without being queued."""
    decisions = decided[["item_id", "label", "adjudicator", "notes"]].rename(columns={"label": "adjudicated_label"})
    table = queue.drop(columns=["adjudicated_label", "adjudicator", "notes"]).merge(decisions, on="item_id", how="outer")
    items = campaign.items.set_index("item_id")
    unqueued = ~table["item_id"].isin(set(queue["item_id"]))
    for column, source in (("category", "category_id"), ("prompt", "prompt_text"), ("response", "response_text")):
        table.loc[unqueued, column] = [items.at[i, source] for i in table.loc[unqueued, "item_id"]]
    table.loc[unqueued, "reason"] = "adjudicated without dispute"
    table["status"] = ["settled" if isinstance(v, str) and v else "open" for v in table["adjudicated_label"]]
    return table.sort_values(["category", "item_id"], kind="stable").reset_index(drop=True)


def write_adjudication_queue(campaign_dir: str | os.PathLike, out: str | os.PathLike) -> int:
    """Write the queue of a campaign folder as CSV (atomically); returns its size."""
    queue = adjudication_queue(load_campaign(campaign_dir), load_annotations(campaign_dir))
    atomic_write_bytes(out, csv_bytes(queue))
    return len(queue)


def load_adjudications(campaign_dir: str | os.PathLike) -> pd.DataFrame:
    path = CampaignPaths(Path(campaign_dir)).adjudications
    if not path.exists():
        return pd.DataFrame({f.name: pd.Series(dtype=object) for f in ADJUDICATION_SCHEMA})
    return read_parquet(path, ADJUDICATION_SCHEMA)


def read_adjudications(campaign: Campaign, path: str | os.PathLike, *,
                       adjudicator: str | None = None) -> tuple[pd.DataFrame, int]:
    """Validated adjudications of one CSV (ADJUDICATION_SCHEMA columns) and the count of empty rows.

    Raises ImportRejected listing every problem.
    """
    path = Path(path)
    problems = Problems(path)
    text = read_text(path, problems)
    records = read_csv(path, text, ["item_id", "adjudicated_label"], problems) if text is not None else None
    problems.raise_if_any()
    assert records is not None
    items = campaign.item_ids
    rows: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    unlabeled = 0
    for record in records:
        cells, where, line = record.cells, f"row {record.row}", record.line
        item_id = cells["item_id"].strip()
        if item_id not in items:
            problems.add(f"{where}: unknown item id {item_id!r} (not in campaign {campaign.campaign_id})", line=line)
            continue
        raw = cells["adjudicated_label"]
        if not raw.strip():
            unlabeled += 1
            continue
        label = match_label(raw, campaign.behaviors)
        if label is None:
            problems.add(f"{where}: label {raw.strip()!r} is not a behavior of policy {campaign.policy_id} "
                         f"(expected one of: {', '.join(campaign.behaviors)})", line=line)
        who = cells.get("adjudicator", "").strip() or adjudicator
        if not who:
            problems.add(f"{where}: no adjudicator (fill the adjudicator column or name one on import)", line=line)
        if item_id in seen:
            problems.add(f"{where}: duplicate adjudication of {item_id} (first in row {seen[item_id]})", line=line)
            continue
        seen[item_id] = record.row
        if label is None or not who:
            continue
        rows.append({"campaign_id": campaign.campaign_id, "item_id": item_id, "label": label, "adjudicator": who,
                     "notes": cells.get("notes", "").strip() or None, "source_line": line, "source_row": record.row})
    problems.raise_if_any()
    digest = file_sha256(path)
    frame = pd.DataFrame([{**r, "source_file": path.name, "source_sha256": digest} for r in rows],
                         columns=ADJUDICATION_SCHEMA.names)
    return frame, unlabeled


def import_adjudications(campaign_dir: str | os.PathLike, path: str | os.PathLike, *,
                         adjudicator: str | None = None, replace: bool = False) -> ImportResult:
    """Validate an adjudication CSV completely, then merge it into `adjudications.parquet` atomically."""
    campaign = load_campaign(campaign_dir)
    new, unlabeled = read_adjudications(campaign, path, adjudicator=adjudicator)
    merged = merge_labels(load_adjudications(campaign_dir), new, ["item_id"], "label", replace,
                          Problems(Path(path)), "item")
    if merged.changed:
        write_parquet(merged.table, CampaignPaths(Path(campaign_dir)).adjudications, ADJUDICATION_SCHEMA)
    return ImportResult(str(path), len(new), unlabeled, merged.added, merged.unchanged, merged.replaced,
                        len(merged.table))
