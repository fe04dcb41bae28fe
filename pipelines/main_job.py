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

from resources.environment import cache_root, data_root

from assets.evaluation.automation import ENDPOINT_TAG, resources_run_config, vanished_checkpoints
from .definitions import build_definitions
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
    failed: str = ""


def _latest_tags(instance: dg.DagsterInstance, asset: str, partition: str) -> dict[str, str]:
    """Tags of the run that last materialized an asset partition."""
    record = latest_record(instance, asset, partition)
    run = instance.get_run_by_id(record.run_id) if record else None
    return dict(run.tags) if run else {}


# Runs log to the instance (the UI shows them); the terminal gets the summary below. Steps
# run in the run worker's process: a process per step would cost seconds each.
QUIET_IN_PROCESS = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}},
                    "execution": {"config": {"in_process": {}}}}
CONFIGURED_RESOURCES = ("policy_repository", "checkpoint_registry", "run_settings", "io_manager", "campaign_store", "deployment_logs")


def _run_config(resources: dict, **settings: object) -> dict:
    """What this `policyeval run` was asked for, as run config of the code location's resources."""
    configured = {name: resources[name] for name in CONFIGURED_RESOURCES}
    return {**QUIET_IN_PROCESS, **resources_run_config(configured, run_settings=settings)}


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
@click.option("--policies", "policies_dir", type=click.Path(path_type=Path), default=Path("policies"), show_default=True, help="A policy pack, or a folder of packs.")
@click.option("--checkpoints", "checkpoints_dir", type=click.Path(path_type=Path), default=Path("checkpoints"), show_default=True, help="A folder of checkpoint manifests.")
@click.option("--per-cell", type=int, default=2, show_default=True, help="Items per category x expected behavior sent to each checkpoint (0 = the full eval set).")
@click.option("--baseline", default="", help="Baseline checkpoint for comparisons [default: the first by id].")
@click.option("--force", is_flag=True, help="Re-materialize every partition, stale or not (cached answers are still reused).")
@click.option("--workspace", "workspace_file", type=click.Path(path_type=Path), default=Path("workspace.yaml"), show_default=True,
              help="The workspace whose code location runs the jobs (the one `dagster dev` shows).")
def run(policies_dir: Path, checkpoints_dir: Path, per_cell: int, baseline: str, force: bool, workspace_file: Path) -> None:
    """Materialize everything that is stale, on the Dagster instance in $DAGSTER_HOME."""
    # Data versions and partition mappings are beta in Dagster 1.13, and used on purpose.
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    # SIGTERM stops like Ctrl-C: the run in progress is marked failed, answers so far stay cached.
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.monotonic()
    home = ensure_dagster_home()
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

    outcomes: list[PartitionOutcome] = []
    with dg.DagsterInstance.get() as instance, ExitStack() as stack:
        launcher = WorkspaceLauncher(instance, Path(workspace_file))
        for orphan in launcher.fail_orphans():
            click.echo(f"run {orphan}: the process that executed it is gone; marked failed, its pool slots freed")
        config = _run_config(resources)
        _register(instance, POLICY_DIM, sorted(versions))
        _register(instance, CHECKPOINT_DIM, sorted(manifests))
        for gone in vanished_checkpoints(instance.get_dynamic_partitions(CHECKPOINT_DIM), manifests, manifest_problems):
            instance.delete_dynamic_partition(CHECKPOINT_DIM, gone)
            click.echo(f"checkpoint {gone}: manifest removed; its partition is unregistered (its history stays in the instance)")
        click.echo(f"Dagster instance: {home}")
        click.echo(f"policy versions: {', '.join(sorted(versions))}")
        click.echo(f"checkpoints: {', '.join(sorted(manifests))}")

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

            changed_any = False
            for checkpoint_id, manifest in sorted(manifests.items()):
                partition = multi_key(key, checkpoint_id)
                fp = content_hash(
                    {"policy": policy_fp, "manifest": manifest_hash(manifest), "per_cell": per_cell, "grader": grades_code_version,
                     "grader_model": model_hash}
                )
                outcome = PartitionOutcome(key, checkpoint_id, skipped=True)
                if force or _latest_tags(instance, "metrics", str(partition)).get(FINGERPRINT_TAG) != fp:
                    if manifest.is_local and not local_url:
                        local_url = _start_local_model(stack)
                        config = _run_config(resources, local_base_url=local_url)
                    result = launcher.run("evaluation_job", partition, {FINGERPRINT_TAG: fp, ENDPOINT_TAG: manifest.endpoint}, config)
                    outcome.skipped = False
                    changed_any = True
                    outcome.gate, outcome.gate_failed = _check_summary(result, checkpoint_id)
                    if not result.success:
                        outcome.failed = f"run {result.run_id} failed: {result.failure or 'see it in the UI'}"
                    outcome.model_calls = int(latest_value(instance, "responses", str(partition), "model_calls", 0) or 0)
                    launcher.run("safety_report_job", partition, {}, config)
                metrics_meta = latest_metadata(instance, "metrics", str(partition))
                outcome.under_refusal = _headline(metrics_meta, "under_refusal")
                outcome.harmful_compliance = _headline(metrics_meta, "harmful_compliance")
                outcome.over_refusal = _headline(metrics_meta, "over_refusal")
                outcomes.append(outcome)
            if changed_any or force or not latest_record(instance, "checkpoint_comparison", key):
                launcher.run("comparison_job", key, {}, config)
                launcher.run("reports_job", key, {}, config)

    _report(outcomes, started, repo)


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
    """One local model server for the whole run, shared by every local checkpoint; its URL."""
    from policyeval.runs.local_model import LocalModelServer

    click.echo("starting the local model server ...")
    return stack.enter_context(LocalModelServer()).base_url


def _headline(metadata: dict, name: str) -> str:
    rate, upper = (getattr(metadata.get(f"{name}_{part}"), "value", None) for part in ("rate", "upper"))
    if rate is None:
        return "n/a"
    return f"{rate:.1%} (upper {upper:.1%})"


def _report(outcomes: list[PartitionOutcome], started: float, repo) -> None:
    calls = sum(o.model_calls for o in outcomes)
    for o in outcomes:
        state = "up to date, skipped" if o.skipped else f"{o.model_calls} model calls"
        gate = f", launch gate {o.gate}" if o.gate else ""
        if o.gate_failed:
            gate += " (not approved for launch)"
        failed = f", {o.failed}" if o.failed else ""
        click.echo(f"  {o.policy_key} x {o.checkpoint}: {state}{gate}{failed}; under-refusal {o.under_refusal}, "
                   f"harmful compliance {o.harmful_compliance}, over-refusal {o.over_refusal}")
    data_dir = data_root().resolve()
    click.echo(f"reports: {data_dir / 'reports'} (safety, comparison, policy diff, coverage; HTML and Markdown)")
    click.echo(f"data: {data_dir / 'assets'} (Parquet per asset and partition)")
    click.echo("UI: dagster dev -w workspace.yaml  (runs, lineage, check results)")
    if calls == 0:
        click.echo(f"nothing changed: no model calls ({time.monotonic() - started:.0f}s)")
    else:
        click.echo(f"{calls} model calls in {time.monotonic() - started:.0f}s")
