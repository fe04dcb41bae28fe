"""A human-data campaign: which graded responses people label, and who labels which.

Human labels are expensive, so they go where they teach the most: the pool of graded
responses is stratified by category x outcome (each stratum gets an equal share, so a
rare outcome such as under-refusal in one category is not crowded out by the common
ones), and inside a stratum responses the graders disagree on come first, then the
least confident ones. Each sampled response goes to `overlap_k` annotators, assigned
least-loaded-first in rotation so loads differ by at most one and annotator pairs mix.

Hidden gold items (responses whose label an earlier campaign settled) are mixed into
every annotator's batch for calibration. They look exactly like the others (same
columns, shuffled positions); only the owner's tables flag them. Every annotator gets
every gold item, so each one's accuracy is measured on the same items.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from ..errors import InputError, PolicyevalError
from ..policy.model import PolicyPack
from ..records import content_hash
from ..tables import decode_utf8, read_parquet
from .guidance import Guidance, render_guidance
from .layout import CampaignPaths, is_valid_name

GOLD_STRATUM = "gold"

CAMPAIGN_ITEM_SCHEMA = pa.schema([
    pa.field("item_id", pa.string(), nullable=False),
    pa.field("category_id", pa.string()),
    pa.field("prompt_text", pa.string()),
    pa.field("response_text", pa.string()),
    pa.field("expected_behavior", pa.string()),
    pa.field("checkpoint_id", pa.string()),
    pa.field("grader_behavior", pa.string()),  # the most common grader verdict
    pa.field("outcome", pa.string()),
    pa.field("confidence", pa.float64()),  # the lowest grader confidence
    pa.field("grader_disagreement", pa.bool_()),
    pa.field("stratum", pa.string()),  # category_id/outcome, or "gold"
    pa.field("stratum_size", pa.int64()),  # pool size of the stratum: size/sampled reweights a stratum
    pa.field("stratum_sampled", pa.int64()),
    pa.field("is_gold", pa.bool_(), nullable=False),
    pa.field("gold_label", pa.string()),
])

ASSIGNMENT_SCHEMA = pa.schema([
    pa.field("campaign_id", pa.string(), nullable=False),
    pa.field("batch_id", pa.string(), nullable=False),
    pa.field("annotator", pa.string(), nullable=False),
    pa.field("task_id", pa.string(), nullable=False),
    pa.field("item_id", pa.string(), nullable=False),
    pa.field("position", pa.int64(), nullable=False),  # 1-based order within the batch
    pa.field("is_gold", pa.bool_(), nullable=False),
])

GRADE_COLUMNS_NEEDED = ("item_id", "category_id", "behavior", "outcome", "prompt_text", "response_text")


@dataclass(frozen=True, eq=False)
class Campaign:
    """A campaign: its policy version, sampled items and assignments."""

    campaign_id: str
    policy_id: str
    policy_version: str
    policy_hash: str
    behaviors: tuple[str, ...]  # the label vocabulary
    annotators: tuple[str, ...]
    overlap_k: int
    seed: int
    requested_size: int
    guidance: Guidance
    items: pd.DataFrame  # CAMPAIGN_ITEM_SCHEMA, one row per item (gold included)
    assignments: pd.DataFrame  # ASSIGNMENT_SCHEMA, one row per (annotator, item)
    checkpoint_id: str | None = None
    strata: dict[str, dict[str, int]] = field(default_factory=dict)  # stratum -> {size, sampled}

    @property
    def item_ids(self) -> set[str]:
        return set(self.items["item_id"])

    @property
    def gold_labels(self) -> dict[str, str]:
        gold = self.items[self.items["is_gold"]]
        return dict(zip(gold["item_id"], gold["gold_label"]))

    @property
    def n_gold(self) -> int:
        return int(self.items["is_gold"].sum())

    def batch_id(self, annotator: str) -> str:
        return f"{self.campaign_id}-{annotator}"

    def manifest(self) -> dict[str, Any]:
        """The owner's summary of the campaign (JSON-able)."""
        loads = self.assignments.groupby("annotator").size().to_dict()
        return {
            "campaign_id": self.campaign_id,
            "policy_id": self.policy_id,
            "policy_version": self.policy_version,
            "policy_hash": self.policy_hash,
            "guidance_hash": self.guidance.guidance_hash,
            "behaviors": list(self.behaviors),
            "annotators": list(self.annotators),
            "overlap_k": self.overlap_k,
            "seed": self.seed,
            "requested_size": self.requested_size,
            "checkpoint_id": self.checkpoint_id,
            "n_items": int(len(self.items) - self.n_gold),
            "n_gold": self.n_gold,
            "load": {a: int(loads.get(a, 0)) for a in self.annotators},
            "strata": self.strata,
        }


