"""`policyeval run`: the main job on a real Dagster instance.

Registers every policy version and checkpoint as partitions, then materializes what is
stale through the code location's own jobs (`launcher.py`): each run is a run of the code
location `workspace.yaml` loads, with the command's folders and settings as run config, so
the runs show in the Overview timeline and their job's Runs tab of `dagster dev -w
workspace.yaml`, with their lineage and check results. A partition is
stale when what it was last computed from (policy content hash, checkpoint manifest
hash, sample size, generator and grader versions, the policy version's learned grader
model, which is retrained when its gold set changes) differs from now; an up-to-date
partition is skipped. Responses are content-addressed, so even a re-materialization
asks the model only for requests it has never answered.

`--executor celery` sends every step to Celery workers (`deploy/distributed/`, see
docs/operations.md); this process then only orchestrates, so the evaluation runs of a policy
version execute `--parallel` at a time and the workers share their steps.
"""

from __future__ import annotations

import signal
import time
import warnings
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import click
import dagster as dg

from assets.materializations import latest_metadata, latest_record, latest_value
from assets.partitions import CHECKPOINT_DIM, POLICY_DIM, multi_key
from policyeval.errors import PolicyevalError
from policyeval.generate import GENERATOR_VERSION
from policyeval.records import content_hash
from policyeval.runs.manifest import manifest_hash

from resources.environment import cache_root, celery_settings_path, checkpoints_root, data_root, policies_root

from assets.emerging import imports_fingerprint, screening_policy
from assets.evaluation.automation import ENDPOINT_TAG, resources_run_config, vanished_checkpoints
from .definitions import build_definitions
from .executors import execution_config
from .instance import ensure_dagster_home
from .launcher import LaunchedRun, WorkspaceLauncher

FINGERPRINT_TAG = "policyeval/fingerprint"
GRADER_FINGERPRINT_TAG = "policyeval/grader-fingerprint"  # gold set and training code behind grader_model


@dataclass
class PartitionOutcome:
    policy_key: str
    checkpoint: str
    skipped: bool
    model_calls: int = 0
    under_refusal: str = ""
    harmful_compliance: str = ""
    over_refusal: str = ""
    gate: str = ""  # the launch gate's verdict (policyeval.launch_gate) and what decided it
    gate_failed: bool = False
    safeguards: str = ""  # a system checkpoint: what its filters blocked
    failed: str = ""


def _latest_tags(instance: dg.DagsterInstance, asset: str, partition: str) -> dict[str, str]:
    """Tags of the run that last materialized an asset partition."""
    record = latest_record(instance, asset, partition)
    run = instance.get_run_by_id(record.run_id) if record else None
    return dict(run.tags) if run else {}


# Runs log to the instance (the UI shows them); the terminal gets the summary below.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
CONFIGURED_RESOURCES = ("policy_repository", "checkpoint_registry", "run_settings", "io_manager", "campaign_store", "deployment_logs",
                        "risk_imports")
# Steps run in this process unless sent to Celery workers: a process per step would cost seconds each.
EXECUTORS = ("in_process", "celery")


def run_config(resources: dict, execution: dict, **settings: object) -> dict:
    """What this `policyeval run` was asked for, as run config of the code location's resources
    and executor (`pipelines.executors`)."""
    configured = {name: resources[name] for name in CONFIGURED_RESOURCES}
    return {**QUIET, "execution": {"config": execution}, **resources_run_config(configured, run_settings=settings)}


def _check_summary(result: LaunchedRun, checkpoint_id: str) -> tuple[str, bool]:
    """The launch gate check's verdict as the core gave it, with its reasons; and whether it failed."""
    gate = [e for e in result.checks if e.check_name == "launch_gate"]
    if not gate:
        return "", False
    evaluation = gate[0]
    recorded = evaluation.metadata.get("verdict")
    verdict = str(getattr(recorded, "value", recorded) or ("PASS" if evaluation.passed else "FAIL"))
    if verdict == "PASS":
        return verdict, not evaluation.passed
    detail = (evaluation.description or "").removeprefix(f"{checkpoint_id}: ").removeprefix(f"{verdict}: ")
    return f"{verdict}: {detail}" if detail else verdict, not evaluation.passed


@click.command("run")
@click.option("--policies", "policies_dir", type=click.Path(path_type=Path), default=None,
              help="A policy pack, or a folder of packs [default: $POLICYEVAL_POLICIES, else policies/].")
