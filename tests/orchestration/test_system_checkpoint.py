"""A system checkpoint in the pipeline: the bare model, the same model behind a guard, compared.

fake-a is the bare model. fake-guarded asks the same endpoint the same way (so its answers
come from the response cache: no model call) and puts a guard model (another loopback
server, Llama Guard format) on the output and a safeguard-format guard on the input. The
grades, the metrics, the checkpoint comparison and the comparison report must attribute
each item to a layer, with intervals, and read the same from the Parquet Dagster wrote.
"""

from __future__ import annotations

import json

import dagster as dg
import pandas as pd
import pytest

from .helpers import latest_materialized, materialize_checked
from assets.partitions import CHECKPOINT_DIM, POLICY_DIM, multi_key
from pipelines.definitions import ALL_ASSETS, REPORT_ASSETS
from policyeval.records import COMPLY
from policyeval.testing import FakeOpenAIServer
from resources import CampaignStore, DeploymentLogs

ASSETS = [*ALL_ASSETS, *REPORT_ASSETS]


def output_guard(request: dict, index: int) -> str:
    """Flags every helpful answer ("Sure. ..."): the fake model's compliance."""
    conversation = request["messages"][-1]["content"].split("<BEGIN CONVERSATION>")[-1]
    return "unsafe\nS1" if "Agent: Sure." in conversation else "safe"


def input_guard(request: dict, index: int) -> str:
    """Flags requests that mention an automatic rifle; says nothing useful about one kind of prompt."""
    shown = request["messages"][-1]["content"].lower()
    if "unread" in shown:
        return "I am not sure."
    return json.dumps({"violation": int("automatic" in shown), "policy_category": "weapons"})


@pytest.fixture
def system(workspace):
    with FakeOpenAIServer(output_guard) as out_guard, FakeOpenAIServer(input_guard) as in_guard:
        (workspace["checkpoints"] / "fake-guarded.yaml").write_text(
            f"id: fake-guarded\nbase_url: {workspace['server'].base_url}\nmodel: fake-model\n"
            "params: {temperature: 0, max_tokens: 32}\nmax_concurrency: 4\ntimeout_s: 10\n"
            "safeguards:\n"
            f"  input: {{classifier: guard, base_url: '{in_guard.base_url}', model: guard-in, format: safeguard}}\n"
            f"  output: {{classifier: guard, base_url: '{out_guard.base_url}', model: guard-out, format: llama_guard}}\n")
        yield {"in": in_guard, "out": out_guard}


def test_a_system_checkpoint_is_measured_beside_its_bare_model(workspace, resources, system) -> None:
    resources = {**resources, "campaign_store": CampaignStore(root=str(workspace["data"] / "campaigns")),
                 "deployment_logs": DeploymentLogs(root=str(workspace["root"] / "deployment"), baseline_checkpoint="fake-a")}
    repo = resources["policy_repository"]
    with dg.instance_for_test() as instance:
        (key,) = sorted(repo.scan()[0])
        instance.add_dynamic_partitions(POLICY_DIM, [key])
        instance.add_dynamic_partitions(CHECKPOINT_DIM, ["fake-a", "fake-guarded"])
        materialize_checked(ASSETS, instance, resources, ["policy", "eval_set"], key)
        materialize_checked(ASSETS, instance, resources, ["responses", "grades", "metrics"], multi_key(key, "fake-a"))
        calls = workspace["server"].request_count
        materialize_checked(ASSETS, instance, resources, ["responses", "grades", "metrics"], multi_key(key, "fake-guarded"))
        assert workspace["server"].request_count == calls  # the system's model answers came from the cache
        guarded = multi_key(key, "fake-guarded")
        assert latest_materialized(instance, "responses", guarded).asset_materialization.metadata["model_calls"].value == 0

        grades = pd.read_parquet(resources["io_manager"].path_for(dg.AssetKey("grades"), guarded))
        n = len(grades)
        assert system["in"].request_count == n and system["out"].request_count == n
        # the layer of every item, read back from the Parquet Dagster wrote
        assert grades["layer"].notna().all() and set(grades["input_filter"]) <= {"flagged", "passed", "unparseable"}
        for row in grades.to_dict("records"):
            prompt = row["prompt_text"].lower()
            if "unread" in prompt:
                assert row["input_filter"] == "unparseable"  # a failed filter lets the request through ...
            if "automatic" in prompt:
                assert row["layer"] == "input_filter" and row["blocked_by"] == "input_filter"
            elif row["behavior"] == COMPLY:
                assert row["layer"] == "output_filter"  # ... and the output guard catches every compliance
            else:
                assert row["layer"] == "model"
        assert not (grades["layer"] == "through").any()
        assert (grades["input_filter"] == "unparseable").any() and (grades["layer"] == "input_filter").any()
        assert ((grades["layer"] == "input_filter") & (grades["expected_behavior"] == COMPLY)).any()  # over-blocking

        metadata = latest_materialized(instance, "grades", guarded).asset_materialization.metadata
        assert metadata["blocked_by_input_filter"].value == int((grades["blocked_by"] == "input_filter").sum()) > 0
        assert "caught by the output filter" in metadata["layers"].value
        assert "guard:guard-in" in metadata["safeguards"].value and "guard:guard-out" in metadata["safeguards"].value

        # the system's rates: nothing harmful got through; benign answers were over-blocked
        rates = pd.read_parquet(resources["io_manager"].path_for(dg.AssetKey("metrics"), guarded))
        overall = rates[rates["level"] == "overall"].iloc[0]
        assert overall["under_refusal_k"] == 0
        bare = pd.read_parquet(resources["io_manager"].path_for(dg.AssetKey("grades"), multi_key(key, "fake-a")))
        assert "layer" not in bare.columns  # a bare model's grades keep their schema

        materialize_checked(ASSETS, instance, resources, ["checkpoint_comparison", "comparison_report"], key)
        comparison = latest_materialized(instance, "checkpoint_comparison", key).asset_materialization.metadata
        layers = comparison["layers"].value
        assert "fake-a" in layers and "fake-guarded" in layers and "got through" in layers
        report = latest_materialized(instance, "comparison_report", key).asset_materialization.metadata
        markdown = open(report["markdown_path/fake-guarded"].value, encoding="utf-8").read()
        html = open(report["html_path/fake-guarded"].value, encoding="utf-8").read()
        assert "Safeguard layers" in markdown and "Safeguard layers" in html
        benign = int((grades["expected_behavior"] == COMPLY).sum())
        assert f"/{benign})" in markdown.split("## Safeguard layers")[1].split("## By category")[0]
