"""The emerging-risk assets on a real (temporary) instance, over the demo pack and the demo's
red-team and deployment imports: lineage, metadata, the report files, the drafts (which
`policyeval validate --with` accepts), and a malformed import failing with file and line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from click.testing import CliRunner

from .helpers import materialize_checked
from assets.partitions import POLICY_DIM
from pipelines.definitions import EMERGING_ASSETS, build_definitions
from policyeval.cli import cli
from resources import ParquetIOManager, PolicyRepository, RiskImports

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "policies" / "demo"
EXAMPLES = ROOT / "examples"
SELECTION = ["redteam_findings", "deployment_conversations", "emerging_risks", "emerging_risk_report"]


@pytest.fixture
def setup(tmp_path: Path) -> dict:
    policies = tmp_path / "policies"
    shutil.copytree(DEMO, policies / "demo")
    redteam, deployment = tmp_path / "redteam", tmp_path / "deployment"
    shutil.copytree(EXAMPLES / "redteam", redteam)
    shutil.copytree(EXAMPLES / "deployment", deployment)
    data = tmp_path / "data"
    resources = {
        "io_manager": ParquetIOManager(base_dir=str(data)),
        "policy_repository": PolicyRepository(packs_dir=str(policies), snapshot_dir=str(data / "snapshots")),
        "risk_imports": RiskImports(redteam_dir=str(redteam), deployment_dir=str(deployment)),
    }
    return {"resources": resources, "data": data, "redteam": redteam, "deployment": deployment, "policies": policies}


def meta(instance: dg.DagsterInstance, asset: str) -> dict:
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset)), limit=1).records
    assert records, f"{asset} was never materialized"
    return {k: getattr(v, "value", v) for k, v in records[0].asset_materialization.metadata.items()}


def test_emerging_risks_from_the_demo_imports(setup: dict) -> None:
    resources = setup["resources"]
    with dg.instance_for_test() as instance:
        # No policy version registered yet: a clear failure that says what to do
        failed = materialize_checked(EMERGING_ASSETS, instance, resources, SELECTION, None, ok=False)
        messages = [e.step_failure_data.user_failure_data.description for e in failed.get_step_failure_events()]
        assert any("no policy version registered" in m for m in messages)

        versions, problems = resources["policy_repository"].scan()
        assert not problems
        (key,) = versions
        instance.add_dynamic_partitions(POLICY_DIM, [key])
        materialize_checked(EMERGING_ASSETS, instance, resources, SELECTION, None)

        redteam, deployment = meta(instance, "redteam_findings"), meta(instance, "deployment_conversations")
        assert redteam["records"] == 42 and redteam["files"] == 1
        assert deployment["records"] >= 60 and deployment["files"] == 14
        assert "email" in deployment["personal_data_scrubbed"] and "phone" in redteam["personal_data_scrubbed"]

        risks = meta(instance, "emerging_risks")
        assert risks["policy_version"] == key and risks["clusters"] >= 3 and risks["candidates"] >= risks["clustered"] > 0
        assert "emerging\\_" in risks["clusters_table"]  # escaped Markdown
        drafts = sorted(Path(risks["drafts_dir"]).glob("emerging_*.yaml"))
        assert len(drafts) == risks["clusters"] and sorted(risks["drafts"].split(", ")) == [p.name for p in drafts]
        table = pd.read_parquet(risks["path"])
        assert len(table) == redteam["records"] + deployment["records"] and table["candidate"].sum() == risks["candidates"]

        report = meta(instance, "emerging_risk_report")
        html, md = Path(report["html_path"]).read_text(), Path(report["markdown_path"]).read_text()
        assert report["clusters"] == risks["clusters"] and Path(report["html_path"]).parent == setup["data"] / "reports" / "emerging"
        for draft in drafts:
            assert draft.stem.replace("_", "\\_") in md and draft.stem in html
        for secret in ("dana.k@example.org", "jamie.rivera@example.com", "415-555-2671"):
            assert secret not in html and secret not in md and secret not in table.to_json(date_format="iso")

        # lineage: imports -> emerging_risks -> emerging_risk_report
        graph = dg.Definitions(assets=EMERGING_ASSETS, resources=resources).resolve_asset_graph()
        assert graph.get(dg.AssetKey("emerging_risks")).parent_keys == {dg.AssetKey("redteam_findings"), dg.AssetKey("deployment_conversations")}
        assert graph.get(dg.AssetKey("emerging_risk_report")).parent_keys == {dg.AssetKey("emerging_risks")}

        # every draft is accepted by the command a policy writer runs
        for draft in drafts:
            outcome = CliRunner().invoke(cli, ["validate", str(setup["policies"] / "demo"), "--with", str(draft)])
            assert outcome.exit_code == 0, outcome.output

        # A malformed line in an import fails the step with the file and line
        bad = setup["deployment"] / "2026-11-30.jsonl"
        bad.write_text('{"timestamp": "2026-11-30T09:00:00Z", "prompt": "hi", "response": "hello"}\n{"timestamp": "2026-11-30T09:05:00Z"}\n')
        failed = materialize_checked(EMERGING_ASSETS, instance, resources, SELECTION, None, ok=False)
        messages = [e.step_failure_data.user_failure_data.description for e in failed.get_step_failure_events()]
        assert any(f"{bad}:2:" in m for m in messages), messages


def test_the_code_location_has_the_emerging_risk_job() -> None:
    defs = build_definitions()
    job = defs.resolve_job_def("emerging_risks_job")
    assert {k.to_user_string() for k in job.asset_layer.executable_asset_keys} == set(SELECTION)
    assert isinstance(defs.resources["risk_imports"], RiskImports)
    assert Path(defs.resources["risk_imports"].redteam_dir).is_absolute()


def test_policyeval_run_ends_with_the_emerging_risk_report(workspace, monkeypatch, tmp_path: Path) -> None:
    from pipelines.main_job import run

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("POLICYEVAL_DATA_DIR", str(workspace["data"]))
    monkeypatch.setenv("POLICYEVAL_CACHE_DIR", str(workspace["cache"]))
    # the folders come from the one environment reader
    monkeypatch.setenv("POLICYEVAL_REDTEAM_DIR", str(EXAMPLES / "redteam"))
    monkeypatch.setenv("POLICYEVAL_CONVERSATIONS_DIR", str(EXAMPLES / "deployment"))
    args = ["--policies", str(workspace["policies"]), "--checkpoints", str(workspace["checkpoints"]), "--per-cell", "1"]
    first = CliRunner().invoke(run, args, catch_exceptions=False)
    assert first.exit_code == 0, first.output
    line = next(l for l in first.output.splitlines() if l.startswith("emerging risks under"))
    assert "cluster(s)" in line and str(workspace["data"] / "reports" / "emerging" / "emerging_risks.html") in line
    assert (workspace["data"] / "reports" / "emerging" / "emerging_risks.md").exists()
    assert list((workspace["data"] / "emerging" / "drafts").glob("emerging_*.yaml"))
    again = CliRunner().invoke(run, args, catch_exceptions=False)
    assert again.exit_code == 0 and "emerging risks: up to date" in again.output, again.output


def test_empty_imports_make_a_report_that_says_so(setup: dict, tmp_path: Path) -> None:
    resources = {**setup["resources"], "risk_imports": RiskImports(redteam_dir=str(tmp_path / "none"), deployment_dir=str(tmp_path / "none"))}
    with dg.instance_for_test() as instance:
        versions, _ = resources["policy_repository"].scan()
        instance.add_dynamic_partitions(POLICY_DIM, sorted(versions))
        materialize_checked(EMERGING_ASSETS, instance, resources, SELECTION, None)
        assert meta(instance, "redteam_findings")["records"] == 0 and "no .jsonl files" in meta(instance, "redteam_findings")["note"]
        risks, report = meta(instance, "emerging_risks"), meta(instance, "emerging_risk_report")
        assert risks["records"] == 0 and risks["clusters"] == 0 and risks["drafts"] == "none"
        assert "every record is covered" in Path(report["markdown_path"]).read_text()
