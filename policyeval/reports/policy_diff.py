"""What changed between two policy versions, and what that did to the measurements.

The core diff (`policy.diff.diff_packs`) says which categories and fields changed and
what work they invalidate. This report adds the item level and the numbers:

* items added, removed and relabeled, by item id with their categories. An item id
  hashes the chat, the category and the expected behavior, so relabeling an item (same
  chat, new expected behavior or category) shows in the id sets as one removal plus
  one addition; pairing them by chat turns that back into one relabel;
* under- and over-refusal per category under the old version and under the new one,
  from two grades tables of the same checkpoint, with the change in percentage points;
* per checkpoint measured under both, each changed item before and after: an item the
  edit replaced (same category, expected behavior, source and mutation) beside its
  replacement, with what the model did on each, and per touched category an exact
  McNemar test on those pairs (correct before vs correct after).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

import pandas as pd

from ..policy.diff import PolicyDiff
from ..policy.model import PolicyPack
from ..records import canonical_json, normalize_messages
from ..stats.mcnemar import mcnemar_paired
from ..stats.metrics import compute_metrics
from . import charts
from .lineage import footer, grades_lineage
from .redaction import prompt_of, truncate
from .render import Document, Paragraph, Stat, Stats, Styled, pp, rate_text, section, table

ITEM_COLUMNS = ["item_id", "category_id", "expected_behavior", "prompt"]
RELABEL_COLUMNS = ["old_item_id", "new_item_id", "old_category_id", "new_category_id", "old_expected", "new_expected",
                   "prompt"]


@dataclass(frozen=True)
class ItemChanges:
    added: pd.DataFrame  # ITEM_COLUMNS
    removed: pd.DataFrame  # ITEM_COLUMNS
    relabeled: pd.DataFrame  # RELABEL_COLUMNS


def _chat_key(row: Mapping[str, Any]) -> str:
    raw = row.get("messages")
    if isinstance(raw, str) and raw:
        try:
            messages = json.loads(raw)
            if isinstance(messages, list):
                return canonical_json(normalize_messages(messages))
        except json.JSONDecodeError:
            pass
    return canonical_json(normalize_messages([{"role": "user", "content": prompt_of(row)}]))


def _items(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for row in frame.drop_duplicates("item_id").to_dict("records"):
        out[str(row["item_id"])] = row
    return out


def item_changes(old_items: pd.DataFrame, new_items: pd.DataFrame) -> ItemChanges:
    """Items only in the old table, only in the new one, and the pairs that are the same chat relabeled."""
    old, new = _items(old_items), _items(new_items)
    gone = {i: old[i] for i in sorted(set(old) - set(new))}
    came = {i: new[i] for i in sorted(set(new) - set(old))}
    by_chat: dict[str, list[str]] = {}
    for item_id, row in came.items():
        by_chat.setdefault(_chat_key(row), []).append(item_id)
    relabeled = []
    for item_id, row in list(gone.items()):
        candidates = by_chat.get(_chat_key(row))
        if not candidates:
            continue
        new_id = candidates.pop(0)
        after = came.pop(new_id)
        del gone[item_id]
        relabeled.append({
            "old_item_id": item_id, "new_item_id": new_id,
            "old_category_id": row.get("category_id"), "new_category_id": after.get("category_id"),
            "old_expected": row.get("expected_behavior"), "new_expected": after.get("expected_behavior"),
            "prompt": prompt_of(after),
        })

    def table_of(rows: dict[str, dict[str, Any]]) -> pd.DataFrame:
        return pd.DataFrame([{"item_id": i, "category_id": r.get("category_id"),
                              "expected_behavior": r.get("expected_behavior"), "prompt": prompt_of(r)}
                             for i, r in rows.items()], columns=ITEM_COLUMNS)

    return ItemChanges(table_of(came), table_of(gone), pd.DataFrame(relabeled, columns=RELABEL_COLUMNS))


BEFORE_AFTER_COLUMNS = ["category_id", "expected_behavior", "old_item_id", "old_prompt", "old_behavior", "old_outcome",
                        "new_item_id", "new_prompt", "new_behavior", "new_outcome"]


def _pair_key(row: Mapping[str, Any]) -> tuple[str, str, str, str]:
    return (str(row.get("category_id") or ""), str(row.get("expected_behavior") or ""), str(row.get("source") or ""),
            str(row.get("mutation") or ""))


def before_after(old_grades: pd.DataFrame, new_grades: pd.DataFrame) -> pd.DataFrame:
    """Each item only one version has, beside the item it replaced where there is one.

    An edited prompt is a new item id; its counterpart is the removed item with the same
    category, expected behavior, source and mutation (the seed and each of its mutations
    pair with theirs), matched in eval-set order. Unmatched items keep an empty side.
    """
    old_ids, new_ids = set(old_grades["item_id"]), set(new_grades["item_id"])
    gone = [r for r in old_grades.to_dict("records") if r["item_id"] not in new_ids]
    came = [r for r in new_grades.to_dict("records") if r["item_id"] not in old_ids]
    waiting: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    for row in gone:
        waiting.setdefault(_pair_key(row), []).append(row)
    rows = []

    def side(row: Mapping[str, Any] | None, prefix: str) -> dict[str, Any]:
        if row is None:
            return {f"{prefix}_item_id": None, f"{prefix}_prompt": None, f"{prefix}_behavior": None, f"{prefix}_outcome": None}
        return {f"{prefix}_item_id": row["item_id"], f"{prefix}_prompt": prompt_of(row),
                f"{prefix}_behavior": row.get("behavior"), f"{prefix}_outcome": row.get("outcome")}

    for row in came:
        match = waiting.get(_pair_key(row))
        before = match.pop(0) if match else None
        rows.append({"category_id": row.get("category_id"), "expected_behavior": row.get("expected_behavior"),
                     **side(before, "old"), **side(row, "new")})
    for leftover in (r for rs in waiting.values() for r in rs):
        rows.append({"category_id": leftover.get("category_id"), "expected_behavior": leftover.get("expected_behavior"),
                     **side(leftover, "old"), **side(None, "new")})
    return pd.DataFrame(rows, columns=BEFORE_AFTER_COLUMNS)


def paired_tests(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per category, on items that pair up: correct before vs correct after, exact McNemar."""
    both = pairs.dropna(subset=["old_item_id", "new_item_id"])
    rows = []
    for category, group in both.groupby("category_id", sort=True):
        before = (group["old_outcome"] == "correct").tolist()
        after = (group["new_outcome"] == "correct").tolist()
        test = mcnemar_paired(before, after)
        rows.append({"category_id": category, "pairs": len(group), "correct_before": sum(before),
                     "correct_after": sum(after), "worse": test.b, "better": test.c, "p_value": test.p_value})
    return pd.DataFrame(rows, columns=["category_id", "pairs", "correct_before", "correct_after", "worse", "better", "p_value"])


