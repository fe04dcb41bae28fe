"""Import annotators' labels into a campaign.

Accepted files:

- a CSV with columns annotator, item_id, label[, notes] (many annotators in one file);
- a returned batch CSV (`batches/<annotator>.csv`: task_id, item_id, ..., label, notes),
  whose annotator is given by the caller or, failing that, by the file name;
- a Label Studio JSON export: a list of tasks, each with `data.item_id` and
  `annotations: [{completed_by: {email: ...} | <user id>, result: [{value: {choices: [label]}}]}]`.
  A user is matched to a campaign annotator by alias, by exact name, or by the part of
  an e-mail address before the "@". Cancelled (skipped) annotations are ignored.

An empty label means "not labeled yet" and is skipped, so a half-finished batch can be
imported. Every problem (unknown item or annotator, a label outside the policy's
behaviors, the same annotator labeling an item twice, malformed files) is reported at
once and nothing is written; see `importing` for why re-importing is idempotent.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from ..tables import read_parquet, write_parquet
from .campaign import Campaign, load_campaign
from .export import LABEL_FIELD
from .importing import Problems, csv_header, file_sha256, match_label, merge_labels, read_csv, read_text
from .layout import CampaignPaths

ANNOTATION_SCHEMA = pa.schema([
    pa.field("campaign_id", pa.string(), nullable=False),
    pa.field("annotator", pa.string(), nullable=False),
    pa.field("item_id", pa.string(), nullable=False),
    pa.field("label", pa.string(), nullable=False),
    pa.field("notes", pa.string()),
    pa.field("source_file", pa.string()),  # file name the label came from
    pa.field("source_sha256", pa.string()),
    pa.field("source_line", pa.int64()),  # CSV line, or Label Studio task number
    pa.field("source_row", pa.int64()),
])


@dataclass(frozen=True)
class ImportResult:
    file: str
    labels_read: int
    unlabeled: int  # rows or tasks without a label yet: skipped
    added: int
    unchanged: int  # already stored with the same label
    replaced: int
    total: int  # labels stored after the import


def annotation_progress(campaign: Campaign, table: pd.DataFrame) -> pd.DataFrame:
    """Per annotator: items assigned, labeled, still open, and labels per behavior."""
    rows = []
    for annotator in campaign.annotators:
        mine = table[table["annotator"] == annotator] if len(table) else table
        assigned = int((campaign.assignments["annotator"] == annotator).sum())
        counts = mine["label"].value_counts() if len(mine) else pd.Series(dtype=int)
        rows.append({"annotator": annotator, "assigned": assigned, "labeled": len(mine), "open": max(0, assigned - len(mine)),
                     **{b: int(counts.get(b, 0)) for b in campaign.behaviors}})
    return pd.DataFrame(rows)


def empty_annotations() -> pd.DataFrame:
    return pd.DataFrame({f.name: pd.Series(dtype=object) for f in ANNOTATION_SCHEMA})


def load_annotations(campaign_dir: str | os.PathLike) -> pd.DataFrame:
    """The campaign's stored annotations (empty if none were imported)."""
    path = CampaignPaths(Path(campaign_dir)).annotations
    if not path.exists():
        return empty_annotations()
    return read_parquet(path, ANNOTATION_SCHEMA)


def read_annotations(campaign: Campaign, path: str | os.PathLike, *, annotator: str | None = None,
                     aliases: dict[str, str] | None = None) -> tuple[pd.DataFrame, int]:
    """Validated labels of one file (ANNOTATION_SCHEMA columns) and the count of unlabeled rows.

    Raises ImportRejected listing every problem.
    """
    path = Path(path)
    problems = Problems(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".json"):
        problems.add("expected a .csv file or a Label Studio .json export")
        problems.raise_if_any()
    text = read_text(path, problems)
    problems.raise_if_any()
    assert text is not None
    resolve = _resolver(campaign, aliases or {})
    if suffix == ".json":
        rows, unlabeled = _from_label_studio(campaign, text, resolve, annotator, problems)
    else:
        rows, unlabeled = _from_csv(campaign, path, text, resolve, annotator, problems)
    _check_duplicates(rows, problems)
    problems.raise_if_any()
    digest = file_sha256(path)
    frame = pd.DataFrame(
        [{**r, "campaign_id": campaign.campaign_id, "source_file": path.name, "source_sha256": digest} for r in rows],
        columns=ANNOTATION_SCHEMA.names,
    )
    return frame, unlabeled


