"""Names that stand for a policy version or a checkpoint in keys and file paths.

A policy-version key carries the content hash (`demo-2026.11-6bae92ae7510`), so a key
names exactly one policy forever: an edit is a new key, and every number stays tied to
the policy that defined it.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_key(text: str) -> str:
    """A key fragment safe for Dagster partition keys (no | [ ] ,) and for file paths."""
    return _UNSAFE.sub("-", text).strip("-.") or "x"


def policy_version_key(pack_id: str, label: str, content_hash: str) -> str:
    return f"{safe_key(pack_id)}-{safe_key(label)}-{content_hash[:12]}"
