"""The per-endpoint limit holds for a run launched without any tag (as from the Launchpad):
`responses` waits for a slot of its endpoint's pool before it sends anything."""

from __future__ import annotations

import threading
import time

import dagster as dg

from assets.evaluation.endpoint_slots import endpoint_pool
from assets.partitions import CHECKPOINT_DIM, POLICY_DIM, multi_key
from pipelines.definitions import ALL_ASSETS
from policyeval.runs.manifest import load_manifest


def test_responses_waits_for_a_slot_of_its_endpoint(workspace, resources) -> None:
    server = workspace["server"]
    pool = endpoint_pool(load_manifest(workspace["checkpoints"] / "fake-a.yaml").endpoint)
    (key,) = resources["policy_repository"].scan()[0]
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(POLICY_DIM, [key])
        instance.add_dynamic_partitions(CHECKPOINT_DIM, ["fake-a"])
        assert dg.materialize(ALL_ASSETS, selection=["policy", "eval_set"], partition_key=key, instance=instance, resources=resources).success

        storage = instance.event_log_storage
        storage.set_concurrency_slots(pool, 1)
        storage.claim_concurrency_slot(pool, "another-run", "responses")  # another run holds the only slot

        results: list[dg.ExecuteInProcessResult] = []
        worker = threading.Thread(target=lambda: results.append(dg.materialize(
            ALL_ASSETS, selection=["responses"], partition_key=multi_key(key, "fake-a"), instance=instance, resources=resources)))
        worker.start()
        time.sleep(4)
        assert worker.is_alive() and server.request_count == 0  # waiting, nothing sent

        storage.free_concurrency_slot_for_step("another-run", "responses")
        worker.join(timeout=60)
        assert not worker.is_alive() and results[0].success
        assert server.request_count > 0
        logs = [entry.user_message for entry in instance.all_logs(results[0].run_id)]
        assert any(f"waiting for a slot of pool {pool}" in message for message in logs)
        assert any("fake-a responses:" in message and "done (100%)" in message for message in logs)  # progress lines
        assert storage.get_concurrency_info(pool).active_slot_count == 0  # released when the step ended
