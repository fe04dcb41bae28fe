"""Asset checks partitioned like their asset.

A partitioned check's result belongs to one partition, so the UI shows it next to the
materialization it judged and the check can read `context.partition_key`. Dagster marks
`partitions_def` on checks as preview; the warning is silenced here, in one place.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

import dagster as dg


def partitioned_check(*, asset: Any, partitions_def: dg.PartitionsDefinition, **kwargs: Any) -> Callable[[Callable[..., Any]], dg.AssetChecksDefinition]:
    """`@dg.asset_check(asset=..., partitions_def=...)` without the preview warning."""

    def decorate(fn: Callable[..., Any]) -> dg.AssetChecksDefinition:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", dg.PreviewWarning)
            return dg.asset_check(asset=asset, partitions_def=partitions_def, **kwargs)(fn)

    return decorate
