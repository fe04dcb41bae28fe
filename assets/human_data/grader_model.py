"""The learned grader a policy version's grades use: the shipped default, or one trained on
the policy version's gold set.

```
responses ─ labeling_campaign ─ annotations ─ gold_set ─ grader_model ─ grades ─ metrics
```

`grader_model` depends on `gold_set`, so new adjudicated labels make it stale, and
retraining it makes `grades` and everything after it stale: the lineage shows which gold
version trained the grader behind every number. The loop from grades back to labels is
not in the graph: campaigns sample `responses`, stratified by the shipped grader. The gold
set is read through the campaign store (``gold_set`` writes a file, not an output), which
also lets a policy version nobody has labeled yet use the shipped default with no human-data
asset materialized. `grader_model_sensor` (and `policyeval run`) retrain when a `gold_set`
materialization carries a gold version the grader was not trained on.

The data version is the artifact's content hash, so the same gold trains the same bytes
and nothing downstream changes, while new labels retrain, regrade and recompute the metrics.
"""

from typing import Any

import dagster as dg
import pandas as pd

from policyeval.graders import grader_code_version
from policyeval.graders.gold_training import (
    GOLD_TRAINING_VERSION,
    GoldColumns,
    GoldSplit,
    gold_examples,
    heldout_validation,
    train_from_gold,
    untrainable_reason,
)
from policyeval.graders.learned import LearnedGrader
from policyeval.reports.summaries import graders_markdown
from policyeval.validation import GraderValidation
from resources import CampaignStore, PolicyRepository

from assets.failures import fail_clearly
from assets.human_data.campaigns import GROUP, OWNERS, gold_set
from assets.partitions import policy_versions

SHIPPED = "shipped"
GOLD = "gold"
GRADER_MODEL_COLUMNS = ["policy_version", "source", "artifact_path", "artifact_hash", "grader_version", "gold_version",
                        "gold_rows", "train_rows", "heldout_rows", "note"]


@dg.asset(
    partitions_def=policy_versions,
    deps=[gold_set],
    group_name=GROUP,
    owners=OWNERS,
    kinds={"json", "scikitlearn"},
    code_version=f"gold-training-{GOLD_TRAINING_VERSION}+{grader_code_version('learned')}",
    description=(
        "The learned grader `grades` uses for this policy version. With enough gold labels in the campaign store (at "
        "least 20, two behaviors): trained on the shipped labeled rows plus 70% of the gold items (by item-id hash), "
        "scored on the other 30% beside the shipped default; otherwise the shipped default. Its data version is the model's content hash."
    ),
)
@fail_clearly
def grader_model(context: dg.AssetExecutionContext, policy_repository: PolicyRepository,
                 campaign_store: CampaignStore) -> dg.Output[pd.DataFrame]:
    policy_key = context.partition_key
    pack = policy_repository.load(policy_key)
    gold_path = campaign_store.gold_path(policy_key)
    gold = campaign_store.load_gold(policy_key)
    examples = gold_examples(gold, GoldColumns.of_gold_set(gold), source=gold_path) if gold is not None else []
    gold_version = str(gold["gold_version"].iloc[0]) if gold is not None and len(gold) else ""
    reason = untrainable_reason(examples) if gold is not None else f"no gold set for this policy version (expected {gold_path})"
    row: dict[str, Any] = {"policy_version": policy_key, "gold_version": gold_version, "gold_rows": len(examples)}
    metadata: dict[str, Any] = {"gold_rows": len(examples), "gold_version": gold_version,
                                "gold_path": dg.MetadataValue.path(str(gold_path)),
                                "gold_set": dg.MetadataValue.asset(dg.AssetKey("gold_set"))}

    if reason is not None:
        default = LearnedGrader()
        digest = default.artifact.content_hash
        row.update(source=SHIPPED, artifact_path="", artifact_hash=digest, grader_version=default.version,
                   train_rows=0, heldout_rows=0, note=f"shipped default: {reason}")
        metadata.update(source=SHIPPED, note=row["note"], artifact_path=dg.MetadataValue.path(str(default.artifact_path)))
    else:
        artifact, heldout = train_from_gold(examples, provenance={"policy_version": policy_key, "gold_version": gold_version})
        digest = artifact.content_hash
        path = campaign_store.grader_model_path(policy_key, digest)
        if not path.is_file():
            artifact.write(path)
        info = artifact.provenance["gold"]
        trained = LearnedGrader(path, pack=pack)
        row.update(source=GOLD, artifact_path=str(path), artifact_hash=digest, grader_version=trained.version,
                   train_rows=info["train_rows"], heldout_rows=info["heldout_rows"],
                   note=f"trained on the shipped rows and {info['train_rows']} gold rows (x{info['weight']})")
        metadata.update(source=GOLD, note=row["note"], artifact_path=dg.MetadataValue.path(str(path)),
                        train_rows=info["train_rows"], heldout_rows=info["heldout_rows"],
                        heldout_fraction=GoldSplit().heldout_fraction, gold_weight=info["weight"])
        if heldout:
            labels = list(pack.behaviors)
            mine = heldout_validation(heldout, trained, labels, pack)
            shipped = heldout_validation(heldout, LearnedGrader(pack=pack), labels, pack)
            metadata.update(_figures("heldout", mine))
            metadata.update(_figures("shipped_heldout", shipped))
            metadata["heldout_vs_shipped"] = dg.MetadataValue.md(graders_markdown(
                {f"trained learned@{trained.version}": mine, f"shipped learned@{LearnedGrader().version}": shipped}))
    metadata.update(artifact_hash=digest, grader_version=row["grader_version"])
    return dg.Output(
        pd.DataFrame([row], columns=GRADER_MODEL_COLUMNS),
        data_version=dg.DataVersion(digest),
        metadata={k: v for k, v in metadata.items() if v is not None},
    )


def _figures(prefix: str, validation: GraderValidation) -> dict[str, Any]:
    return {f"{prefix}_items": validation.n_items, f"{prefix}_accuracy": validation.accuracy,
            f"{prefix}_kappa": validation.cohen_kappa}