def create_campaign(
    grades: pd.DataFrame,
    pack: PolicyPack,
    *,
    campaign_id: str,
    size: int,
    overlap_k: int = 2,
    annotators: list[str],
    gold: pd.DataFrame | None = None,
    n_gold: int | None = None,
    seed: int = 0,
    checkpoint_id: str | None = None,
) -> Campaign:
    """Sample `size` graded responses and assign each to `overlap_k` annotators.

    `grades` is a grades table (one row per item and grader). `gold` holds earlier gold
    labels (item_id, label; prompt_text, response_text and category_id are taken from it
    or, failing that, from `grades`); `n_gold` of them (default: a tenth of `size`, at
    least one) are mixed in. A grades table with several checkpoints needs
    `checkpoint_id`, since a label belongs to one response.
    """
    _check_arguments(campaign_id, size, overlap_k, annotators)
    behaviors = tuple(pack.behaviors)
    pool = _pool(grades, pack, checkpoint_id)
    checkpoints = {r["checkpoint_id"] for r in pool if r["checkpoint_id"]}
    if checkpoint_id is None and len(checkpoints) == 1:
        checkpoint_id = checkpoints.pop()

    gold_rows: list[dict[str, Any]] = []
    if gold is not None and len(gold):
        gold_rows = _gold_rows(gold, pool, pack, behaviors, n_gold, size, seed)
        gold_ids = {r["item_id"] for r in gold_rows}
        pool = [r for r in pool if r["item_id"] not in gold_ids]

    sampled, strata = _stratified_sample(pool, size, seed)
    rows = sampled + gold_rows
    items = pd.DataFrame(rows, columns=CAMPAIGN_ITEM_SCHEMA.names)
    items = items.assign(_key=[content_hash([seed, campaign_id, i]) for i in items["item_id"]])
    items = items.sort_values("_key", kind="stable").drop(columns="_key").reset_index(drop=True)

    assignments = _assign(items, campaign_id, list(annotators), overlap_k, seed)
    return Campaign(
        campaign_id=campaign_id,
        policy_id=pack.id,
        policy_version=pack.version,
        policy_hash=pack.content_hash,
        behaviors=behaviors,
        annotators=tuple(annotators),
        overlap_k=overlap_k,
        seed=seed,
        requested_size=size,
        guidance=render_guidance(pack),
        items=items,
        assignments=assignments,
        checkpoint_id=checkpoint_id,
        strata=strata,
    )