def import_annotations(campaign_dir: str | os.PathLike, path: str | os.PathLike, *, annotator: str | None = None,
                       aliases: dict[str, str] | None = None, replace: bool = False) -> ImportResult:
    """Validate `path` completely, then merge its labels into `annotations.parquet` atomically."""
    campaign = load_campaign(campaign_dir)
    new, unlabeled = read_annotations(campaign, path, annotator=annotator, aliases=aliases)
    existing = load_annotations(campaign_dir)
    merged = merge_labels(existing, new, ["annotator", "item_id"], "label", replace, Problems(Path(path)), "annotator / item")
    if merged.changed:
        write_parquet(merged.table, CampaignPaths(Path(campaign_dir)).annotations, ANNOTATION_SCHEMA)
    return ImportResult(str(path), len(new), unlabeled, merged.added, merged.unchanged, merged.replaced,
                        len(merged.table))


# ---------------------------------------------------------------------------


def _resolver(campaign: Campaign, aliases: dict[str, str]):
    known = set(campaign.annotators)

    def resolve(name: str) -> str | None:
        name = name.strip()
        if name in aliases:
            return aliases[name]
        if name in known:
            return name
        local = name.split("@", 1)[0]
        if "@" in name and local in known:
            return local
        return None

    return resolve


def _label_or_problem(campaign: Campaign, raw: str, where: str, line: int | None, problems: Problems) -> str | None:
    label = match_label(raw, campaign.behaviors)
    if label is None:
        problems.add(f"{where}: label {raw.strip()!r} is not a behavior of policy {campaign.policy_id} "
                     f"(expected one of: {', '.join(campaign.behaviors)})", line=line)
    return label


def _from_csv(campaign: Campaign, path: Path, text: str, resolve, annotator: str | None,
              problems: Problems) -> tuple[list[dict[str, Any]], int]:
    long_format = "annotator" in csv_header(text)
    records = read_csv(path, text, ["annotator", "item_id", "label"] if long_format else ["item_id", "label"], problems)
    if records is None:
        return [], 0
    fixed: str | None = None
    if not long_format:
        given = annotator if annotator is not None else path.stem
        fixed = resolve(given)
        if fixed is None:
            how = "--annotator" if annotator is not None else "the file name"
            problems.add(f"annotator {given!r} (from {how}) is not in campaign {campaign.campaign_id} "
                         f"(annotators: {', '.join(campaign.annotators)})")
            return [], 0
    elif annotator is not None:
        problems.add("the file has an annotator column; the annotator option is for single-annotator batch files", line=1)
        return [], 0

    items = campaign.item_ids
    tasks = {(a, t): i for a, t, i in campaign.assignments[["annotator", "task_id", "item_id"]].itertuples(index=False)}
    rows: list[dict[str, Any]] = []
    unlabeled = 0
    for record in records:
        cells, where, line = record.cells, f"row {record.row}", record.line
        who = fixed
        if long_format:
            raw_who = cells["annotator"].strip()
            who = resolve(raw_who) if raw_who else None
            if who is None:
                problems.add(f"{where}: annotator {raw_who!r} is not in campaign {campaign.campaign_id} "
                             f"(annotators: {', '.join(campaign.annotators)})", line=line)
        item_id = cells["item_id"].strip()
        if item_id not in items:
            problems.add(f"{where}: unknown item id {item_id!r} (not in campaign {campaign.campaign_id})", line=line)
            continue
        task_id = cells.get("task_id", "").strip()
        if who is not None and task_id and tasks.get((who, task_id), item_id) != item_id:
            problems.add(f"{where}: task {task_id} of {who} is item {tasks[(who, task_id)]}, not {item_id}", line=line)
        if not cells["label"].strip():
            unlabeled += 1
            continue
        label = _label_or_problem(campaign, cells["label"], where, line, problems)
        if label is None or who is None:
            continue
        rows.append({"annotator": who, "item_id": item_id, "label": label, "notes": cells.get("notes", "").strip() or None,
                     "source_line": line, "source_row": record.row, "_where": where})
    return rows, unlabeled