def metric_deltas(old_grades: pd.DataFrame, new_grades: pd.DataFrame) -> pd.DataFrame:
    """Per category (and overall): both versions' metrics side by side, suffixed _old and _new."""
    old = compute_metrics(old_grades, ["category_id"])
    new = compute_metrics(new_grades, ["category_id"])
    old = pd.concat([old, compute_metrics(old_grades, []).assign(category_id="(overall)")], ignore_index=True)
    new = pd.concat([new, compute_metrics(new_grades, []).assign(category_id="(overall)")], ignore_index=True)
    return old.merge(new, on="category_id", how="outer", suffixes=("_old", "_new"))


def _side(row: pd.Series, suffix: str) -> pd.Series | None:
    if pd.isna(row.get(f"n{suffix}")):
        return None
    return pd.Series({k[: -len(suffix)]: v for k, v in row.items() if k.endswith(suffix)})


def _delta(old: pd.Series | None, new: pd.Series | None, name: str) -> Styled | str:
    if old is None or new is None or pd.isna(old[f"{name}_rate"]) or pd.isna(new[f"{name}_rate"]):
        return "–"
    d = float(new[f"{name}_rate"]) - float(old[f"{name}_rate"])
    apart = float(new[f"{name}_low"]) > float(old[f"{name}_high"]) or float(new[f"{name}_high"]) < float(old[f"{name}_low"])
    tone = ("bad" if d > 0 else "good") if apart and d else ""
    return Styled(pp(d), tone)  # type: ignore[arg-type]


def _rate_chart(deltas: pd.DataFrame, name: str, label: str, old_label: str, new_label: str):
    rows = []
    for _, row in deltas[deltas["category_id"] != "(overall)"].iterrows():
        for series, suffix in ((old_label, "_old"), (new_label, "_new")):
            side = _side(row, suffix)
            if side is None or not int(side[f"{name}_n"]):
                continue
            rows.append({"category": row["category_id"], "series": series, "rate": side[f"{name}_rate"],
                         "low": side[f"{name}_low"], "high": side[f"{name}_high"], "label": rate_text(side, name)})
    frame = pd.DataFrame(rows, columns=["category", "series", "rate", "low", "high", "label"])
    return charts.rate_chart(frame, title=f"{label} per category, old vs new version (95% Wilson)",
                             series_order=[old_label, new_label])


