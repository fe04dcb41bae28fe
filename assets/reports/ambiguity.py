"""The ambiguity queue of a policy version: where its text can be read two ways.

```
grades (every checkpoint of this version and of the previous one) ─┐
annotations (every checkpoint's campaign of this version) ─────────┴─ ambiguity_queue   partition: policy version
```

Three detectors (`policyeval.ambiguity`) feed one queue of clarification items:

* grader disagreement: each checkpoint's grades beside a second grader's verdicts on the
  same responses, computed here (the refusal rules next to the learned grader, or the
  learned grader next to the rules): deterministic, local, no model call;
* annotator split: the `annotations` of each checkpoint's labeling campaign, when one
  exists (a version nobody labels has none, and the detector reports nothing);
* grade flip: the grades of the previous registered version of the same pack, whose
  partitions are declared inputs like the policy-diff report's (only the run knows which
  version is previous, so every version's grades are declared; only two are read).

The asset's table is the queue, one row per clarification item with counts and item ids
(no model output); the report (HTML and Markdown under `<data dir>/reports/ambiguity/`)
shows the boundary text, the examples under the configured redaction and who said what.
"""

from typing import Any

import dagster as dg
import pandas as pd

from policyeval.ambiguity import (
    ANNOTATOR_SPLIT,
    DEFAULT_MIN_MAJORITY,
    GRADE_FLIP,
    GRADER_DISAGREEMENT,
    Signal,
    annotator_splits,
    build_queue,
    grade_flips,
    grader_disagreements,
    queue_table,
    second_grader_name,
    second_opinion,
)
from policyeval.reports.ambiguity import ambiguity_document, queue_markdown
from policyeval.stats import graded_by_checkpoint
from resources import CampaignStore, ParquetIOManager, PolicyRepository

from assets.failures import fail_clearly
from assets.materializations import latest_value
from assets.partitions import BY_POLICY_VERSION, CHECKPOINT_DIM, POLICY_DIM, key_dimension, policy_versions, safe_key
from assets.reports.comparison import FOLLOWS_ANY
from assets.reports.reports import EVERY_VERSION, grades_of, headline, redaction, reports_dir, run_lineage, write_report

OWNERS = ["team:policy"]


class AmbiguityConfig(dg.Config):
    """How the queue is shown and when annotators split.

    `redact`: as every report (`none`, `truncate`, `redact`; redact hides responses a verdict
    calls an under-refusal or harmful). `max_items` items are shown in full in the report
    (the table holds all), each with `examples_per_item` responses. An item is an annotator
    split when fewer than `min_majority` of its labels agree."""

    redact: str = "truncate"
    max_items: int = 25
    examples_per_item: int = 3
    min_majority: float = DEFAULT_MIN_MAJORITY