@click.option("--checkpoints", "checkpoints_dir", type=click.Path(path_type=Path), default=None,
              help="A folder of checkpoint manifests [default: $POLICYEVAL_CHECKPOINTS, else checkpoints/].")
@click.option("--per-cell", type=int, default=2, show_default=True, help="Items per category x expected behavior sent to each checkpoint (0 = the full eval set).")
@click.option("--baseline", default="", help="Baseline checkpoint for comparisons [default: the first by id].")
@click.option("--force", is_flag=True, help="Re-materialize every partition, stale or not (cached answers are still reused).")
@click.option("--workspace", "workspace_file", type=click.Path(path_type=Path), default=Path("workspace.yaml"), show_default=True,
              help="The workspace whose code location runs the jobs (the one `dagster dev` shows).")
@click.option("--executor", type=click.Choice(EXECUTORS), default="in_process", show_default=True,
              help="Where steps execute: in this process, or on Celery workers (docs/operations.md, 'Celery workers').")
@click.option("--celery-settings", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="The Celery settings the workers were started with [default: $POLICYEVAL_CELERY_SETTINGS, else deploy/distributed/celery.yaml].")
@click.option("--parallel", type=click.IntRange(min=1), default=4, show_default=True,
              help="With --executor celery, evaluation runs in flight at once (in-process runs go one at a time).")