def load_campaign(root: str | Path) -> Campaign:
    """Read a campaign folder written by `export_campaign`."""
    paths = CampaignPaths(Path(root))
    if not paths.manifest.is_file():
        raise InputError(paths.root, "not a campaign folder (no campaign.json)")
    try:
        meta = json.loads(decode_utf8(paths.manifest, paths.manifest.read_bytes()))
    except json.JSONDecodeError as exc:
        raise InputError(paths.manifest, f"unreadable campaign manifest (invalid JSON: {exc.msg})", line=exc.lineno) from None
    required = ("campaign_id", "policy_id", "policy_version", "policy_hash", "guidance_hash", "behaviors",
                "annotators", "overlap_k", "seed", "requested_size")
    if not isinstance(meta, dict):
        raise InputError(paths.manifest, "a campaign manifest is a JSON object", line=1)
    missing = [key for key in required if key not in meta]
    if missing:
        raise InputError(paths.manifest, f"campaign manifest lacks {', '.join(missing)}")
    items = read_parquet(paths.items, CAMPAIGN_ITEM_SCHEMA)
    assignments = read_parquet(paths.assignments, ASSIGNMENT_SCHEMA)
    guidance = Guidance(
        policy_id=meta["policy_id"], policy_version=meta["policy_version"], policy_hash=meta["policy_hash"],
        guidance_hash=meta["guidance_hash"],
        markdown=_read_text(paths.guidance_md), html=_read_text(paths.guidance_html),
    )
    return Campaign(
        campaign_id=meta["campaign_id"], policy_id=meta["policy_id"], policy_version=meta["policy_version"],
        policy_hash=meta["policy_hash"], behaviors=tuple(meta["behaviors"]), annotators=tuple(meta["annotators"]),
        overlap_k=int(meta["overlap_k"]), seed=int(meta["seed"]), requested_size=int(meta["requested_size"]),
        guidance=guidance, items=items, assignments=assignments, checkpoint_id=meta.get("checkpoint_id"),
        strata=meta.get("strata", {}),
    )


def _read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8") if path.is_file() else ""


# ---------------------------------------------------------------------------
# Pool and sampling


def _check_arguments(campaign_id: str, size: int, overlap_k: int, annotators: list[str]) -> None:
    if not is_valid_name(campaign_id):
        raise PolicyevalError(f"campaign id {campaign_id!r}: use letters, digits and _ . @ + - only")
    bad = [a for a in annotators if not is_valid_name(a)]
    if bad:
        raise PolicyevalError(f"annotator name {bad[0]!r}: use letters, digits and _ . @ + - only")
    if len(set(annotators)) != len(annotators):
        raise PolicyevalError("annotator names must be distinct")
    if size < 1:
        raise PolicyevalError(f"campaign size must be at least 1, got {size}")
    if overlap_k < 1 or overlap_k > len(annotators):
        raise PolicyevalError(f"overlap {overlap_k} needs between 1 and {len(annotators)} (the number of annotators)")


def _text(value: Any) -> str | None:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)


def _pool(grades: pd.DataFrame, pack: PolicyPack, checkpoint_id: str | None) -> list[dict[str, Any]]:
    """One candidate row per graded response, with the graders' verdicts pooled."""
    missing = [c for c in GRADE_COLUMNS_NEEDED if c not in grades.columns]
    if missing:
        raise PolicyevalError(f"grades table lacks column(s) {', '.join(missing)}")
    frame = grades
    if "checkpoint_id" in frame.columns:
        checkpoints = sorted({c for c in frame["checkpoint_id"].map(_text) if c})
        if checkpoint_id is not None:
            frame = frame[frame["checkpoint_id"] == checkpoint_id]
            if frame.empty:
                raise PolicyevalError(f"no grades of checkpoint {checkpoint_id!r} (have: {', '.join(checkpoints)})")
        elif len(checkpoints) > 1:
            raise PolicyevalError(f"grades hold {len(checkpoints)} checkpoints ({', '.join(checkpoints)}); "
                                  "a label belongs to one response: choose one checkpoint")
    if "policy_hash" in frame.columns:
        hashes = {h for h in frame["policy_hash"].map(_text) if h}
        if hashes - {pack.content_hash}:
            raise PolicyevalError(f"grades were made under policy hash {sorted(hashes)[0][:12]}, the pack is "
                                  f"{pack.content_hash[:12]}: label responses under the policy they were graded by")
    categories = {c.id for _, c in pack.categories()}
    unknown = sorted({str(c) for c in frame["category_id"]} - categories)
    if unknown:
        raise PolicyevalError(f"grades name categories the pack {pack.id!r} lacks: {', '.join(unknown[:5])}")

    by_item: dict[str, list[dict[str, Any]]] = {}
    for row in frame.to_dict("records"):
        if not _text(row.get("response_text")):
            continue  # no response (a failed request): nothing to label
        by_item.setdefault(str(row["item_id"]), []).append(row)

    pool = []
    for item_id, rows in by_item.items():
        responses = {_text(r["response_text"]) for r in rows}
        if len(responses) > 1:
            raise PolicyevalError(f"item {item_id} has {len(responses)} different responses; choose one checkpoint")
        verdicts = [_text(r["behavior"]) or "" for r in rows]
        outcomes = Counter(_text(r["outcome"]) or "" for r in rows)
        confidences = [float(r["confidence"]) for r in rows
                       if _text(r.get("confidence")) is not None and not math.isnan(float(r["confidence"]))]
        first = rows[0]
        pool.append({
            "item_id": item_id,
            "category_id": str(first["category_id"]),
            "prompt_text": _text(first["prompt_text"]) or "",
            "response_text": _text(first["response_text"]) or "",
            "expected_behavior": _text(first.get("expected_behavior")),
            "checkpoint_id": _text(first.get("checkpoint_id")),
            "grader_behavior": _mode(Counter(verdicts)),
            "outcome": _mode(outcomes),
            "confidence": min(confidences) if confidences else None,
            "grader_disagreement": len(set(verdicts)) > 1,
            "is_gold": False,
            "gold_label": None,
        })
    if not pool:
        raise PolicyevalError("grades table has no responses to label")
    return pool


