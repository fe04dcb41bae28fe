"""A per-endpoint limit that holds however a run was launched.

`responses` sits in the `model-endpoints` pool, one limit for every endpoint together. A
run tag (`policyeval/endpoint`) lets the run queue limit runs per endpoint, but only runs
that carry it: a launch from the Launchpad or the Materialize button does not. So the step
also claims a slot of the pool `model-endpoint/<endpoint>` from the instance itself, with
Dagster's own pool machinery, before it sends anything: `dagster instance concurrency set
model-endpoint/api.example.com/v1 2` limits that endpoint for every run, and a pool with no
limit (and no `pools.default_limit`) lets the step through at once. A run that dies keeps no
slot: Dagster frees a failed run's slots with the rest.

`ensure_pool` creates the pool's limit before the first claim: two workers starting their
`responses` steps at once would otherwise race to create it (`assets/pools.py`).
"""

import time
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext

from assets.pools import ensure_pool

MODEL_ENDPOINTS_POOL = "model-endpoints"  # every endpoint together: the pool of the `responses` step
ENDPOINT_POOL_PREFIX = "model-endpoint/"
WAIT_LOG_EVERY_S = 30.0


def endpoint_pool(endpoint: str) -> str:
    return f"{ENDPOINT_POOL_PREFIX}{endpoint}"


@contextmanager
def endpoint_slot(context: dg.AssetExecutionContext, endpoint: str, poll_s: float = 1.0) -> Iterator[str]:
    """Hold one slot of the endpoint's pool while the body runs; wait (and say so) while none is free."""
    pool = endpoint_pool(endpoint)
    claim_key = f"{context.op_execution_context.node_handle}@{pool}"
    ensure_pool(context.instance, pool)
    with InstanceConcurrencyContext(context.instance, context.run) as slots:
        waiting_since = last_log = None
        while not slots.claim(pool, claim_key):
            now = time.monotonic()
            waiting_since = waiting_since or now
            if last_log is None or now - last_log >= WAIT_LOG_EVERY_S:
                context.log.info(f"waiting for a slot of pool {pool} ({now - waiting_since:.0f}s so far)")
                last_log = now
            time.sleep(poll_s)
        try:
            yield pool
        finally:
            slots.free_step(claim_key)