def run(policies_dir: Path | None, checkpoints_dir: Path | None, per_cell: int, baseline: str, force: bool, workspace_file: Path,
        executor: str, celery_settings: Path | None, parallel: int) -> None:
    """Materialize everything that is stale, on the Dagster instance in $DAGSTER_HOME."""
    # Data versions and partition mappings are beta in Dagster 1.13, and used on purpose.
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    # dagster-celery registers its task again for every step it submits: harmless, and noisy.
    warnings.filterwarnings("ignore", message="Task name 'execute_plan' is already registered")
    # SIGTERM stops like Ctrl-C: the run in progress is marked failed, answers so far stay cached.
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.monotonic()
    home = ensure_dagster_home()
    # the same folders the UI and its sensors read, so neither unregisters what the other registered
    policies_dir = policies_dir or policies_root()
    checkpoints_dir = checkpoints_dir or checkpoints_root()
    # absolute: the runs execute in the code location's working directory
    defs = build_definitions(
        packs_dir=str(policies_dir.resolve()), manifests_dir=str(checkpoints_dir.resolve()), data_dir=str(data_root().resolve()),
        cache_dir=str(cache_root().resolve()), sample_per_cell=per_cell, baseline_checkpoint=baseline
    )
    resources = defs.resources
    repo = resources["policy_repository"]
    registry = resources["checkpoint_registry"]

    versions, problems = repo.scan()
    for problem in problems:
        click.echo(f"skipped policy pack {problem.path}: {problem.message}", err=True)
    if not versions:
        raise PolicyevalError(f"no valid policy pack under {policies_dir}")
    manifests, manifest_problems = registry.scan()
    for problem in manifest_problems:
        click.echo(f"skipped checkpoint manifest: {problem}", err=True)
    if not manifests:
        raise PolicyevalError(f"no checkpoint manifests under {checkpoints_dir}")

    execution = execution_config(executor, celery_settings_path(str(celery_settings or "")) if executor == "celery" else None)
    parallel = parallel if executor == "celery" else 1
    outcomes: list[PartitionOutcome] = []
    with dg.DagsterInstance.get() as instance, ExitStack() as stack:
        launcher = WorkspaceLauncher(instance, Path(workspace_file))
        for orphan in launcher.fail_orphans():
            click.echo(f"run {orphan}: the process that executed it is gone; marked failed, its pool slots freed")
        config = run_config(resources, execution)
        _register(instance, POLICY_DIM, sorted(versions))
        _register(instance, CHECKPOINT_DIM, sorted(manifests))
        for gone in vanished_checkpoints(instance.get_dynamic_partitions(CHECKPOINT_DIM), manifests, manifest_problems):
            instance.delete_dynamic_partition(CHECKPOINT_DIM, gone)
            click.echo(f"checkpoint {gone}: manifest removed; its partition is unregistered (its history stays in the instance)")
        click.echo(f"Dagster instance: {home}")
        click.echo(f"policy versions: {', '.join(sorted(versions))}")
        click.echo(f"checkpoints: {', '.join(sorted(manifests))}")
        if executor == "celery":
            queue = (execution["celery"].get("config_source") or {}).get("task_default_queue", "dagster")
            click.echo(f"executor: celery workers on queue {queue}, {parallel} evaluation run(s) at once")

        local_url = ""
        for key, pack in sorted(versions.items()):
            policy_fp = content_hash({"policy": pack.content_hash, "generator": GENERATOR_VERSION})
            grader_fp = _grader_model_fingerprint(defs, key)
            grades_code_version = defs.resolve_assets_def("grades").code_versions_by_key[dg.AssetKey("grades")]
            if force or _latest_tags(instance, "eval_set", key).get(FINGERPRINT_TAG) != policy_fp:
                result = launcher.run("policy_version_job", key, {FINGERPRINT_TAG: policy_fp, GRADER_FINGERPRINT_TAG: grader_fp}, config)
                if not result.success:
                    raise PolicyevalError(f"policy version {key}: {result.failure or 'eval set generation failed'} (run {result.run_id})")
                click.echo(f"{key}: eval set generated ({latest_value(instance, 'eval_set', key, 'rows')} items)")
            else:
                click.echo(f"{key}: eval set up to date")
            model_hash = _ensure_grader_model(defs, instance, launcher, config, key, grader_fp)

            stale: dict[str, tuple[dg.MultiPartitionKey, dict[str, str]]] = {}
            for checkpoint_id, manifest in sorted(manifests.items()):
                partition = multi_key(key, checkpoint_id)
                fp = content_hash(
                    {"policy": policy_fp, "manifest": manifest_hash(manifest), "per_cell": per_cell, "grader": grades_code_version,
                     "grader_model": model_hash}
                )
                if force or _latest_tags(instance, "metrics", str(partition)).get(FINGERPRINT_TAG) != fp:
                    stale[checkpoint_id] = (partition, {FINGERPRINT_TAG: fp, ENDPOINT_TAG: manifest.endpoint})
                    if manifest.is_local and not local_url:
                        local_url = _start_local_model(stack)
                        config = run_config(resources, execution, local_base_url=local_url)
            results = dict(zip(stale, launcher.run_all("evaluation_job", list(stale.values()), config, parallel)))
            launcher.run_all("safety_report_job", [(partition, {}) for partition, _ in stale.values()], config, parallel)
            for checkpoint_id in sorted(manifests):
                partition = multi_key(key, checkpoint_id)
                outcome = PartitionOutcome(key, checkpoint_id, skipped=checkpoint_id not in results)
                if checkpoint_id in results:
                    result = results[checkpoint_id]
                    outcome.gate, outcome.gate_failed = _check_summary(result, checkpoint_id)
                    if not result.success:
                        outcome.failed = f"run {result.run_id} failed: {result.failure or 'see it in the UI'}"
                    outcome.model_calls = int(latest_value(instance, "responses", str(partition), "model_calls", 0) or 0)
                metrics_meta = latest_metadata(instance, "metrics", str(partition))
                outcome.under_refusal = _headline(metrics_meta, "under_refusal")
                outcome.harmful_compliance = _headline(metrics_meta, "harmful_compliance")
                outcome.over_refusal = _headline(metrics_meta, "over_refusal")
                outcome.safeguards = _safeguards_line(latest_metadata(instance, "grades", str(partition)))
                outcomes.append(outcome)
            if stale or force or not latest_record(instance, "checkpoint_comparison", key):
                launcher.run("comparison_job", key, {}, config)
                launcher.run("reports_job", key, {}, config)
        _emerging_risks(instance, launcher, config, resources["risk_imports"], force)

    _report(outcomes, started, repo)


def _emerging_risks(instance: dg.DagsterInstance, launcher: WorkspaceLauncher, config: dict, risk_imports, force: bool) -> None:
    """The emerging-risk report over the red-team and deployment imports (no model calls), unless
    neither they nor the policy version they are screened against changed since it was last made."""
    key = screening_policy(instance, risk_imports)
    fp = imports_fingerprint(risk_imports, key)
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey("emerging_risk_report")), limit=1).records
    last = instance.get_run_by_id(records[0].run_id) if records else None
    if not force and last is not None and last.tags.get(FINGERPRINT_TAG) == fp:
        click.echo("emerging risks: up to date")
        return
    result = launcher.run("emerging_risks_job", None, {FINGERPRINT_TAG: fp}, config)
    if not result.success:
        raise PolicyevalError(f"emerging risks: {result.failure or 'the run failed'} (run {result.run_id})")
    record = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey("emerging_risk_report")), limit=1).records[0]
    meta = {k: getattr(v, "value", v) for k, v in record.asset_materialization.metadata.items()}
    click.echo(f"emerging risks under {key}: {meta.get('candidates')} record(s) outside the taxonomy, {meta.get('clusters')} "
               f"cluster(s); report {meta.get('html_path')}, draft categories in {meta.get('drafts_dir')}")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _grader_model_fingerprint(defs: dg.Definitions, key: str) -> str:
    """What `grader_model` is made from: the policy version's gold set and the training code."""
    gold = defs.resources["campaign_store"].load_gold(key)
    code = defs.resolve_assets_def("grader_model").code_versions_by_key[dg.AssetKey("grader_model")]
    return content_hash({"gold": str(gold["gold_version"].iloc[0]) if gold is not None and len(gold) else None, "code": code})