def _mode(counts: Counter) -> str:
    """The most common value; ties go to the first in sorted order, so reruns agree."""
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]


def _priority(row: dict[str, Any], seed: int) -> tuple:
    """Grader disagreement first, then the lowest confidence; ties broken by a seeded hash."""
    confidence = row["confidence"]
    return (not row["grader_disagreement"], math.inf if confidence is None else confidence,
            content_hash([seed, row["item_id"]]))


def _stratified_sample(pool: list[dict[str, Any]], size: int, seed: int) -> tuple[list[dict[str, Any]], dict]:
    strata: dict[str, list[dict[str, Any]]] = {}
    for row in pool:
        strata.setdefault(f"{row['category_id']}/{row['outcome']}", []).append(row)
    for rows in strata.values():
        rows.sort(key=lambda r: _priority(r, seed))

    allocation = _equal_allocation({k: len(v) for k, v in strata.items()}, size)
    sampled = []
    summary = {}
    for key in sorted(strata):
        take = strata[key][: allocation[key]]
        for row in take:
            sampled.append({**row, "stratum": key, "stratum_size": len(strata[key]), "stratum_sampled": len(take)})
        summary[key] = {"size": len(strata[key]), "sampled": len(take)}
    return sampled, summary


def _equal_allocation(capacity: dict[str, int], size: int) -> dict[str, int]:
    """Split `size` equally over strata, passing what a small stratum cannot use to the others."""
    alloc = {k: 0 for k in capacity}
    remaining = min(size, sum(capacity.values()))
    active = [k for k in capacity if capacity[k] > 0]
    while remaining > 0 and active:
        share, extra = divmod(remaining, len(active))
        order = sorted(active, key=lambda k: (-(capacity[k] - alloc[k]), k))
        for i, key in enumerate(order):
            give = min(share + (1 if i < extra else 0), capacity[key] - alloc[key])
            alloc[key] += give
            remaining -= give
        active = [k for k in active if alloc[k] < capacity[k]]
    return alloc


