"""Parquet IO manager: one file per asset partition, with the table's explicit schema.

Paths: `<base>/<asset>/<dim>=<key>/.../data.parquet`, with partition keys made safe for
paths, so the files can be read without Dagster (pandas, DuckDB, Spark).
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow as pa

from policyeval.records import GRADE_SCHEMA, ITEM_SCHEMA, RESPONSE_SCHEMA, grade_schema_for
from policyeval.tables import read_parquet, write_parquet

from .environment import ASSETS, data_root

SCHEMAS: dict[str, pa.Schema] = {"eval_set": ITEM_SCHEMA, "responses": RESPONSE_SCHEMA, "grades": GRADE_SCHEMA}


def _safe(part: str) -> str:
    return "".join(c if c.isalnum() or c in "._-=" else "_" for c in part).lstrip(".") or "_"


class ParquetIOManager(dg.ConfigurableIOManager):
    """Stores DataFrames as Parquet under `base_dir` (default $POLICYEVAL_DATA_DIR or ./data)."""

    base_dir: str = ""

    def _root(self) -> Path:
        return data_root(self.base_dir) / ASSETS

    def path_for(self, asset_key: dg.AssetKey, partition_key: str | dg.MultiPartitionKey | None) -> Path:
        path = self._root().joinpath(*(_safe(p) for p in asset_key.path))
        if isinstance(partition_key, dg.MultiPartitionKey):
            for dim, key in sorted(partition_key.keys_by_dimension.items()):
                path = path / _safe(f"{dim}={key}")
        elif partition_key:
            path = path / _safe(partition_key)
        return path / "data.parquet"

    def _partition(self, context: dg.OutputContext | dg.InputContext, key: str) -> str | dg.MultiPartitionKey:
        definition = context.asset_partitions_def
        if isinstance(definition, dg.MultiPartitionsDefinition):
            return definition.get_partition_key_from_str(key)
        return key

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        if obj is None:
            return
        key = context.asset_partition_key if context.has_asset_partitions else None
        path = self.path_for(context.asset_key, self._partition(context, key) if key else None)
        name = context.asset_key.path[-1]
        schema = grade_schema_for(obj.columns) if name == "grades" else SCHEMAS.get(name) or pa.Schema.from_pandas(obj, preserve_index=False)
        write_parquet(obj, path, schema)
        context.add_output_metadata({"path": dg.MetadataValue.path(str(path)), "rows": len(obj)})

    def load_input(self, context: dg.InputContext) -> pd.DataFrame | dict[str, pd.DataFrame] | None:
        upstream = context.upstream_output
        asset_key = context.asset_key
        if context.has_asset_partitions:
            keys = context.asset_partition_keys
            if not (context.definition_metadata or {}).get("all_partitions"):
                if len(keys) != 1:
                    raise dg.DagsterInvariantViolationError(f"{asset_key.to_user_string()}: expected one partition, got {len(keys)}")
                path = self.path_for(asset_key, self._partition(upstream, keys[0]))
                if not path.exists() and (context.definition_metadata or {}).get("optional"):
                    return None  # an input marked optional=True is None until its partition is materialized
                return read_parquet(path)
            frames = {}  # an input marked all_partitions=True gets every mapped partition
            for key in keys:
                path = self.path_for(asset_key, self._partition(upstream, key))
                if path.exists():
                    frames[key] = read_parquet(path)
            return frames
        return read_parquet(self.path_for(asset_key, None))

