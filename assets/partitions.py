"""Partitions: one per immutable policy version, one per model checkpoint.

Policy-version keys carry the content hash (`demo-2026.11-6bae92ae7510`), so a key names
exactly one policy forever: an edit is a new key, and every number stays tied to the
policy that defined it. Checkpoint keys are manifest ids.
"""

from __future__ import annotations

import re

import dagster as dg

POLICY_DIM = "policy_version"
CHECKPOINT_DIM = "checkpoint"

policy_versions = dg.DynamicPartitionsDefinition(name=POLICY_DIM)
checkpoints = dg.DynamicPartitionsDefinition(name=CHECKPOINT_DIM)
policy_x_checkpoint = dg.MultiPartitionsDefinition({POLICY_DIM: policy_versions, CHECKPOINT_DIM: checkpoints})

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_key(text: str) -> str:
    """A partition-key fragment safe for Dagster (no | [ ] ,) and for file paths."""
    return _UNSAFE.sub("-", text).strip("-.") or "x"


def policy_version_key(pack_id: str, label: str, content_hash: str) -> str:
    return f"{safe_key(pack_id)}-{safe_key(label)}-{content_hash[:12]}"


def multi_key(policy_version: str, checkpoint: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({POLICY_DIM: policy_version, CHECKPOINT_DIM: checkpoint})


def split_multi_key(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> tuple[str, str]:
    keys = context.partition_key.keys_by_dimension  # type: ignore[union-attr]
    return keys[POLICY_DIM], keys[CHECKPOINT_DIM]
