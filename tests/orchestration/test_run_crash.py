"""`kill -9` of `policyeval run` in the middle of `responses`, then `policyeval run` again:
the dead run is failed and its pool slots freed, the second run finishes by itself, and it
re-asks at most the requests that were in flight (answers already received are cached)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
from dagster._core.instance.ref import InstanceRef

from policyeval.testing import FakeOpenAIServer
from policyeval.testing.openai_server import Reply, chat_completion_body

REPO = Path(__file__).resolve().parents[2]
CONCURRENCY = 2


def slow(request: dict, index: int) -> Reply:
    return Reply(body=chat_completion_body("I can't help with that."), delay_s=0.3)


def test_kill_9_mid_run_then_run_again_finishes_and_reasks_only_in_flight(workspace, tmp_path: Path) -> None:
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home"), "POLICYEVAL_DATA_DIR": str(workspace["data"]),
           "POLICYEVAL_CACHE_DIR": str(workspace["cache"]), "GX_ANALYTICS_ENABLED": "false"}
    (tmp_path / "home").mkdir()
    # the instance limits the model-endpoints pool, so a dead run holding its slot would block the next one
    (tmp_path / "home" / "dagster.yaml").write_text("concurrency:\n  pools:\n    default_limit: 1\n")
    with FakeOpenAIServer(slow) as server:
        checkpoints = tmp_path / "slow_checkpoints"
        checkpoints.mkdir()
        (checkpoints / "slow.yaml").write_text(
            f"id: slow\nbase_url: {server.base_url}\nmodel: fake-model\nparams: {{temperature: 0, max_tokens: 16}}\n"
            f"max_concurrency: {CONCURRENCY}\ntimeout_s: 10\n")
        command = [str(Path(sys.executable).parent / "policyeval"), "run", "--policies", str(workspace["policies"]),
                   "--checkpoints", str(checkpoints), "--per-cell", "0"]
        first = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while server.request_count < 6 and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.1)
        assert first.poll() is None, first.stdout.read().decode()
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        asked_before = server.request_count

        second = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert second.returncode == 0, second.stdout + second.stderr
        assert "the process that executed it is gone; marked failed" in second.stdout

    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(tmp_path / "home"))) as instance:
        statuses = [r.status for r in instance.get_runs(dg.RunsFilter(job_name="evaluation_job"))]
        assert dg.DagsterRunStatus.FAILURE in statuses and dg.DagsterRunStatus.SUCCESS in statuses
        assert instance.event_log_storage.get_concurrency_info("model-endpoints").active_slot_count == 0
    distinct = len({json.dumps(r, sort_keys=True) for r in server.requests})
    re_asked = server.request_count - distinct
    assert re_asked <= CONCURRENCY, f"{re_asked} requests asked twice; at most {CONCURRENCY} were in flight"
    assert asked_before < server.request_count  # the second run asked the rest