def policy_diff_document(
    diff: PolicyDiff,
    *,
    old_grades: pd.DataFrame | None = None,
    new_grades: pd.DataFrame | None = None,
    old_items: pd.DataFrame | None = None,
    new_items: pd.DataFrame | None = None,
    lineage: Mapping[str, Any] | None = None,
    limit: int = 200,
    measured: Mapping[str, tuple[pd.DataFrame, pd.DataFrame]] | None = None,
) -> Document:
    """The diff, item changes (from the grades tables, else the given item tables) and metric
    deltas; with `measured` (checkpoint -> old and new grades), each changed item before and
    after on every checkpoint measured under both versions."""
    old_label, new_label = f"old {diff.old_version}", f"new {diff.new_version}"
    if old_label == new_label:
        old_label, new_label = f"old {diff.old_hash[:8]}", f"new {diff.new_hash[:8]}"
    data = diff.to_dict()["invalidated"]

    changed_rows = [(c.category_id, ", ".join(c.fields) or "domain",
                     f"{c.domain_from} → {c.domain_to}" if c.domain_from != c.domain_to else "",
                     ", ".join(c.effects), "; ".join(c.details[:8]) + (f"; … {len(c.details) - 8} more" if len(c.details) > 8 else ""))
                    for c in diff.changed]
    category_rows = ([(cid, Styled("added", "good")) for cid in diff.added]
                     + [(cid, Styled("removed", "bad")) for cid in diff.removed])
    impact_rows = sorted({*diff.items_added, *diff.items_removed})
    sections = [
        section(
            "Summary",
            Paragraph("The two versions have identical content: nothing to recompute." if diff.identical else
                      f"{len(diff.added)} categories added, {len(diff.removed)} removed, {len(diff.changed)} changed; "
                      f"{len(diff.pack_changes)} changes to pack.yaml. New items need {data['responses_needed']} "
                      f"responses and grades; {data['grades_dropped']} grades are dropped."),
            Stats((
                Stat("Old version", diff.old_version, diff.old_hash[:12]),
                Stat("New version", diff.new_version, diff.new_hash[:12]),
                Stat("Items", f"+{data['responses_needed']} / −{data['grades_dropped']}", "eval-set items added / removed"),
                Stat("Judge re-grading", str(len(diff.judge_regrade)), "categories whose judge grades are stale"),
            )),
        ),
        section(
            "Policy changes",
            table(("category", "change"), category_rows, caption="Categories added or removed") if category_rows else None,
            table(("category", "fields", "moved", "invalidates", "field paths"), changed_rows,
                  caption="Categories changed"),
            table(("pack.yaml field",), [(p,) for p in diff.pack_changes], caption="Pack-level changes")
            if diff.pack_changes else None,
            table(("category", "items added", "items removed", "judge re-grade"),
                  [(cid, len(diff.items_added.get(cid, [])), len(diff.items_removed.get(cid, [])),
                    diff.judge_regrade.get(cid, "")) for cid in sorted(set(impact_rows) | set(diff.judge_regrade))],
                  caption="What the change invalidates, per category", numeric=("items added", "items removed")),
        ),
    ]

    items_old = old_grades if old_grades is not None else old_items
    items_new = new_grades if new_grades is not None else new_items
    if items_old is not None and items_new is not None:
        changes = item_changes(items_old, items_new)
        source = "the two grades tables" if old_grades is not None and new_grades is not None else "the two eval sets"
        sections.append(section(
            "Item changes",
            Paragraph(f"From {source}: {len(changes.added)} added, {len(changes.removed)} removed, "
                      f"{len(changes.relabeled)} relabeled (the same chat with a new expected behavior or category)."),
            table(("old item", "new item", "category", "expected", "prompt"),
                  [(r.old_item_id, r.new_item_id,
                    r.old_category_id if r.old_category_id == r.new_category_id else f"{r.old_category_id} → {r.new_category_id}",
                    f"{r.old_expected} → {r.new_expected}", truncate(str(r.prompt or ""), 160))
                   for r in changes.relabeled.itertuples()], caption="Relabeled", limit=limit),
            table(("item", "category", "expected", "prompt"),
                  [(r.item_id, r.category_id, r.expected_behavior, truncate(str(r.prompt or ""), 160))
                   for r in changes.added.itertuples()], caption="Added", limit=limit),
            table(("item", "category", "expected", "prompt"),
                  [(r.item_id, r.category_id, r.expected_behavior, truncate(str(r.prompt or ""), 160))
                   for r in changes.removed.itertuples()], caption="Removed", limit=limit),
        ))

    parts: dict[str, str] = {"old policy": f"{diff.old_version} ({diff.old_hash})",
                             "new policy": f"{diff.new_version} ({diff.new_hash})"}
    if old_grades is not None and new_grades is not None:
        deltas = metric_deltas(old_grades, new_grades)
        rows = []
        for _, row in deltas.iterrows():
            old, new = _side(row, "_old"), _side(row, "_new")
            rows.append((row["category_id"],
                         int(old["n"]) if old is not None else 0, int(new["n"]) if new is not None else 0,
                         rate_text(old, "under_refusal") if old is not None else "–",
                         rate_text(new, "under_refusal") if new is not None else "–",
                         _delta(old, new, "under_refusal"),
                         rate_text(old, "over_refusal") if old is not None else "–",
                         rate_text(new, "over_refusal") if new is not None else "–",
                         _delta(old, new, "over_refusal")))
        checkpoints_old = sorted({str(v) for v in old_grades.get("checkpoint_id", pd.Series(dtype=object)).dropna()})
        checkpoints_new = sorted({str(v) for v in new_grades.get("checkpoint_id", pd.Series(dtype=object)).dropna()})
        warning = None
        if checkpoints_old != checkpoints_new:
            warning = Paragraph(f"The grades tables come from different checkpoints ({', '.join(checkpoints_old) or '?'} vs "
                                f"{', '.join(checkpoints_new) or '?'}): differences mix the policy change with the "
                                "model change.", "warn")
        sections.append(section(
            "Measurement changes",
            warning,
            Paragraph("Under- and over-refusal per category under each version's eval set and grades, on the same "
                      "checkpoint. A change is coloured when the two 95% Wilson intervals do not overlap."),
            _rate_chart(deltas, "under_refusal", "Under-refusal", old_label, new_label),
            _rate_chart(deltas, "over_refusal", "Over-refusal", old_label, new_label),
            table(("category", "items (old)", "items (new)", f"under-refusal ({old_label})",
                   f"under-refusal ({new_label})", "Δ under-refusal", f"over-refusal ({old_label})",
                   f"over-refusal ({new_label})", "Δ over-refusal"), rows,
                  numeric=("items (old)", "items (new)", "Δ under-refusal", "Δ over-refusal")),
        ))
        parts.update(grades_lineage(old_grades, "old"))
        parts.update(grades_lineage(new_grades, "new"))
    for checkpoint, (old, new) in sorted((measured or {}).items()):
        pairs = before_after(old, new)
        tests = paired_tests(pairs)
        sections.append(section(
            f"Changed items on {checkpoint}",
            Paragraph(f"{int(pairs['new_item_id'].notna().sum())} items the new version added or changed, measured on "
                      f"{checkpoint}, each beside the item it replaced (same category, expected behavior, source and "
                      "mutation) where there is one, with what the model did on each."),
            table(("category", "expected", "before", "model before", "after", "model after"),
                  [(r.category_id, r.expected_behavior,
                    truncate(str(r.old_prompt), 140) if isinstance(r.old_prompt, str) else "–",
                    f"{r.old_behavior} ({r.old_outcome})" if isinstance(r.old_behavior, str) else "–",
                    truncate(str(r.new_prompt), 140) if isinstance(r.new_prompt, str) else "–",
                    f"{r.new_behavior} ({r.new_outcome})" if isinstance(r.new_behavior, str) else "–")
                   for r in pairs.itertuples()], caption="Before and after", limit=limit),
            table(("category", "pairs", "correct before", "correct after", "worse", "better", "McNemar p"),
                  [(r.category_id, r.pairs, r.correct_before, r.correct_after, r.worse, r.better, f"{r.p_value:.3f}")
                   for r in tests.itertuples()],
                  caption="Paired test per touched category (exact McNemar on items that pair up)",
                  numeric=("pairs", "correct before", "correct after", "worse", "better"))
            if len(tests) else Paragraph("No changed item pairs up with one it replaced: no paired test."),
        ))
    return Document(
        title=f"Policy diff: {diff.old_version} → {diff.new_version}",
        subtitle="identical content" if diff.identical else
        f"{len(diff.added) + len(diff.removed) + len(diff.changed)} categories changed",
        sections=tuple(sections),
        footer=footer(parts, lineage),
        kind="policy-diff",
    )


def first_version_document(pack: PolicyPack, items: pd.DataFrame, lineage: Mapping[str, Any]) -> Document:
    """The policy-diff report of a pack's first registered version: nothing to compare, said plainly."""
    categories = [c.id for _, c in pack.categories()]
    summary = section(
        "Summary",
        Paragraph(f"No earlier version of pack {pack.id} is registered: this is the first, so there is nothing to compare with."),
        Stats((Stat("Version", pack.version, pack.content_hash[:12]), Stat("Categories", str(len(categories)), ", ".join(categories[:6])),
               Stat("Eval items", str(len(items))))),
    )
    return Document(
        title=f"Policy diff: {pack.id} {pack.version}",
        subtitle="first registered version",
        sections=(summary,),
        footer=footer({"policy": f"{pack.id} {pack.version}", "policy hash": pack.content_hash}, lineage),
        kind="policy-diff",
    )
