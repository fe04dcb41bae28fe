"""What changed between two policy versions, and which downstream work that invalidates.

Fields of a category feed different stages, so a change costs only what reads it:

- examples, templates, mutations, expected  -> eval items (new items need responses and grades)
- title, description, boundary              -> LLM-synthesized items and judge grades
- grading (rubric, propositions)            -> judge grades (the refusal classifier reads no rubric)
- severity                                  -> metrics and launch gates only (no model calls)
- min_items                                 -> coverage report only
- labeling_guidance                         -> labeling guidance of human data campaigns

Item-level impact is exact: both versions' deterministic eval sets are generated and
compared by content-addressed item id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .model import Category, PolicyPack

FIELD_EFFECTS: dict[str, tuple[str, ...]] = {
    "examples": ("items",),
    "templates": ("items",),
    "mutations": ("items",),
    "expected": ("items", "judge_grades"),
    "title": ("synthesized_items", "judge_grades"),
    "description": ("synthesized_items", "judge_grades"),
    "boundary": ("synthesized_items", "judge_grades"),
    "grading": ("judge_grades",),
    "severity": ("metrics",),
    "min_items": ("coverage",),
    "labeling_guidance": ("labeling_guidance",),
    "no_refuse_material_reason": ("coverage",),
    "no_comply_material_reason": ("coverage",),
}


@dataclass(frozen=True)
class CategoryChange:
    category_id: str
    fields: list[str]  # top-level fields that changed
    details: list[str]  # field paths that changed, e.g. "boundary.allowed[1]"
    effects: list[str]  # what downstream work it invalidates
    domain_from: str | None = None
    domain_to: str | None = None


@dataclass
class PolicyDiff:
    old_version: str
    new_version: str
    old_hash: str
    new_hash: str
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[CategoryChange] = field(default_factory=list)
    pack_changes: list[str] = field(default_factory=list)  # field paths of pack.yaml that changed
    items_added: dict[str, list[str]] = field(default_factory=dict)  # category -> item ids
    items_removed: dict[str, list[str]] = field(default_factory=dict)
    judge_regrade: dict[str, str] = field(default_factory=dict)  # category -> why every judge grade is stale

    @property
    def identical(self) -> bool:
        return self.old_hash == self.new_hash

    def to_dict(self) -> dict[str, Any]:
        return {
            "old": {"version": self.old_version, "content_hash": self.old_hash},
            "new": {"version": self.new_version, "content_hash": self.new_hash},
            "identical": self.identical,
            "categories_added": self.added,
            "categories_removed": self.removed,
            "categories_changed": [c.__dict__ for c in self.changed],
            "pack_changes": self.pack_changes,
            "invalidated": {
                "items_added": self.items_added,
                "items_removed": self.items_removed,
                "responses_needed": sum(len(v) for v in self.items_added.values()),
                "grades_needed": sum(len(v) for v in self.items_added.values()),
                "grades_dropped": sum(len(v) for v in self.items_removed.values()),
                "judge_regrade_categories": self.judge_regrade,
            },
        }


def diff_values(old: Any, new: Any, at: str = "") -> list[str]:
    """Field paths whose values differ between two JSON-like values."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new)):
            sub = f"{at}.{key}" if at else str(key)
            if key not in old or key not in new:
                out.append(sub)
            else:
                out.extend(diff_values(old[key], new[key], sub))
        return out
    if isinstance(old, list) and isinstance(new, list):
        out = []
        for index in range(max(len(old), len(new))):
            sub = f"{at}[{index}]"
            if index >= len(old) or index >= len(new):
                out.append(sub)
            else:
                out.extend(diff_values(old[index], new[index], sub))
        return out
    return [] if old == new else [at]


def _category_change(old: Category, new: Category, domain_from: str, domain_to: str) -> CategoryChange | None:
    a, b = old.model_dump(mode="json"), new.model_dump(mode="json")
    details = diff_values(a, b)
    if not details and domain_from == domain_to:
        return None
    fields = sorted({d.split(".")[0].split("[")[0] for d in details})
    effects = sorted({e for f in fields for e in FIELD_EFFECTS.get(f, ())})
    if domain_from != domain_to:
        effects = sorted(set(effects) | {"metrics"})
    return CategoryChange(new.id, fields, details, effects, domain_from, domain_to)


def diff_packs(old: PolicyPack, new: PolicyPack, with_items: bool = True) -> PolicyDiff:
    old_cats = {c.id: (d.id, c) for d, c in old.categories()}
    new_cats = {c.id: (d.id, c) for d, c in new.categories()}
    result = PolicyDiff(old.version, new.version, old.content_hash, new.content_hash)
    result.added = sorted(set(new_cats) - set(old_cats))
    result.removed = sorted(set(old_cats) - set(new_cats))
    for cid in sorted(set(old_cats) & set(new_cats)):
        change = _category_change(old_cats[cid][1], new_cats[cid][1], old_cats[cid][0], new_cats[cid][0])
        if change:
            result.changed.append(change)
    result.pack_changes = diff_values(
        old.header.model_dump(mode="json", exclude={"version"}), new.header.model_dump(mode="json", exclude={"version"})
    )

    # Judge prompts carry the behavior definitions and the category's rubric and boundary.
    behaviors_changed = any(p.startswith("behaviors") for p in result.pack_changes)
    for cid in sorted(new_cats):
        if cid in result.added:
            continue
        change = next((c for c in result.changed if c.category_id == cid), None)
        if behaviors_changed:
            result.judge_regrade[cid] = "behavior definitions changed"
        elif change and "judge_grades" in change.effects:
            result.judge_regrade[cid] = ", ".join(f for f in change.fields if "judge_grades" in FIELD_EFFECTS.get(f, ()))

    if with_items:
        from ..generate import generate_eval_set  # generation depends on policy, not the reverse

        old_ids = _ids_by_category(generate_eval_set(old).items)
        new_ids = _ids_by_category(generate_eval_set(new).items)
        for cid in sorted(set(old_ids) | set(new_ids)):
            added = sorted(new_ids.get(cid, set()) - old_ids.get(cid, set()))
            removed = sorted(old_ids.get(cid, set()) - new_ids.get(cid, set()))
            if added:
                result.items_added[cid] = added
            if removed:
                result.items_removed[cid] = removed
    return result


def _ids_by_category(items: list) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for item in items:
        out.setdefault(item.category_id, set()).add(item.item_id)
    return out
