"""Version identity: the content hash of the normalized pack.

The label (`version:`) is for people and is left out of the hash; so are file layout,
key order, comments and the order of domains and categories (but not the order of
behaviors once any has a `when:` rule, since rules are tried in that order). Anything that can change
a generated item, a grade or a gate is in it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..records import canonical_json, sha256_hex

if TYPE_CHECKING:
    from .model import PolicyPack


def normalized_pack(pack: "PolicyPack") -> dict:
    header = pack.header.model_dump(mode="json", exclude={"version"})
    if any(b.when for b in pack.header.behaviors.values()):
        # Rules are tried in the order behaviors are listed, so with rules the order decides grades.
        header["rule_order"] = list(pack.header.behaviors)
    domains = []
    for domain in sorted(pack.domains, key=lambda d: d.id):
        data = domain.model_dump(mode="json", exclude={"categories"})
        data["categories"] = [c.model_dump(mode="json") for c in sorted(domain.categories, key=lambda c: c.id)]
        domains.append(data)
    return {"header": header, "domains": domains}


def pack_content_hash(pack: "PolicyPack") -> str:
    """Full sha256 hex of the normalized pack."""
    return sha256_hex(canonical_json(normalized_pack(pack)))
