"""Runs of `policyeval run`, recorded as runs of the code location the UI shows.

`job.execute_in_process` records a run with no code-location origin: it shows in the global
Runs list, but not in the Overview timeline or its job's Runs tab. Here each run is created
with the origin of the code location that `workspace.yaml` loads (the one `dagster dev`
shows) and executed, in this process, from that location's own definitions (the module and
attribute the workspace names), as a run launched from the UI would be. What `policyeval run`
was asked for (folders, sample size, baseline, a running local server) goes in as run config
of the resources, so a run's config page says what it measured.

With the celery executor a run's process only submits steps and waits for them, so `run_all`
executes several runs at once, each in a thread of this process: the workers then have
several runs' steps to share, which is what makes more workers finish sooner.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._core.events import DagsterEventType
from dagster._core.execution.api import execute_run
from dagster._core.remote_origin import RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.workspace.load_target import WorkspaceFileTarget

from assets.pools import ensure_pool, job_pools
from policyeval.errors import PolicyevalError

REPOSITORY = "__repository__"  # the name Dagster gives the repository of a Definitions object
HOST_TAG = "policyeval/host"
PID_TAG = "policyeval/pid"  # the process that executes the run (this one)
UNFINISHED = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.NOT_STARTED]


@dataclass(frozen=True)
class CheckVerdict:
    check_name: str
    passed: bool
    description: str
    metadata: Mapping[str, Any]


@dataclass(frozen=True)
class LaunchedRun:
    run_id: str
    success: bool
    checks: tuple[CheckVerdict, ...]
    failure: str = ""  # the first step failure's message, when the run failed


def partition_tags(partition_key: str | dg.MultiPartitionKey | None) -> dict[str, str]:
    if partition_key is None:
        return {}
    tags = {"dagster/partition": str(partition_key)}
    if isinstance(partition_key, dg.MultiPartitionKey):
        tags.update({f"dagster/partition/{dim}": key for dim, key in partition_key.keys_by_dimension.items()})
    return tags


class WorkspaceLauncher:
    """Executes jobs of the workspace's code location on `instance`: one run (`run`), or several at once (`run_all`)."""

    def __init__(self, instance: dg.DagsterInstance, workspace_file: Path):
        if not workspace_file.is_file():
            raise PolicyevalError(f"{workspace_file}: no workspace file (run policyeval run from the project folder)")
        origins = WorkspaceFileTarget(paths=[str(workspace_file)]).create_origins()
        if len(origins) != 1 or getattr(origins[0], "loadable_target_origin", None) is None:
            raise PolicyevalError(f"{workspace_file}: expected one Python code location, found {len(origins)}")
        self._instance = instance
        self._repository_origin = RemoteRepositoryOrigin(origins[0], REPOSITORY)
        target = origins[0].loadable_target_origin
        if not target.module_name:
            raise PolicyevalError(f"{workspace_file}: the code location must be a python_module")
        working_directory = str((workspace_file.parent / (target.working_directory or ".")).resolve())
        self._repository = ReconstructableRepository.for_module(target.module_name, target.attribute or "defs",
                                                                working_directory)

    def run(self, job_name: str, partition_key: str | dg.MultiPartitionKey | None, tags: Mapping[str, str],
            run_config: Mapping[str, Any]) -> LaunchedRun:
        job = self._repository.get_reconstructable_job(job_name)
        run = self._create(job, job_name, partition_key, tags, run_config)
        execute_run(job, run, self._instance, raise_on_error=False)
        return run_outcome(self._instance, run.run_id)

    def run_all(self, job_name: str, launches: list[tuple[str | dg.MultiPartitionKey | None, Mapping[str, str]]],
                run_config: Mapping[str, Any], parallel: int = 1) -> list[LaunchedRun]:
        """Runs of one job, one per (partition, tags), at most `parallel` executing at once; in order.

        Only for executors whose steps run elsewhere (celery): steps executed in this process
        would share its stdout and signal handlers. Interrupted (Ctrl-C, SIGTERM), the runs not
        finished are marked failed and their pool slots freed, as `fail_orphans` would; steps
        already on a worker finish there, and their answers stay in the response cache."""
        if parallel <= 1 or len(launches) <= 1:
            return [self.run(job_name, partition, tags, run_config) for partition, tags in launches]
        job = self._repository.get_reconstructable_job(job_name)
        runs = [self._create(job, job_name, partition, tags, run_config) for partition, tags in launches]
        _reuse_python_log_handlers(self._instance)
        for pool in job_pools(job.get_definition()):  # the runs would race to create it
            ensure_pool(self._instance, pool)
        pending: queue.SimpleQueue = queue.SimpleQueue()
        for run in runs:
            pending.put(run)

        def work() -> None:
            while True:
                try:
                    run = pending.get_nowait()
                except queue.Empty:
                    return
                try:
                    execute_run(job, run, self._instance, raise_on_error=False)
                except Exception as exc:  # the storage or the broker went away: the run must not stay "started"
                    self._fail_if_unfinished(run.run_id, f"policyeval run could not execute this run: {type(exc).__name__}: {exc}")

        # daemon threads: an interrupted command exits without waiting for runs it has failed
        threads = [threading.Thread(target=work, name=f"policyeval-run-{i}", daemon=True) for i in range(min(parallel, len(runs)))]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.2)
        except KeyboardInterrupt:
            for run in runs:
                self._fail_if_unfinished(run.run_id, "policyeval run was interrupted")
            raise
        return [run_outcome(self._instance, run.run_id) for run in runs]

    def _create(self, job, job_name: str, partition_key: str | dg.MultiPartitionKey | None, tags: Mapping[str, str],
                run_config: Mapping[str, Any]) -> dg.DagsterRun:
        return self._instance.create_run_for_job(
            job_def=job.get_definition(), run_config=dict(run_config),
            tags={**partition_tags(partition_key), **tags, HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())},
            remote_job_origin=RemoteJobOrigin(self._repository_origin, job_name), job_code_origin=job.get_python_origin(),
        )

    def _fail_if_unfinished(self, run_id: str, message: str) -> None:
        run = self._instance.get_run_by_id(run_id)
        if run is not None and not run.is_finished:
            self._instance.report_run_failed(run, message)
            self._instance.event_log_storage.free_concurrency_slots_for_run(run_id)

    def fail_orphans(self) -> list[str]:
        """Runs this command started on this machine whose process is gone (killed, crashed):
        marked failed, their pool slots freed, so they hold nothing and block no later run."""
        host = socket.gethostname()
        failed = []
        for run in self._instance.get_runs(dg.RunsFilter(statuses=UNFINISHED, tags={HOST_TAG: host})):
            pid = int(run.tags.get(PID_TAG, "0") or 0)
            if pid and not _alive(pid):
                self._instance.report_run_failed(run, f"the process that executed this run (pid {pid}) is gone")
                self._instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
                failed.append(run.run_id)
        return failed


