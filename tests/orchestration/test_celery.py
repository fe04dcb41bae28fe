"""Steps on two Celery workers (real processes), a Redis broker and a fresh PostgreSQL instance.

The deployment of deploy/distributed/ as shipped (its dagster.yaml and celery.yaml, the
workers started with the documented `dagster-celery worker start` command), with a queue and
worker names of this test's own, so a worker left over from another run cannot take its tasks.
One policy version x three checkpoints are evaluated the way `policyeval run --executor celery`
does it: runs of the workspace's code location, executed three at once by `WorkspaceLauncher`,
with the run config `policyeval run` builds.

The endpoint's pool is limited to one slot. The fake endpoint holds the first request until a
second `responses` step, necessarily on the other worker (each takes one task at a time), is
recorded in PostgreSQL as waiting for that slot: so both workers work at once, and the limit
is seen to hold across them (no two checkpoints ever have a request in flight together).

Needs Redis and PostgreSQL (`services.py`): skipped without them, failed when $CI is set.
"""

from __future__ import annotations

import collections
import hashlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.definitions.data_version import DATA_VERSION_TAG, get_input_data_version_tag
from dagster._core.events import DagsterEventType

from assets.evaluation.endpoint_slots import MODEL_ENDPOINTS_POOL, endpoint_pool
from assets.partitions import CHECKPOINT_DIM, POLICY_DIM, multi_key
from pipelines.definitions import build_definitions
from pipelines.executors import execution_config
from pipelines.launcher import WorkspaceLauncher
from pipelines.main_job import run_config
from policyeval.runs.manifest import load_manifest
from policyeval.testing import FakeOpenAIServer

from .conftest import MINI, refusing_or_helping
from .services import redis_url, sql

REPO = Path(__file__).resolve().parents[2]
DISTRIBUTED = REPO / "deploy" / "distributed"
CHECKPOINTS = ("fake-a", "fake-b", "fake-c")
WORKERS = 2
WORKER_READY_S = 180  # two workers importing Dagster at once on a loaded 2-core machine
GATE_S = 240  # the longest the first request waits for the second step to queue for the slot (a loaded CI machine)
RUNS_S = 480
EVALUATION_ASSETS = {"responses", "grades", "metrics"}


