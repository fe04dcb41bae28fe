"""Emerging risks, as assets: the two imports, the analysis, and its report.

```
redteam_findings ─────────┐
                          ├─ emerging_risks ─ emerging_risk_report
deployment_conversations ─┘
```

The imports read the folders of `resources.RiskImports` (scrubbed of personal data as they
are read; a malformed line fails the step with its file and line). `emerging_risks`
screens every record against the taxonomy of one policy version (the resource's, else the
most recently registered), clusters what no category covers, and writes one draft category
per cluster under `<data dir>/emerging/drafts/`; its table is every record with its reason
and cluster. `emerging_risk_report` renders the clusters as HTML and Markdown under
`<data dir>/reports/emerging/`. No model endpoint is called: the only grader is the
learned one, run in process.
"""


import hashlib
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from policyeval.emerging import UNCLUSTERED, EmergingRisks, analyze, finish, read_deployment, read_redteam, records_from_frame, records_to_frame
from policyeval.emerging.analysis import SCREEN_COLUMNS
from policyeval.emerging.imports import jsonl_files, placeholder_counts
from policyeval.markdown import to_markdown_table
from policyeval.records import content_hash
from policyeval.reports.emerging import emerging_document
from policyeval.tables import atomic_write_bytes
from resources import ParquetIOManager, PolicyRepository, RiskImports
from resources.environment import EMERGING, REPORTS, data_root

from assets.failures import fail_clearly
from assets.partitions import POLICY_DIM

GROUP = "emerging_risks"
OWNERS = ["team:policy"]
CODE_VERSION = "emerging-1"  # screening, clustering, summaries and drafts


def imports_fingerprint(risk_imports: RiskImports, policy_key: str) -> str:
    """What the analysis is made from: the policy version, every import file's bytes, the settings and the code."""
    def files(folder: Path) -> list[tuple[str, str]]:
        return [(p.name, hashlib.sha256(p.read_bytes()).hexdigest()) for p in jsonl_files(folder)]

    return content_hash({"policy": policy_key, "redteam": files(risk_imports.redteam_root()),
                         "deployment": files(risk_imports.deployment_root()), "settings": repr(risk_imports.settings()),
                         "code": CODE_VERSION})


def screening_policy(instance: dg.DagsterInstance, risk_imports: RiskImports) -> str:
    """The policy version records are screened against: configured, else the most recently registered."""
    if risk_imports.policy_version:
        return risk_imports.policy_version
    registered = instance.get_dynamic_partitions(POLICY_DIM)
    if not registered:
        raise dg.Failure("no policy version registered: run `policyeval run` (or the policy sensor) first, "
                         "or set risk_imports.policy_version")
    return registered[-1]


@dg.asset(
    group_name=GROUP, owners=OWNERS, kinds={"pandas"}, code_version=CODE_VERSION,
    description="Red-team findings (JSON Lines, every *.jsonl of risk_imports.redteam_dir), scrubbed of personal data as they are read.",
)
@fail_clearly
def redteam_findings(risk_imports: RiskImports) -> dg.Output[pd.DataFrame]:
    folder = risk_imports.redteam_root()
    imported = read_redteam(folder)
    return _import_output(imported, folder)


@dg.asset(
    group_name=GROUP, owners=OWNERS, kinds={"pandas"}, code_version=CODE_VERSION,
    description="Sampled deployment conversations (every *.jsonl of risk_imports.deployment_dir), scrubbed of personal data as they are read.",
)
@fail_clearly
def deployment_conversations(risk_imports: RiskImports) -> dg.Output[pd.DataFrame]:
    folder = risk_imports.deployment_root()
    imported = read_deployment(folder)
    return _import_output(imported, folder)


def _import_output(imported, folder: Path) -> dg.Output[pd.DataFrame]:
    frame = records_to_frame(imported.records)
    return dg.Output(frame, metadata={
        "folder": dg.MetadataValue.path(str(folder)),
        "files": len(imported.files),
        "records": len(frame),
        "personal_data_scrubbed": ", ".join(f"{n} {k.lower()}" for k, n in imported.scrubbed.items()) or "none found",
        "note": "" if imported.files else f"no .jsonl files in {folder}",
    })


