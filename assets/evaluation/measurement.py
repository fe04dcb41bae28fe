"""Per policy version x checkpoint: responses, grades and metrics."""

import time

import dagster as dg
import pandas as pd

from policyeval.errors import PolicyevalError
from policyeval.generate import added_items, edit_aware_sample, generate_eval_set
from policyeval.graders import DEFAULT_GRADER, grade_responses, grader_code_version
from policyeval.records import EvalItem, content_hash
from policyeval.reports.summaries import layers_markdown, metrics_markdown, worst_failures_markdown
from policyeval.runs.manifest import manifest_hash
from policyeval.runs.progress import ProgressReporter
from policyeval.runs.reachability import unreachable
from policyeval.safeguards import layer_attribution
from policyeval.safeguards.system import grade_with_safeguards
from policyeval.runs.runner import RunStats, run_checkpoint
from policyeval.markdown import to_markdown_table
from policyeval.stats import metrics_report
from resources import CheckpointRegistry, JudgeResource, PolicyRepository, RunSettings

from assets.evaluation.endpoint_slots import MODEL_ENDPOINTS_POOL, endpoint_slot
from assets.failures import fail_clearly
from assets.partitions import POLICY_DIM, policy_x_checkpoint, split_multi_key

OWNERS = ["team:policy"]


@dg.asset(
    partitions_def=policy_x_checkpoint,
    group_name="evaluation",
    owners=OWNERS,
    kinds={"parquet", "openai"},
    pool=MODEL_ENDPOINTS_POOL,
    description=(
        "The checkpoint's responses to the eval set: a stable stratified sample per category x expected behavior, plus "
        "every item added or changed since the previous version of the pack. "
        "Content-addressed: a request already answered is served from the response cache, never sent again."
    ),
)
@fail_clearly
def responses(
    context: dg.AssetExecutionContext,
    eval_set: pd.DataFrame,
    checkpoint_registry: CheckpointRegistry,
    policy_repository: PolicyRepository,
    run_settings: RunSettings,
) -> dg.Output[pd.DataFrame]:
    policy_key, checkpoint_id = split_multi_key(context)
    manifest = checkpoint_registry.get(checkpoint_id)
    items = [EvalItem.from_row(row) for row in eval_set.to_dict("records")]
    previous = policy_repository.previous_version(context.instance.get_dynamic_partitions(POLICY_DIM), policy_key)
    earlier = generate_eval_set(previous[1]).items if previous else None
    sample = edit_aware_sample(items, run_settings.sample_per_cell, earlier)
    added = len(added_items(items, earlier)) if earlier is not None else 0
    progress = ProgressReporter(len(sample), context.log.info, label=f"{checkpoint_id} responses")
    with endpoint_slot(context, manifest.endpoint):
        asking = time.monotonic()
        rows = run_checkpoint(sample, manifest, run_settings.cache(), progress, base_url=run_settings.base_url_for(manifest))
        model_time = time.monotonic() - asking
    stats = RunStats.from_rows(rows)
    context.log.info(f"{checkpoint_id}: {stats.summary()}")
    broken = unreachable(rows, manifest.endpoint)
    if broken:
        raise PolicyevalError(f"checkpoint {checkpoint_id}: {broken}")
    frame = pd.DataFrame(rows)
    latency = frame.loc[~frame["cached"].astype(bool), "latency_s"].dropna() if len(frame) else pd.Series(dtype=float)
    tokens = {k: int(frame[k].fillna(0).sum()) for k in ("prompt_tokens", "completion_tokens", "total_tokens")} if len(frame) else {}
    return dg.Output(
        frame,
        data_version=dg.DataVersion(content_hash(frame[["item_id", "request_hash", "status", "response_text"]].to_dict("records"))),
        metadata={
            "rows": len(frame),
            "model_calls": stats.sent,
            "http_requests": stats.http_requests,
            "from_cache": stats.from_cache,
            "errors": stats.errors,
            "checkpoint": checkpoint_id,
            "model": manifest.model or "",
            "endpoint": "local" if manifest.is_local else manifest.base_url,
            "manifest_hash": manifest_hash(manifest),
            "sample_per_cell": run_settings.sample_per_cell,
            "previous_policy_version": previous[0] if previous else "(none: first version of this pack)",
            "items_added_since_previous": added,
            "refresh": run_settings.refresh,
            "eval_items": len(items),
            "latency_p50_s": float(latency.quantile(0.5)) if len(latency) else 0.0,
            "latency_p95_s": float(latency.quantile(0.95)) if len(latency) else 0.0,
            # the step's time spent asking the endpoint (cache lookups included); the rest of a run is orchestration
            "model_time_s": round(model_time, 3),
            **{f"openai.{manifest.model}.{k}": v for k, v in tokens.items()},
        },
    )