def _ensure_grader_model(defs: dg.Definitions, instance: dg.DagsterInstance, launcher: WorkspaceLauncher, config: dict,
                         key: str, fp: str) -> str:
    """Materialize the policy version's `grader_model` unless the run that last made it had
    the same fingerprint (the policy job makes it too), before any `grades` read it; its artifact hash."""
    if _latest_tags(instance, "grader_model", key).get(GRADER_FINGERPRINT_TAG) != fp:
        result = launcher.run("grader_model_job", key, {GRADER_FINGERPRINT_TAG: fp}, config)
        if not result.success:
            raise PolicyevalError(f"policy version {key}: grader_model failed: {result.failure} (run {result.run_id})")
        click.echo(f"{key}: grader model {latest_value(instance, 'grader_model', key, 'note')}")
    return str(latest_value(instance, "grader_model", key, "artifact_hash", "") or "")


def _register(instance: dg.DagsterInstance, dimension: str, keys: list[str]) -> None:
    known = set(instance.get_dynamic_partitions(dimension))
    new = [k for k in keys if k not in known]
    if new:
        instance.add_dynamic_partitions(dimension, new)


def _start_local_model(stack: ExitStack) -> str:
    """The local model for the whole run (one single-thread server per core behind one
    address), shared by every local checkpoint; its URL."""
    from policyeval.runs.local_replicas import LocalModelReplicas

    local = LocalModelReplicas()
    click.echo(f"starting the local model ({local.replicas} server(s), one per core) ...")
    return stack.enter_context(local).base_url


def _headline(metadata: dict, name: str) -> str:
    rate, upper = (getattr(metadata.get(f"{name}_{part}"), "value", None) for part in ("rate", "upper"))
    if rate is None:
        return "n/a"
    return f"{rate:.1%} (upper {upper:.1%})"


def _safeguards_line(metadata: dict) -> str:
    """`input filter blocked 3, output filter caught 1` for a system checkpoint's grades; else empty."""
    if "safeguards" not in metadata:
        return ""
    blocked, caught = (int(getattr(metadata.get(f"blocked_by_{side}_filter"), "value", 0) or 0) for side in ("input", "output"))
    return f"; filters: input blocked {blocked}, output caught {caught} (comparison report: safeguard layers)"


def _report(outcomes: list[PartitionOutcome], started: float, repo) -> None:
    calls = sum(o.model_calls for o in outcomes)
    for o in outcomes:
        state = "up to date, skipped" if o.skipped else f"{o.model_calls} model calls"
        gate = f", launch gate {o.gate}" if o.gate else ""
        if o.gate_failed:
            gate += " (not approved for launch)"
        failed = f", {o.failed}" if o.failed else ""
        click.echo(f"  {o.policy_key} x {o.checkpoint}: {state}{gate}{failed}; under-refusal {o.under_refusal}, "
                   f"harmful compliance {o.harmful_compliance}, over-refusal {o.over_refusal}{o.safeguards}")
    data_dir = data_root().resolve()
    click.echo(f"reports: {data_dir / 'reports'} (safety, comparison, policy diff, coverage, ambiguity queue; HTML and Markdown)")
    click.echo(f"data: {data_dir / 'assets'} (Parquet per asset and partition)")
    click.echo("UI: dagster dev -w workspace.yaml  (runs, lineage, check results)")
    elapsed = time.monotonic() - started
    failed = [o for o in outcomes if o.failed]
    if failed:
        # a failed gate is a measurement; a failed run is not, and the exit status says so
        click.echo(f"{len(failed)} evaluation run(s) failed, {calls} model calls in {elapsed:.0f}s", err=True)
        raise SystemExit(1)
    if calls == 0:
        click.echo(f"nothing changed: no model calls ({elapsed:.0f}s)")
    else:
        click.echo(f"{calls} model calls in {elapsed:.0f}s")
