"""Reading back what an asset partition last recorded: one place for the instance query."""

from typing import Any

import dagster as dg


def latest_record(instance: dg.DagsterInstance, asset: str, partition: str) -> dg.EventLogRecord | None:
    """The latest materialization record of one asset partition, or None."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[str(partition)]), limit=1
    ).records
    return records[0] if records else None


def latest_metadata(instance: dg.DagsterInstance, asset: str, partition: str) -> dict[str, Any]:
    """Its metadata entries (empty when never materialized)."""
    record = latest_record(instance, asset, partition)
    return dict(record.asset_materialization.metadata) if record and record.asset_materialization else {}


def latest_value(instance: dg.DagsterInstance, asset: str, partition: str, key: str, default: Any = None) -> Any:
    """One metadata value of it, or `default`."""
    entry = latest_metadata(instance, asset, partition).get(key)
    return getattr(entry, "value", default) if entry is not None else default