@dg.asset(
    partitions_def=policy_x_checkpoint,
    group_name="evaluation",
    owners=OWNERS,
    kinds={"parquet", "python"},
    # The default grader's; `build_definitions` replaces it with the configured grader's.
    code_version=grader_code_version(DEFAULT_GRADER),
    # The policy version's learned grader; never materialized means the shipped default.
    ins={"grader_model": dg.AssetIn(metadata={"optional": True})},
    description=(
        "Each response graded (observed behavior) and scored against the expected behavior (outcome). The learned "
        "grader is the policy version's `grader_model` (trained on its gold set, or the shipped default)."
    ),
)
@fail_clearly
def grades(
    context: dg.AssetExecutionContext,
    responses: pd.DataFrame,
    grader_model: pd.DataFrame | None,
    policy_repository: PolicyRepository,
    checkpoint_registry: CheckpointRegistry,
    run_settings: RunSettings,
    judge: JudgeResource,
) -> dg.Output[pd.DataFrame]:
    policy_key, checkpoint_id = split_multi_key(context)
    pack = policy_repository.load(policy_key)
    artifact = trained_artifact(grader_model)
    grader = run_settings.grader_for(pack, judge, artifact=artifact)
    progress = ProgressReporter(len(responses), context.log.info, label=f"grades ({grader.id})")
    frame = grade_responses(responses, grader, pack, progress=lambda done, total: progress({}))
    system: dict[str, object] = {}
    manifest = checkpoint_registry.get(checkpoint_id)
    if manifest.safeguards is not None:
        # A system checkpoint: the filters around the model decide what reaches the user.
        frame = grade_with_safeguards(
            frame, manifest.safeguards, pack, artifact=artifact, judge=judge.grader(pack) if judge.configured else None,
            cache=run_settings.cache(), base_url_for=lambda url: (run_settings.local_base_url or None) if url == "local" else None,
            progress=ProgressReporter(len(frame), context.log.info, label=f"{checkpoint_id} safeguards"))
        layers = layer_attribution(frame)
        system = {
            "safeguards": str(frame["safeguards"].iloc[0]) if len(frame) else "",
            "blocked_by_input_filter": int((frame["blocked_by"] == "input_filter").sum()),
            "blocked_by_output_filter": int((frame["blocked_by"] == "output_filter").sum()),
            "layers": dg.MetadataValue.md(layers_markdown(layers)),
        }
    behaviors = frame.groupby("behavior").size().rename("n").reset_index()
    outcomes = frame.groupby("outcome").size().rename("n").reset_index()
    versioned = ["item_id", "grader_id", "grader_version", "rubric_hash", "behavior"] + (["outcome", "safeguards"] if system else [])
    return dg.Output(
        frame,
        data_version=dg.DataVersion(content_hash(frame[versioned].to_dict("records"))),
        metadata={
            **system,
            "rows": len(frame),
            "grader": f"{grader.id}@{grader.version}",
            "grader_model": str(getattr(grader, "artifact_path", "")) or "not a learned grader",
            "rubric_hashes": ", ".join(sorted(frame["rubric_hash"].dropna().unique())[:5]),
            "policy_hash": pack.content_hash,
            "behaviors": dg.MetadataValue.md(to_markdown_table(behaviors)),
            "outcomes": dg.MetadataValue.md(to_markdown_table(outcomes)),
            "worst_failures": dg.MetadataValue.md(worst_failures_markdown(frame)),
        },
    )


def trained_artifact(grader_model: pd.DataFrame | None) -> str | None:
    """The model file a `grader_model` row names; None for the shipped default."""
    if grader_model is None or grader_model.empty:
        return None
    path = grader_model["artifact_path"].iloc[0]
    return str(path) if isinstance(path, str) and path else None


@dg.asset(
    partitions_def=policy_x_checkpoint,
    group_name="evaluation",
    owners=OWNERS,
    kinds={"parquet", "python"},
    description="Under- and over-refusal rates with Wilson 95% intervals, overall and per domain, category and severity.",
)
@fail_clearly
def metrics(context: dg.AssetExecutionContext, grades: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    report = metrics_report(grades)
    frame = pd.concat([table.assign(level=level) for level, table in report.items()], ignore_index=True)
    overall = report["overall"].iloc[0] if len(report["overall"]) else None
    metadata = {
        "rows": len(frame),
        "overall": dg.MetadataValue.md(metrics_markdown(report["overall"], [])),
        "by_severity": dg.MetadataValue.md(metrics_markdown(report["severity"], ["severity"])),
        "by_domain": dg.MetadataValue.md(metrics_markdown(report["domain"], ["domain_id"])),
        "by_category": dg.MetadataValue.md(metrics_markdown(report["category"], ["category_id"])),
    }
    if overall is not None:
        for name in ("under_refusal", "harmful_compliance", "over_refusal"):
            value = overall[f"{name}_rate"]
            metadata[f"{name}_rate"] = float(value) if value == value and value is not None else None
            metadata[f"{name}_upper"] = float(overall[f"{name}_high"])
    return dg.Output(
        frame,
        data_version=dg.DataVersion(content_hash(frame.astype(str).to_dict("records"))),
        metadata={k: v for k, v in metadata.items() if v is not None},
    )