def _gold_rows(gold: pd.DataFrame, pool: list[dict[str, Any]], pack: PolicyPack, behaviors: tuple[str, ...],
               n_gold: int | None, size: int, seed: int) -> list[dict[str, Any]]:
    missing = [c for c in ("item_id", "label") if c not in gold.columns]
    if missing:
        raise PolicyevalError(f"gold set lacks column(s) {', '.join(missing)}")
    if "policy_hash" in gold.columns:
        hashes = {h for h in gold["policy_hash"].map(_text) if h}
        if hashes - {pack.content_hash}:
            raise PolicyevalError(f"gold set was made under policy hash {sorted(hashes)[0][:12]}, the pack is "
                                  f"{pack.content_hash[:12]}: gold labels hold for one policy version")
    if gold["item_id"].duplicated().any():
        raise PolicyevalError(f"gold set lists item {gold['item_id'][gold['item_id'].duplicated()].iloc[0]} twice")
    bad = sorted({str(v) for v in gold["label"]} - set(behaviors))
    if bad:
        raise PolicyevalError(f"gold label(s) {', '.join(bad)} outside the pack's behaviors ({', '.join(behaviors)})")

    known = {r["item_id"]: r for r in pool}
    wanted = max(1, round(size / 10)) if n_gold is None else n_gold
    candidates = sorted(gold.to_dict("records"), key=lambda r: content_hash([seed, "gold", str(r["item_id"])]))
    rows = []
    for record in candidates[: max(0, wanted)]:
        item_id = str(record["item_id"])
        base = known.get(item_id, {})
        row = {
            "item_id": item_id,
            "category_id": _text(record.get("category_id")) or base.get("category_id"),
            "prompt_text": _text(record.get("prompt_text")) or base.get("prompt_text"),
            "response_text": _text(record.get("response_text")) or base.get("response_text"),
            "expected_behavior": base.get("expected_behavior"),
            "checkpoint_id": base.get("checkpoint_id"),
            "grader_behavior": base.get("grader_behavior"),
            "outcome": base.get("outcome"),
            "confidence": base.get("confidence"),
            "grader_disagreement": base.get("grader_disagreement"),
            "stratum": GOLD_STRATUM,
            "stratum_size": len(gold),
            "stratum_sampled": min(len(gold), wanted),
            "is_gold": True,
            "gold_label": str(record["label"]),
        }
        if not row["prompt_text"] or not row["response_text"]:
            raise PolicyevalError(f"gold item {item_id} has no prompt_text/response_text, and the grades do not hold it")
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------
# Assignment


def _assign(items: pd.DataFrame, campaign_id: str, annotators: list[str], k: int, seed: int) -> pd.DataFrame:
    """k annotators per sampled item (least loaded, then least paired, in rotation); gold to everyone."""
    n = len(annotators)
    load = {a: 0 for a in annotators}
    paired: Counter = Counter()
    chosen_by_item: dict[str, list[str]] = {}
    sampled = items[~items["is_gold"]]["item_id"].tolist()
    for i, item_id in enumerate(sampled):
        chosen: list[str] = []
        for _ in range(k):
            rest = [a for a in annotators if a not in chosen]
            best = min(rest, key=lambda a: (load[a], sum(paired[frozenset((a, c))] for c in chosen),
                                            (annotators.index(a) - i) % n))
            chosen.append(best)
        for a in chosen:
            load[a] += 1
        for x in range(len(chosen)):
            for y in range(x + 1, len(chosen)):
                paired[frozenset((chosen[x], chosen[y]))] += 1
        chosen_by_item[item_id] = chosen
    gold_ids = set(items[items["is_gold"]]["item_id"])
    for item_id in gold_ids:
        chosen_by_item[item_id] = list(annotators)

    rows = []
    for annotator in annotators:
        mine = [i for i, who in chosen_by_item.items() if annotator in who]
        mine.sort(key=lambda i: content_hash([seed, campaign_id, annotator, i]))
        for position, item_id in enumerate(mine, start=1):
            rows.append({
                "campaign_id": campaign_id,
                "batch_id": f"{campaign_id}-{annotator}",
                "annotator": annotator,
                "task_id": f"{annotator}-{position:04d}",
                "item_id": item_id,
                "position": position,
                "is_gold": item_id in gold_ids,
            })
    return pd.DataFrame(rows, columns=ASSIGNMENT_SCHEMA.names)
