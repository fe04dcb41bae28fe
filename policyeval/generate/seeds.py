"""Seed items: a category's hand-written examples, and the item factory every source shares.

Every item, whatever made it, is stamped the same way (policy identity, domain,
severity, a content-derived id), so the factory lives beside the simplest source.
`GENERATOR_VERSION` names the deterministic generator (seeds, templates, mutations):
bump it whenever a change would make the same pack yield different items.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..records import EvalItem, item_id_for
from ..policy.model import Category, PolicyPack

GENERATOR = "policyeval.generate"
GENERATOR_VERSION = "1"


@dataclass(frozen=True)
class PackStamp:
    """The pack identity every item carries, so an items file alone names its policy."""

    policy_id: str
    policy_version: str
    policy_hash: str

    @classmethod
    def of(cls, pack: PolicyPack) -> "PackStamp":
        return cls(pack.id, pack.version, pack.content_hash)


def make_item(
    pack: PolicyPack,
    category: Category,
    messages: list[dict[str, Any]],
    expected: str,
    *,
    source: str,
    parent_id: str | None = None,
    generator: str = GENERATOR,
    generator_version: str = GENERATOR_VERSION,
    mutation: str | None = None,
    note: str | None = None,
    severity: str | None = None,
) -> EvalItem:
    """An item of `category`, its id derived from content, category and expected behavior."""
    stamp = PackStamp.of(pack)
    return EvalItem(
        item_id=item_id_for(messages, category.id, expected),
        messages=messages,
        category_id=category.id,
        expected_behavior=expected,
        domain_id=pack.domain_of(category.id).id,
        severity=severity or category.severity,
        source=source,
        parent_id=parent_id,
        generator=generator,
        generator_version=generator_version,
        mutation=mutation,
        note=note,
        policy_id=stamp.policy_id,
        policy_version=stamp.policy_version,
        policy_hash=stamp.policy_hash,
    )


def seed_items(pack: PolicyPack, category: Category) -> list[EvalItem]:
    """One item per example, in the order the policy lists them."""
    return [
        make_item(pack, category, example.chat(), example.expected, source="seed", note=example.note)
        for example in category.examples
    ]