def _from_label_studio(campaign: Campaign, text: str, resolve, annotator: str | None,
                       problems: Problems) -> tuple[list[dict[str, Any]], int]:
    try:
        tasks = json.loads(text)
    except json.JSONDecodeError as exc:
        problems.add(f"invalid JSON ({exc.msg}, column {exc.colno}): expected a Label Studio export", line=exc.lineno)
        return [], 0
    if not isinstance(tasks, list):
        problems.add("a Label Studio export is a JSON list of tasks", line=1)
        return [], 0
    items = campaign.item_ids
    rows: list[dict[str, Any]] = []
    unlabeled = 0
    for number, task in enumerate(tasks, start=1):
        where = f"task {number}" + (f" (id {task.get('id')})" if isinstance(task, dict) and "id" in task else "")
        data = task.get("data") if isinstance(task, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("item_id"), str):
            problems.add(f"{where}: no data.item_id")
            continue
        item_id = data["item_id"].strip()
        if item_id not in items:
            problems.add(f"{where}: unknown item id {item_id!r} (not in campaign {campaign.campaign_id})")
            continue
        annotations = task.get("annotations") or []
        if not isinstance(annotations, list):
            problems.add(f"{where}: annotations must be a list")
            continue
        live = [a for a in annotations if not (isinstance(a, dict) and a.get("was_cancelled"))]
        if not live:
            unlabeled += 1
        for k, annotation in enumerate(live, start=1):
            at = f"{where} annotation {k}"
            if not isinstance(annotation, dict):
                problems.add(f"{at}: not an object")
                continue
            who = _completed_by(annotation.get("completed_by"), annotator)
            resolved = resolve(who) if who else None
            if resolved is None:
                problems.add(f"{at}: annotator {who!r} is not in campaign {campaign.campaign_id} "
                             f"(annotators: {', '.join(campaign.annotators)}; map user ids with aliases)")
            choice, notes, error = _result(annotation.get("result"))
            if error:
                problems.add(f"{at}: {error}")
                continue
            label = _label_or_problem(campaign, choice, at, None, problems)
            if label is None or resolved is None:
                continue
            rows.append({"annotator": resolved, "item_id": item_id, "label": label, "notes": notes,
                         "source_line": None, "source_row": number, "_where": at})
    return rows, unlabeled


def _completed_by(value: Any, fallback: str | None) -> str | None:
    """Label Studio names the user as an object (with email) or as a bare user id."""
    if isinstance(value, dict):
        for key in ("email", "username", "id"):
            if value.get(key) not in (None, ""):
                return str(value[key])
        return fallback
    if isinstance(value, (int, str)) and not isinstance(value, bool) and str(value).strip():
        return str(value)
    return fallback


def _result(result: Any) -> tuple[str, str | None, str | None]:
    """(chosen label, notes, error) of one Label Studio annotation result list."""
    if not isinstance(result, list):
        return "", None, "result must be a list"
    choices: list[str] = []
    notes: list[str] = []
    for entry in result:
        if not isinstance(entry, dict) or not isinstance(entry.get("value"), dict):
            continue
        value = entry["value"]
        if "choices" in value and entry.get("from_name", LABEL_FIELD) == LABEL_FIELD:
            if not isinstance(value["choices"], list):
                return "", None, "value.choices must be a list"
            choices.extend(str(c) for c in value["choices"])
        elif isinstance(value.get("text"), list):
            notes.extend(str(t) for t in value["text"])
    if len(choices) != 1:
        return "", None, f"expected exactly one label choice, found {len(choices)}"
    return choices[0], ("\n".join(notes) or None), None


def _check_duplicates(rows: list[dict[str, Any]], problems: Problems) -> None:
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        key = (row["annotator"], row["item_id"])
        if key in seen:
            problems.add(f"{row['_where']}: duplicate label: {row['annotator']} already labeled "
                         f"{row['item_id']} in {seen[key]['_where']}", line=row["source_line"])
        else:
            seen[key] = row