@dg.asset(
    group_name=GROUP, owners=OWNERS, kinds={"pandas", "yaml"}, code_version=CODE_VERSION,
    description=(
        "Every imported record screened against a policy version's taxonomy: outside it (no measured category, not "
        "similar to any) and risky (a finding, an unknown label, a harmful grade, or like such a finding) records are "
        "clustered; each cluster gets a draft category (status: draft) under <data dir>/emerging/drafts/."
    ),
)
@fail_clearly
def emerging_risks(
    context: dg.AssetExecutionContext,
    redteam_findings: pd.DataFrame,
    deployment_conversations: pd.DataFrame,
    risk_imports: RiskImports,
    policy_repository: PolicyRepository,
    io_manager: dg.ResourceParam[ParquetIOManager],
) -> dg.Output[pd.DataFrame]:
    policy_key = screening_policy(context.instance, risk_imports)
    pack = policy_repository.load(policy_key)
    records = records_from_frame(redteam_findings) + records_from_frame(deployment_conversations)
    result = analyze(records, pack, policy_key, risk_imports.settings())
    folder = drafts_dir(io_manager)
    written = write_drafts(result, folder)
    counts = result.counts()
    return dg.Output(result.screened[SCREEN_COLUMNS], metadata={
        **{name: int(n) for name, n in counts.items()},
        "policy_version": policy_key,
        "clusters_table": dg.MetadataValue.md(cluster_table(result)),
        "k": result.k,
        "silhouette": result.silhouette if result.silhouette is not None else "n/a",
        "similarity_threshold": risk_imports.similarity_threshold,
        "drafts_dir": dg.MetadataValue.path(str(folder)),
        "drafts": ", ".join(p.name for p in written) or "none",
    })


@dg.asset(
    group_name="reports", owners=OWNERS, kinds={"html", "markdown"}, code_version=CODE_VERSION,
    description=(
        "The emerging-risk report: clusters of what no category covers, with counts per ISO week and day, redacted "
        "representative examples, the nearest existing category and the draft category each proposes (HTML and Markdown)."
    ),
)
@fail_clearly
def emerging_risk_report(
    context: dg.AssetExecutionContext,
    emerging_risks: pd.DataFrame,
    risk_imports: RiskImports,
    policy_repository: PolicyRepository,
    io_manager: dg.ResourceParam[ParquetIOManager],
) -> dg.MaterializeResult:
    upstream = _latest_metadata(context.instance, "emerging_risks")
    policy_key = str(upstream.get("policy_version") or screening_policy(context.instance, risk_imports))
    pack = policy_repository.load(policy_key)
    k = upstream.get("k", 0)
    silhouette = upstream.get("silhouette")
    result = finish(emerging_risks, pack, policy_key, risk_imports.settings(), int(k or 0),
                    silhouette if isinstance(silhouette, float) else None, placeholder_counts(emerging_risks))
    folder = drafts_dir(io_manager)
    document = emerging_document(
        result, drafts_dir=str(folder), pack_dir=str(Path(pack.root)) if pack.root else "<pack>",
        sources={"red-team": str(risk_imports.redteam_root()), "deployment": str(risk_imports.deployment_root())},
        lineage={"run_id": context.run.run_id},
    )
    report_dir = data_root(io_manager.base_dir) / REPORTS / "emerging"
    html_path, md_path = report_dir / "emerging_risks.html", report_dir / "emerging_risks.md"
    atomic_write_bytes(html_path, document.to_html().encode("utf-8"))
    atomic_write_bytes(md_path, document.to_markdown().encode("utf-8"))
    return dg.MaterializeResult(metadata={
        "summary": dg.MetadataValue.md(cluster_table(result)),
        "clusters": len(result.summaries),
        "candidates": int(result.counts()["candidates"]),
        "policy_version": policy_key,
        "html_path": dg.MetadataValue.path(str(html_path)),
        "markdown_path": dg.MetadataValue.path(str(md_path)),
        "drafts_dir": dg.MetadataValue.path(str(folder)),
    })


def drafts_dir(io_manager: ParquetIOManager) -> Path:
    return data_root(io_manager.base_dir) / EMERGING / "drafts"


def write_drafts(result: EmergingRisks, folder: Path) -> list[Path]:
    """The drafts of this analysis, replacing the previous analysis's (a cluster that is gone leaves no draft)."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("emerging_*.yaml"):
        old.unlink()
    written = []
    for draft in result.drafts:
        path = folder / draft.file_name
        atomic_write_bytes(path, draft.yaml_text.encode("utf-8"))
        written.append(path)
    return written


def cluster_table(result: EmergingRisks) -> str:
    """The clusters as an escaped Markdown table, for the UI."""
    drafts = {d.cluster: d.category_id for d in result.drafts}
    rows = [[s.cluster + 1, drafts.get(s.cluster, ""), s.size, s.redteam, s.deployment,
             f"{s.first_seen} to {s.last_seen}" if s.first_seen else "undated", ", ".join(s.terms[:5])]
            for s in result.summaries]
    if not rows:
        unclustered = int((result.candidates["cluster"] == UNCLUSTERED).sum()) if len(result.candidates) else 0
        return f"No cluster ({result.counts()['candidates']} candidates outside the taxonomy, {unclustered} unclustered)."
    return to_markdown_table(pd.DataFrame(rows, columns=["#", "draft category", "records", "red-team", "deployment", "seen", "terms"]))


def _latest_metadata(instance: dg.DagsterInstance, asset: str) -> dict[str, Any]:
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset)), limit=1).records
    if not records or not records[0].asset_materialization:
        return {}
    return {k: getattr(v, "value", v) for k, v in records[0].asset_materialization.metadata.items()}
