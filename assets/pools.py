"""Pool limits created before concurrent first claims.

Dagster 1.13 creates a pool's limit row (from `pools.default_limit`) at the pool's first
claim. On PostgreSQL two first claims at once (two runs started together, two Celery workers
starting `responses` steps) make one of them fail: the INSERT that lost the race aborts its
transaction, and the UPDATE it then falls back to fails with `InFailedSqlTransaction`, which
fails the run. `ensure_pool` creates the row first and tolerates a concurrent creator. The
daemon's run queue already does this for the pools of the runs it launches; `policyeval run`
and the endpoint pools (claimed inside a step) need it here.
"""

from __future__ import annotations

import time

import dagster as dg
from sqlalchemy.exc import DBAPIError

ATTEMPTS = 5


def ensure_pool(instance: dg.DagsterInstance, pool: str) -> None:
    """Give `pool` its default limit now, if it has no limit yet and the instance sets a default."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits or instance.get_concurrency_config().pool_config.default_pool_limit is None:
        return
    for attempt in range(ATTEMPTS):
        if pool in storage.get_concurrency_keys():
            return
        try:
            storage.initialize_concurrency_limit_to_default(pool)
            return
        except DBAPIError:  # another process created it at the same moment: look again
            time.sleep(0.1 * (attempt + 1))


def job_pools(job: dg.JobDefinition) -> set[str]:
    """The pools the job's steps claim (an asset's `pool=`)."""
    return {node.definition.pool for node in job.nodes_in_topological_order if getattr(node.definition, "pool", None)}
