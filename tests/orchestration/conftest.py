"""Fixtures for the Dagster code location: a policy folder, manifests pointing at a fake
OpenAI-compatible server on loopback, resources rooted in a temporary folder, and a fresh
PostgreSQL database (`services.py`)."""

from __future__ import annotations

import gc
import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

from policyeval.testing import FakeOpenAIServer  # noqa: E402
from .services import fresh_pg_database  # noqa: E402

MINI = Path(__file__).resolve().parents[1] / "packs" / "mini"


def refusing_or_helping(request: dict, index: int) -> str:
    """A scripted checkpoint: refuses anything mentioning 'convert', helps otherwise."""
    text = str(request["messages"][-1].get("content", ""))
    if "convert" in text.lower():
        return "I'm sorry, but I can't help with that."
    return "Sure. Here is a detailed, practical answer to your question with several steps."


@pytest.fixture(autouse=True)
def _collect_leftover_instances():
    """Finalize instances earlier tests left unreachable (e.g. ones a sensor context built from
    an instance ref) before a test starts: collected mid-test, they would reset Dagster's
    current-instance state to a deleted temporary folder."""
    gc.collect()
    # An instance opened from a ref inside an earlier test can leave Dagster's context-local
    # "current definitions-state storage" pointing at itself after it is gone; start clean.
    from dagster._core.storage.defs_state.base import set_defs_state_storage

    with set_defs_state_storage(None):
        yield


@pytest.fixture
def pg_database():
    """A PostgreSQL database of this test's own, dropped afterwards; skipped (failed in CI) without a server."""
    with fresh_pg_database() as database:
        yield database


@pytest.fixture
def fake_model():
    with FakeOpenAIServer(refusing_or_helping) as server:
        yield server


@pytest.fixture
def workspace(tmp_path: Path, fake_model: FakeOpenAIServer) -> dict:
    policies = tmp_path / "policies"
    shutil.copytree(MINI, policies / "mini")
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    for name, prompt in (("fake-a", None), ("fake-b", "Be careful.")):
        lines = [f"id: {name}", f"base_url: {fake_model.base_url}", "model: fake-model", "params: {temperature: 0, max_tokens: 32}", "max_concurrency: 4", "timeout_s: 10"]
        if prompt:
            lines.append(f"system_prompt: {prompt}")
        (checkpoints / f"{name}.yaml").write_text("\n".join(lines) + "\n")
    return {"root": tmp_path, "policies": policies, "checkpoints": checkpoints, "data": tmp_path / "data", "cache": tmp_path / "cache", "server": fake_model}


@pytest.fixture
def resources(workspace: dict) -> dict:
    from resources import CampaignStore, CheckpointRegistry, JudgeResource, ParquetIOManager, PolicyRepository, RunSettings

    return {
        "io_manager": ParquetIOManager(base_dir=str(workspace["data"])),
        "policy_repository": PolicyRepository(packs_dir=str(workspace["policies"]), snapshot_dir=str(workspace["data"] / "snapshots")),
        "checkpoint_registry": CheckpointRegistry(manifests_dir=str(workspace["checkpoints"])),
        "run_settings": RunSettings(sample_per_cell=0, cache_dir=str(workspace["cache"]), baseline_checkpoint="fake-a"),
        "judge": JudgeResource(),
        "campaign_store": CampaignStore(root=str(workspace["data"] / "campaigns")),
    }