def _reuse_python_log_handlers(instance: dg.DagsterInstance) -> None:
    """Build the instance's `python_logs` handlers once, here, for every run of this process.

    Dagster builds them at each run's start with `logging.config.dictConfig`, which takes the
    logging module's lock and then every handler's: with another run's thread inside a handler
    (storing an event, which logs), the two threads deadlock. Same config, same handlers."""
    if getattr(instance, "_policyeval_handlers_reused", False):
        return
    handlers = list(instance.get_yaml_python_handlers())
    instance.get_yaml_python_handlers = lambda: handlers  # type: ignore[method-assign]
    instance._policyeval_handlers_reused = True  # type: ignore[attr-defined]


def _alive(pid: int) -> bool:
    """Is `pid` a live process other than this one (a dead run's pid may have been reused by us)?"""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_outcome(instance: dg.DagsterInstance, run_id: str) -> LaunchedRun:
    """A finished run as the instance recorded it: success, its check verdicts, its first failure."""
    run = instance.get_run_by_id(run_id)
    checks = tuple(
        CheckVerdict(e.check_name, e.passed, e.description or "", dict(e.metadata))
        for e in (r.event_log_entry.dagster_event.event_specific_data for r in instance.get_records_for_run(
            run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION).records)
    )
    failure = ""
    if run is None or not run.is_success:
        failures = instance.get_records_for_run(run_id, of_type=DagsterEventType.STEP_FAILURE).records
        if failures:
            data = failures[0].event_log_entry.dagster_event.step_failure_data
            failure = (data.user_failure_data.description if data.user_failure_data and data.user_failure_data.description
                       else data.error.message.strip() if data.error else "")
        else:  # the run itself failed (its executor, the broker, the storage): say what stopped it
            ended = instance.get_records_for_run(run_id, of_type=DagsterEventType.RUN_FAILURE).records
            if ended:
                event = ended[0].event_log_entry.dagster_event
                error = getattr(event.event_specific_data, "error", None)
                failure = (error.message if error else event.message or "").strip()[:1000]
    return LaunchedRun(run_id, run is not None and run.is_success, checks, failure)
