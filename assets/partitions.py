"""Partitions: one per immutable policy version, one per model checkpoint.

Policy-version keys carry the content hash (`policyeval.keys.policy_version_key`), so a
key names exactly one policy forever. Checkpoint keys are manifest ids.
"""

from __future__ import annotations

import warnings
from typing import Any

import dagster as dg

from policyeval.keys import policy_version_key, safe_key

__all__ = ["BY_POLICY_VERSION", "CHECKPOINT_DIM", "POLICY_DIM", "checkpoints", "key_dimension", "multi_key", "policy_version_key", "policy_versions",
           "policy_x_checkpoint", "safe_key", "split_multi_key"]

POLICY_DIM = "policy_version"
CHECKPOINT_DIM = "checkpoint"

policy_versions = dg.DynamicPartitionsDefinition(name=POLICY_DIM)
checkpoints = dg.DynamicPartitionsDefinition(name=CHECKPOINT_DIM)
policy_x_checkpoint = dg.MultiPartitionsDefinition({POLICY_DIM: policy_versions, CHECKPOINT_DIM: checkpoints})

with warnings.catch_warnings():  # the mapping is marked beta; it is the documented way to fan in
    warnings.simplefilter("ignore", dg.BetaWarning)
    # A policy-version asset reading every checkpoint's partition of that version.
    BY_POLICY_VERSION = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name=POLICY_DIM)


def multi_key(policy_version: str, checkpoint: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({POLICY_DIM: policy_version, CHECKPOINT_DIM: checkpoint})


def split_multi_key(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> tuple[str, str]:
    keys = context.partition_key.keys_by_dimension  # type: ignore[union-attr]
    return keys[POLICY_DIM], keys[CHECKPOINT_DIM]


def key_dimension(key: Any, dimension: str) -> str:
    """One dimension of a policy x checkpoint key, given as a key or as its string (fan-in inputs are keyed by either)."""
    parsed = key if isinstance(key, dg.MultiPartitionKey) else policy_x_checkpoint.get_partition_key_from_str(str(key))
    return parsed.keys_by_dimension[dimension]