@pytest.fixture
def cluster(tmp_path: Path, pg_database: dict, monkeypatch: pytest.MonkeyPatch):
    """DAGSTER_HOME with deploy/distributed/dagster.yaml, and two workers on a queue of this test's own."""
    broker = redis_url()
    token = secrets.token_hex(4)
    queue = f"policyeval-test-{token}"
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DISTRIBUTED / "dagster.yaml", home / "dagster.yaml")
    settings = yaml.safe_load((DISTRIBUTED / "celery.yaml").read_text())
    settings["execution"]["config"]["config_source"].update(task_default_queue=queue, result_expires=600)
    settings_file = tmp_path / "celery.yaml"
    settings_file.write_text(yaml.safe_dump(settings))
    env = {
        "POLICYEVAL_PG_URL": pg_database["dagster_url"],
        "POLICYEVAL_COMPUTE_LOG_DIR": str(tmp_path / "compute_logs"),
        "POLICYEVAL_CELERY_BROKER": broker,
        "POLICYEVAL_CELERY_BACKEND": broker,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # The schema exists before two workers open the instance at once.
    with dg.DagsterInstance.from_config(str(home)):
        pass

    names = [f"w{i}-{token}" for i in range(1, WORKERS + 1)]
    bin_dir = Path(sys.executable).parent
    # dagster-celery starts `celery` from PATH
    worker_env = {**os.environ, **env, "DAGSTER_HOME": str(home), "GX_ANALYTICS_ENABLED": "false",
                  "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    workers: list[tuple[str, subprocess.Popen, Path]] = []
    try:
        for name in names:
            log = tmp_path / f"{name}.log"
            command = [str(bin_dir / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app", "-y", str(settings_file),
                       "-q", queue, "-n", name, "-i", "pipelines.definitions", "--", "-c", "1"]
            with log.open("wb") as out:  # the child keeps its own descriptor
                process = subprocess.Popen(command, cwd=REPO, env=worker_env, stdout=out, stderr=subprocess.STDOUT,
                                           start_new_session=True)
            workers.append((name, process, log))
        yield {"home": home, "settings": settings_file, "queue": queue, "broker": broker, "workers": workers}
    finally:
        _stop(workers)
        _forget_queue(broker, queue)


def _stop(workers: list[tuple[str, subprocess.Popen, Path]]) -> None:
    """TERM each worker's process group (dagster-celery, celery, its pool process), KILL what is left."""
    for _, process, _ in workers:
        _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + 20
    for _, process, _ in workers:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for _, process, _ in workers:
        _signal_group(process, signal.SIGKILL)  # also the pool process, which may outlive its parent
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


def _forget_queue(broker: str, queue: str) -> None:
    import redis

    try:
        redis.Redis.from_url(broker, socket_connect_timeout=3).delete(
            queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
    except Exception:
        pass


def _wait_for_workers(cluster: dict) -> list[str]:
    """Both workers answer a ping over the broker; their node names."""
    from celery import Celery

    app = Celery("policyeval-test", broker=cluster["broker"])
    wanted = {f"{name}@" for name, _, _ in cluster["workers"]}
    deadline = time.monotonic() + WORKER_READY_S
    try:
        while time.monotonic() < deadline:
            for name, process, log in cluster["workers"]:
                assert process.poll() is None, f"worker {name} exited ({process.returncode}):\n{_tail(log)}"
            replies = app.control.ping(timeout=1.0) or []
            nodes = sorted(node for reply in replies for node in reply if any(node.startswith(w) for w in wanted))
            if len(nodes) == len(wanted):
                return nodes
            time.sleep(1)
    finally:
        app.close()
    pytest.fail(f"workers not ready within {WORKER_READY_S}s:\n" + "\n".join(_tail(log) for _, _, log in cluster["workers"]))


def _tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else "(no log)"


class GatedEndpoint:
    """The fake endpoint: holds the first request until another `responses` step waits in PostgreSQL
    for the endpoint's only slot; records how many checkpoints ever had requests in flight at once."""

    def __init__(self, instance: dg.DagsterInstance):
        self.storage = instance.event_log_storage
        self.pool = ""
        self.opened = threading.Event()
        self.seen_waiting: dict | None = None  # the pools at the moment the gate opened
        self.gate_report = ""  # how long the gate waited, and what the pools held when it gave up
        self._gate = threading.Lock()
        self._lock = threading.Lock()
        self._in_flight: collections.Counter[str] = collections.Counter()
        self.most_models_at_once = 0

    def __call__(self, request: dict, index: int) -> str:
        if not self.opened.is_set():
            with self._gate:
                started = time.monotonic()
                deadline = started + GATE_S
                while not self.opened.is_set() and time.monotonic() < deadline:
                    info = self.storage.get_concurrency_info(self.pool)
                    if info.pending_step_count:
                        self.seen_waiting = {
                            "holding": info.active_run_ids, "waiting": info.pending_run_ids,
                            "model_endpoints_active": self.storage.get_concurrency_info(MODEL_ENDPOINTS_POOL).active_slot_count,
                        }
                        break
                    time.sleep(0.2)
                info = self.storage.get_concurrency_info(self.pool)
                self.gate_report = (f"gate open after {time.monotonic() - started:.1f}s; pool {self.pool}: active runs "
                                    f"{sorted(info.active_run_ids)}, pending runs {sorted(info.pending_run_ids)}; "
                                    f"model-endpoints: {self.storage.get_concurrency_info(MODEL_ENDPOINTS_POOL).active_slot_count} active")
                self.opened.set()
        model = request.get("model", "")
        with self._lock:
            self._in_flight[model] += 1
            self.most_models_at_once = max(self.most_models_at_once, sum(1 for n in self._in_flight.values() if n))
        try:
            time.sleep(0.05)  # a window wide enough for an overlap to show
            return refusing_or_helping(request, index)
        finally:
            with self._lock:
                self._in_flight[model] -= 1


def _executed_by(instance: dg.DagsterInstance, run_id: str) -> dict[str, str]:
    """Step key -> the Celery worker that executed it, from the engine event each task records."""
    workers = {}
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
        metadata = entry.dagster_event.engine_event_data.metadata or {}
        if "Celery worker" in metadata:
            workers[entry.step_key] = metadata["Celery worker"].value
    return workers


def test_two_celery_workers_share_the_runs_and_the_endpoint_limit(cluster: dict, tmp_path: Path, pg_database: dict) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(MINI, policies / "mini")
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()

    with dg.DagsterInstance.from_config(str(cluster["home"])) as instance:
        endpoint = GatedEndpoint(instance)
        with FakeOpenAIServer(endpoint) as server:
            for name in CHECKPOINTS:
                (checkpoints / f"{name}.yaml").write_text(
                    f"id: {name}\nbase_url: {server.base_url}\nmodel: model-{name}\n"
                    f"params: {{temperature: 0, max_tokens: 32}}\nmax_concurrency: 4\ntimeout_s: {GATE_S + 60}\n")
            endpoint.pool = endpoint_pool(load_manifest(checkpoints / "fake-a.yaml").endpoint)
            defs = build_definitions(packs_dir=str(policies), manifests_dir=str(checkpoints), data_dir=str(tmp_path / "data"),
                                     cache_dir=str(tmp_path / "cache"), sample_per_cell=1)
            (key,) = sorted(defs.resources["policy_repository"].scan()[0])
            instance.add_dynamic_partitions(POLICY_DIM, [key])
            instance.add_dynamic_partitions(CHECKPOINT_DIM, list(CHECKPOINTS))
            instance.event_log_storage.set_concurrency_slots(endpoint.pool, 1)  # one checkpoint at a time on this endpoint
            launcher = WorkspaceLauncher(instance, REPO / "workspace.yaml")

            # the eval set, in this process, while the workers start
            policy_run = launcher.run("policy_version_job", key, {}, run_config(defs.resources, {"in_process": {}}))
            assert policy_run.success, policy_run.failure
            nodes = _wait_for_workers(cluster)

            celery = run_config(defs.resources, execution_config("celery", cluster["settings"]))
            outcome: list = []
            runner = threading.Thread(target=lambda: outcome.extend(launcher.run_all(
                "evaluation_job", [(multi_key(key, name), {}) for name in CHECKPOINTS], celery, parallel=len(CHECKPOINTS))), daemon=True)
            runner.start()
            runner.join(RUNS_S)
            logs = "\n".join(_tail(log) for _, _, log in cluster["workers"])
            assert not runner.is_alive(), f"the evaluation runs did not finish within {RUNS_S}s; workers:\n{logs}"
            assert len(outcome) == len(CHECKPOINTS) and all(r.success for r in outcome), [(r.run_id, r.failure) for r in outcome]
            model_calls = server.request_count

        # the limit held across workers: a second step waited in PostgreSQL while the first held the slot ...
        waiting = endpoint.seen_waiting
        assert waiting is not None, f"no second responses step ever waited for {endpoint.pool} ({endpoint.gate_report}); workers:\n{logs}"
        assert len(waiting["holding"]) == 1 and waiting["waiting"] and not waiting["waiting"] & waiting["holding"]
        assert waiting["model_endpoints_active"] >= 2  # both runs had claimed `model-endpoints` too
        # ... and no two checkpoints were ever asked at once
        assert endpoint.most_models_at_once == 1

        run_ids = {r.run_id for r in outcome}
        executed = {run_id: _executed_by(instance, run_id) for run_id in run_ids}
        holder, waiter = next(iter(waiting["holding"])), next(iter(waiting["waiting"]))
        assert executed[holder]["responses"] != executed[waiter]["responses"]  # the two steps at once: one per worker
        assert {w for steps in executed.values() for w in steps.values()} == set(nodes)  # both workers did work

    # a second instance: everything below comes from PostgreSQL
    with dg.DagsterInstance.from_config(str(cluster["home"])) as instance:
        for run_id in run_ids:
            run = instance.get_run_by_id(run_id)
            assert run.status == dg.DagsterRunStatus.SUCCESS and run.job_name == "evaluation_job"
            starts = collections.Counter(e.step_key for e in instance.all_logs(run_id, of_type=DagsterEventType.STEP_START))
            assert starts and set(starts.values()) == {1}, starts  # every step executed exactly once
            assert set(starts) == set(executed[run_id]), "a step executed outside the Celery workers"
            assert EVALUATION_ASSETS <= set(starts)

        partitions = {str(multi_key(key, name)) for name in CHECKPOINTS}
        for asset in EVALUATION_ASSETS:
            assert instance.get_materialized_partitions(dg.AssetKey(asset)) == partitions, asset
        calls = 0
        for partition in partitions:
            responses, grades = (instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey(a), asset_partitions=[partition]), limit=1).records[0]
                for a in ("responses", "grades"))
            calls += responses.asset_materialization.metadata["model_calls"].value
            # lineage: these grades were computed from that partition's responses. Dagster records an
            # upstream partition's data version hashed (sha256 of the versions of the input partitions);
            # its input event pointer names the asset's latest event of any partition, so it is not used.
            responses_version = responses.asset_materialization.tags[DATA_VERSION_TAG]
            recorded = grades.asset_materialization.tags[get_input_data_version_tag(dg.AssetKey("responses"))]
            assert recorded == hashlib.sha256(responses_version.encode()).hexdigest()
            assert grades.run_id in run_ids and responses.run_id == grades.run_id
        assert calls == model_calls > 0  # every request was made once, by the step that recorded it
        assert instance.event_log_storage.get_concurrency_info(endpoint.pool).active_slot_count == 0

    rows = sql(pg_database, "SELECT run_id, step_key, count(*) FROM event_logs WHERE dagster_event_type = 'STEP_START' "
                            "AND run_id = ANY(%s) GROUP BY run_id, step_key", (list(run_ids),))
    assert rows and {n for _, _, n in rows} == {1}