@dg.asset(
    automation_condition=FOLLOWS_ANY,
    partitions_def=policy_versions,
    ins={
        "grades": dg.AssetIn(partition_mapping=EVERY_VERSION, metadata={"all_partitions": True}),
        "annotations": dg.AssetIn(partition_mapping=BY_POLICY_VERSION, metadata={"all_partitions": True}),
    },
    group_name="reports",
    owners=OWNERS,
    kinds={"parquet", "html", "markdown"},
    description=(
        "Policy-clarification items: responses two graders judge differently, annotators split on, or whose grade flips "
        "from the previous policy version with the response unchanged, grouped by category and boundary line, with the "
        "boundary text, examples and who said what; sorted by how many measurements each touches."
    ),
)
@fail_clearly
def ambiguity_queue(
    context: dg.AssetExecutionContext,
    config: AmbiguityConfig,
    grades: dict[str, pd.DataFrame],
    annotations: dict[str, pd.DataFrame],
    policy_repository: PolicyRepository,
    campaign_store: CampaignStore,
    io_manager: dg.ResourceParam[ParquetIOManager],
) -> dg.Output[pd.DataFrame]:
    policy_key = context.partition_key
    pack = policy_repository.load(policy_key)
    current = graded_by_checkpoint(grades_of(grades, policy_key).values())
    if not current:
        raise dg.Failure(f"no graded checkpoint under {policy_key} yet: materialize grades first")
    signals: list[Signal] = []
    scanned: dict[str, str] = {}

    # Graders: each checkpoint's grades beside a second grader on the same responses.
    second_graders = set()
    for _, frame in sorted(current.items()):
        second_graders.add(second_grader_name(frame))
        signals += grader_disagreements(pd.concat([frame, second_opinion(frame, pack)], ignore_index=True), policy_key)
    responses = sum(len(f) for f in current.values())
    scanned[GRADER_DISAGREEMENT] = f"{responses} responses of {len(current)} checkpoint(s), second opinion: {', '.join(sorted(second_graders))}"

    # Annotators: every campaign of this version that has labels.
    campaigns = 0
    for key, labels in sorted(annotations.items(), key=lambda kv: str(kv[0])):
        checkpoint = key_dimension(key, CHECKPOINT_DIM)
        if not campaign_store.has_campaign(policy_key, checkpoint):
            context.log.warning(f"annotations exist for {checkpoint} but its campaign folder is gone; left out")
            continue
        campaigns += 1
        signals += annotator_splits(campaign_store.load(policy_key, checkpoint), labels, policy_key, config.min_majority)
    scanned[ANNOTATOR_SPLIT] = f"{campaigns} campaign(s) with labels" if campaigns else "no campaign has labels yet"

    # Flips: the previous version of the pack, on the checkpoints graded under both.
    previous = policy_repository.previous_version(context.instance.get_dynamic_partitions(POLICY_DIM), policy_key)
    metadata: dict[str, Any] = {}
    if previous is None:
        scanned[GRADE_FLIP] = "first registered version of this pack: nothing to compare"
        metadata["previous_version"] = "(none: first registered version of this pack)"
    else:
        old_key = previous[0]
        old = graded_by_checkpoint(grades_of(grades, old_key).values())
        both = sorted(set(old) & set(current))
        scan = grade_flips(pd.concat([old[c] for c in both], ignore_index=True) if both else pd.DataFrame(),
                           pd.concat([current[c] for c in both], ignore_index=True) if both else pd.DataFrame(),
                           old_key, policy_key)
        signals += scan.signals
        scanned[GRADE_FLIP] = (f"{scan.compared} unchanged responses against {old_key} on {len(both)} checkpoint(s)"
                               + (f"; {scan.grader_changed} graded by another grader version, not compared" if scan.grader_changed else ""))
        metadata.update({"previous_version": old_key, "flips_compared": scan.compared,
                         "flips_not_compared_grader_changed": scan.grader_changed})

    queue = build_queue(signals, pack)
    lineage = run_lineage(context, eval_set_hash=latest_value(context.instance, "eval_set", policy_key, "eval_set_hash"))
    document = ambiguity_document(queue, policy_version=policy_key, redact=redaction(config), limit=config.max_items,
                                  examples_per_item=config.examples_per_item, scanned=scanned, lineage=lineage)
    paths = write_report(document, reports_dir(io_manager) / "ambiguity", safe_key(policy_key))
    counts = {kind: sum(1 for s in signals if s.kind == kind) for kind in (GRADER_DISAGREEMENT, ANNOTATOR_SPLIT, GRADE_FLIP)}
    return dg.Output(
        queue_table(queue),
        metadata={
            "summary": dg.MetadataValue.md(headline(document, "Summary")),
            "clarification_items": len(queue),
            **{f"{kind}s": n for kind, n in counts.items()},
            "measurements_touched": len({m for item in queue for m in item.measurements}),
            "top_items": dg.MetadataValue.md(queue_markdown(queue)),
            "campaigns": campaigns,
            **metadata,
            "redaction": config.redact,
            **paths,
        },
    )
