"""Materializing and reading back asset partitions in tests, with failures that say why."""

from __future__ import annotations

import dagster as dg

from assets.materializations import latest_record


def materialize_checked(assets: list, instance: dg.DagsterInstance, resources: dict, selection: list[str], partition, ok: bool = True) -> dg.ExecuteInProcessResult:
    """Materialize `selection` for one partition; with `ok`, fail the test with the step errors."""
    result = dg.materialize(assets, selection=selection, partition_key=partition, instance=instance, resources=resources, raise_on_error=False)
    if ok:
        assert result.success, [e.step_failure_data.error for e in result.get_step_failure_events()]
    return result


def latest_materialized(instance: dg.DagsterInstance, asset: str, partition) -> dg.EventLogRecord:
    """The latest materialization record of an asset partition, which must exist."""
    record = latest_record(instance, asset, partition)
    assert record, f"{asset} [{partition}] was never materialized"
    return record
