"""Benchmark evaluation runs in one process against the same runs on two Celery workers.

2 policy versions x 10 checkpoints x ~200 items (the demo pack at `--per-cell 4`: 188 items),
against a fake OpenAI-compatible endpoint that answers after 100 ms (a process of its own),
at most 8 requests in flight per checkpoint. Every request really goes out (`refresh`).

Each mode gets a fresh PostgreSQL database behind deploy/distributed/dagster.yaml. The eval
sets are made in this process first (not timed); then the 20 evaluation runs are timed:

  in-process   one run at a time, its steps in this process (`policyeval run`)
  celery       `--parallel` runs at once, their steps on 2 workers started with the documented
               `dagster-celery worker start ... -- -c 1` (`policyeval run --executor celery`)

Per mode: wall seconds for all runs and per partition (wall / partitions), then the means over
partitions of a run's duration split into model time (the `responses` step asking the
endpoint: its `model_time_s` metadata) and overhead, the time not spent waiting on the model:
run start, steps (loading the code location, resources, Parquet, grading, checks, events) and,
with Celery, waiting for a worker and the broker's round trips. `steps` is the part of the
overhead spent inside steps, `between` the rest.

    python bench/distributed_bench.py            # 2 x 10 x 188 items (about 10 minutes here)
    python bench/distributed_bench.py --quick    # 1 x 4 x 47 items (about 3 minutes)

Needs PostgreSQL ($POLICYEVAL_TEST_PG_URL, default postgresql://postgres@127.0.0.1:5432/postgres)
and Redis ($POLICYEVAL_TEST_REDIS_URL, default redis://127.0.0.1:6379/14), as the tests do.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import dagster as dg  # noqa: E402
import psycopg2  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from assets.partitions import CHECKPOINT_DIM, POLICY_DIM, multi_key  # noqa: E402
from pipelines.definitions import build_definitions  # noqa: E402
from pipelines.executors import execution_config  # noqa: E402
from pipelines.launcher import WorkspaceLauncher  # noqa: E402
from pipelines.main_job import run_config  # noqa: E402

DISTRIBUTED = REPO / "deploy" / "distributed"
BIN = Path(sys.executable).parent
PG_URL = os.environ.get("POLICYEVAL_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("POLICYEVAL_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
WORKERS = 2


@dataclass
class Figures:
    mode: str
    partitions: int
    wall_s: float
    run_s: float  # means over partitions
    model_s: float
    steps_s: float
    model_calls: int
    failed: int

    @property
    def overhead_s(self) -> float:
        return self.run_s - self.model_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 policy version x 4 checkpoints x 47 items")
    parser.add_argument("--versions", type=int, default=2)
    parser.add_argument("--checkpoints", type=int, default=10)
    parser.add_argument("--per-cell", type=int, default=4, help="items per category x behavior (4 = 188 items of the demo pack)")
    parser.add_argument("--delay", type=float, default=0.1, help="seconds before the endpoint answers")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight per checkpoint (max_concurrency)")
    parser.add_argument("--parallel", type=int, default=4, help="evaluation runs in flight at once with Celery")
    parser.add_argument("--only", choices=("in-process", "celery"), help="run one mode")
    args = parser.parse_args()
    if args.quick:
        args.versions, args.checkpoints, args.per_cell = 1, 4, 1
    warnings.filterwarnings("ignore")

    with tempfile.TemporaryDirectory(prefix="distributed-bench-") as tmp, _endpoint(args.delay) as base_url:
        root = Path(tmp)
        policies = _policy_versions(root / "policies", args.versions)
        checkpoints = root / "checkpoints"
        checkpoints.mkdir()
        for i in range(args.checkpoints):
            (checkpoints / f"bench-{i:02d}.yaml").write_text(
                f"id: bench-{i:02d}\nbase_url: {base_url}\nmodel: bench-model-{i:02d}\n"
                f"params: {{temperature: 0, max_tokens: 32}}\nmax_concurrency: {args.concurrency}\ntimeout_s: 60\n")
        figures = []
        for mode in ("in-process", "celery"):
            if args.only in (None, mode):
                figures.append(_measure(mode, root / mode, policies, checkpoints, args))
    _print(figures, args)


def _measure(mode: str, root: Path, policies: Path, checkpoints: Path, args) -> Figures:
    root.mkdir()
    print(f"[{mode}] preparing ...", flush=True)
    with _database() as url, _instance_home(root, url) as (home, settings):
        with dg.DagsterInstance.from_config(str(home)):
            pass  # the schema exists before the workers open the instance
        workers = _start_workers(root, home, settings) if mode == "celery" else []
        try:
            with dg.DagsterInstance.from_config(str(home)) as instance:
                defs = build_definitions(packs_dir=str(policies), manifests_dir=str(checkpoints), data_dir=str(root / "data"),
                                         cache_dir=str(root / "cache"), sample_per_cell=args.per_cell)
                versions = sorted(defs.resources["policy_repository"].scan()[0])
                checkpoint_ids = sorted(defs.resources["checkpoint_registry"].scan()[0])
                instance.add_dynamic_partitions(POLICY_DIM, versions)
                instance.add_dynamic_partitions(CHECKPOINT_DIM, checkpoint_ids)
                launcher = WorkspaceLauncher(instance, REPO / "workspace.yaml")
                for key in versions:
                    made = launcher.run("policy_version_job", key, {}, run_config(defs.resources, {"in_process": {}}))
                    assert made.success, made.failure
                if workers:
                    _wait_for_workers(workers)
                execution = execution_config("celery", settings) if mode == "celery" else {"in_process": {}}
                config = run_config(defs.resources, execution, refresh=True)
                partitions = [(multi_key(key, cid), {}) for key in versions for cid in checkpoint_ids]
                print(f"[{mode}] {len(partitions)} evaluation runs ...", flush=True)
                started = time.monotonic()
                outcomes = launcher.run_all("evaluation_job", partitions, config, args.parallel if mode == "celery" else 1)
                wall = time.monotonic() - started
                return _figures(mode, instance, outcomes, wall)
        finally:
            _stop_workers(workers)
            _forget_queue(settings)


def _figures(mode: str, instance: dg.DagsterInstance, outcomes: list, wall: float) -> Figures:
    runs, models, steps, calls = [], [], [], 0
    for outcome in outcomes:
        record = instance.get_run_record_by_id(outcome.run_id)
        if not outcome.success or record is None or record.start_time is None or record.end_time is None:
            continue
        materialization = next(
            (e.asset_materialization for e in instance.all_logs(outcome.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
             if e.asset_materialization and e.asset_materialization.asset_key == dg.AssetKey("responses")), None)
        metadata = materialization.metadata if materialization else {}
        runs.append(record.end_time - record.start_time)
        models.append(float(getattr(metadata.get("model_time_s"), "value", 0.0) or 0.0))
        calls += int(getattr(metadata.get("model_calls"), "value", 0) or 0)
        busy = sum((s.end_time or 0) - (s.start_time or 0) for s in instance.get_run_step_stats(outcome.run_id) if s.start_time)
        steps.append(busy - models[-1])
    mean = lambda values: statistics.fmean(values) if values else float("nan")  # noqa: E731
    return Figures(mode, len(outcomes), wall, mean(runs), mean(models), mean(steps), calls, len(outcomes) - len(runs))


def _print(figures: list[Figures], args) -> None:
    print()
    print(f"{args.versions} policy version(s) x {args.checkpoints} checkpoints, per-cell {args.per_cell}, endpoint {args.delay * 1000:.0f} ms, "
          f"max_concurrency {args.concurrency}; celery: {WORKERS} workers x 1 process, {args.parallel} runs at once; "
          f"{os.cpu_count()} CPUs")
    print()
    print("| mode | partitions | model calls | wall s | wall s / partition | run s / partition | model s | overhead s | (in steps | between) | failed |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for f in figures:
        label = f"celery, {WORKERS} workers" if f.mode == "celery" else f.mode
        print(f"| {label} | {f.partitions} | {f.model_calls} | {f.wall_s:.1f} | {f.wall_s / f.partitions:.2f} | {f.run_s:.2f} | "
              f"{f.model_s:.2f} | {f.overhead_s:.2f} | {f.steps_s:.2f} | {f.overhead_s - f.steps_s:.2f} | {f.failed} |")
    if len(figures) == 2 and figures[1].wall_s:
        print(f"\nwall time, in-process / celery: {figures[0].wall_s / figures[1].wall_s:.2f}x")


def _policy_versions(folder: Path, count: int) -> Path:
    """`count` versions of the demo pack, each with its own content (so its own partition key)."""
    for i in range(count):
        target = folder / f"demo-v{i + 1}"
        shutil.copytree(REPO / "policies" / "demo", target)
        if i:
            pack = target / "pack.yaml"
            pack.write_text(pack.read_text().replace('version: "2026.12"', f'version: "2026.12-bench{i}"')
                            .replace("a compact but realistic", f"a compact but realistic (bench edit {i})"))
    return folder


@contextmanager
def _endpoint(delay: float):
    """The fake endpoint in its own process, so the bench measures the pipeline, not the server."""
    server = subprocess.Popen([sys.executable, "-m", "policyeval.testing.openai_server", "--delay", str(delay)],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        line = server.stdout.readline()
        if not line.startswith("PORT "):
            raise SystemExit(f"the fake endpoint did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line.split()[1])}/v1"
    finally:
        server.terminate()
        server.wait(timeout=10)


@contextmanager
def _database():
    admin = make_url(PG_URL)
    libpq = lambda url: url.set(drivername="postgresql").render_as_string(hide_password=False)  # noqa: E731
    conn = psycopg2.connect(libpq(admin), connect_timeout=5)
    conn.autocommit = True
    name = f"policyeval_bench_{secrets.token_hex(4)}"
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(database=name, drivername="postgresql+psycopg2").render_as_string(hide_password=False)
    finally:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.close()


@contextmanager
def _instance_home(root: Path, url: str):
    """DAGSTER_HOME with deploy/distributed/dagster.yaml, Celery settings on a queue of this bench's own."""
    home = root / "dagster_home"
    home.mkdir()
    shutil.copy(DISTRIBUTED / "dagster.yaml", home / "dagster.yaml")
    settings = yaml.safe_load((DISTRIBUTED / "celery.yaml").read_text())
    queue = f"policyeval-bench-{secrets.token_hex(4)}"
    settings["execution"]["config"]["config_source"].update(task_default_queue=queue, result_expires=600)
    settings_file = root / "celery.yaml"
    settings_file.write_text(yaml.safe_dump(settings))
    env = {"POLICYEVAL_PG_URL": url, "POLICYEVAL_COMPUTE_LOG_DIR": str(root / "compute_logs"),
           "POLICYEVAL_CELERY_BROKER": REDIS_URL, "POLICYEVAL_CELERY_BACKEND": REDIS_URL}
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield home, settings_file
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _start_workers(root: Path, home: Path, settings: Path) -> list[tuple[str, subprocess.Popen]]:
    queue = yaml.safe_load(settings.read_text())["execution"]["config"]["config_source"]["task_default_queue"]
    env = {**os.environ, "DAGSTER_HOME": str(home), "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    workers = []
    for i in range(1, WORKERS + 1):
        name = f"bench{i}-{queue[-8:]}"
        with (root / f"{name}.log").open("wb") as log:
            workers.append((name, subprocess.Popen(
                [str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app", "-y", str(settings), "-q", queue,
                 "-n", name, "-i", "pipelines.definitions", "--", "-c", "1"],
                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)))
    return workers


def _wait_for_workers(workers: list[tuple[str, subprocess.Popen]], timeout_s: float = 300) -> None:
    from celery import Celery

    app = Celery("policyeval-bench", broker=REDIS_URL)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            for name, process in workers:
                if process.poll() is not None:
                    raise SystemExit(f"worker {name} exited with {process.returncode}")
            replies = app.control.ping(timeout=1.0) or []
            if all(any(node.startswith(f"{name}@") for reply in replies for node in reply) for name, _ in workers):
                return
            time.sleep(1)
    finally:
        app.close()
    raise SystemExit(f"workers not ready within {timeout_s:.0f}s")


def _stop_workers(workers: list[tuple[str, subprocess.Popen]]) -> None:
    for sig, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        for _, process in workers:
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                pass
        for _, process in workers:
            try:
                process.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                pass


def _forget_queue(settings: Path) -> None:
    import redis

    queue = yaml.safe_load(settings.read_text())["execution"]["config"]["config_source"]["task_default_queue"]
    redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).delete(
        queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")


if __name__ == "__main__":
    main()
