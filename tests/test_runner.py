"""The runner against a scriptable OpenAI-compatible server on loopback, over real sockets."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from policyeval.records import ERROR, RESPONSE_SCHEMA, EvalItem
from policyeval.runs.cache import ResponseCache
from policyeval.runs.manifest import CheckpointManifest
from policyeval.runs.runner import (
    RetryPolicy,
    RunStats,
    aiter_responses,
    apply_system_prompt,
    retry_after_s,
    run_checkpoint,
)
from policyeval.testing.openai_server import FakeOpenAIServer, Reply, chat_completion_body

FAST = RetryPolicy(base_delay_s=0.01, max_delay_s=0.05)


def make_items(n: int, prefix: str = "q") -> list[EvalItem]:
    return [
        EvalItem(item_id=f"{prefix}{i}", messages=[{"role": "user", "content": f"prompt {i}"}], category_id="c", expected_behavior="comply")
        for i in range(n)
    ]


def manifest(server: FakeOpenAIServer, **overrides) -> CheckpointManifest:
    fields = {"id": "fake", "base_url": server.base_url, "model": "fake-model", "params": {"temperature": 0, "max_tokens": 32}}
    fields.update(overrides)
    return CheckpointManifest(**fields)


def prompt_of(request: dict) -> str:
    return request["messages"][-1]["content"]


# ---------------------------------------------------------------------------


def test_rows_follow_schema_with_usage_latency_and_order(fake_server):
    def handler(request, index):
        n = int(prompt_of(request).split()[-1])
        time.sleep(0.002 * (10 - n))  # later items answer first
        return Reply(body=chat_completion_body(f"answer {n}", prompt_tokens=7, completion_tokens=3))

    with fake_server(handler) as server:
        rows = run_checkpoint(make_items(10), manifest(server, max_concurrency=10), retry=FAST)

    assert [r["item_id"] for r in rows] == [f"q{i}" for i in range(10)]
    assert [r["response_text"] for r in rows] == [f"answer {i}" for i in range(10)]
    schema_names = set(RESPONSE_SCHEMA.names)
    for row in rows:
        assert set(row) == schema_names
        assert row["status"] == "ok" and row["error"] is None
        assert (row["prompt_tokens"], row["completion_tokens"], row["total_tokens"]) == (7, 3, 10)
        assert row["latency_s"] > 0
        assert row["attempts"] == 1 and row["cached"] is False
        assert row["checkpoint_id"] == "fake" and row["model"] == "fake-model"
        assert row["finish_reason"] == "stop"
        assert len(row["request_hash"]) == 64


def test_params_and_model_are_sent(fake_server):
    with fake_server() as server:
        m = manifest(server, params={"temperature": 0.2, "max_tokens": 16, "seed": 3, "top_k": 5})
        run_checkpoint(make_items(1), m, retry=FAST)
        request = server.requests[0]
    assert request["model"] == "fake-model"
    assert (request["temperature"], request["max_tokens"], request["seed"], request["top_k"]) == (0.2, 16, 3, 5)


def test_system_prompt_prepended_unless_item_has_one(fake_server):
    own = EvalItem(
        item_id="own",
        messages=[{"role": "system", "content": "Item system."}, {"role": "user", "content": "hi"}],
        category_id="c",
        expected_behavior="comply",
    )
    with fake_server() as server:
        run_checkpoint([make_items(1)[0], own], manifest(server, system_prompt="  Be safe.  "), retry=FAST)
        by_prompt = {prompt_of(r): r["messages"] for r in server.requests}
    assert by_prompt["prompt 0"] == [{"role": "system", "content": "Be safe."}, {"role": "user", "content": "prompt 0"}]
    assert by_prompt["hi"] == [{"role": "system", "content": "Item system."}, {"role": "user", "content": "hi"}]
    assert apply_system_prompt([{"role": "user", "content": "x"}], None) == [{"role": "user", "content": "x"}]


def test_429_retry_after_seconds_is_honoured(fake_server):
    seen: list[float] = []

    def handler(request, index):
        seen.append(time.monotonic())
        if index == 0:
            return Reply(status=429, body={"error": {"message": "slow down"}}, headers={"Retry-After": "1"})
        return "ok"

    with fake_server(handler) as server:
        rows = run_checkpoint(make_items(1), manifest(server, max_concurrency=1), retry=FAST)
    assert rows[0]["status"] == "ok" and rows[0]["attempts"] == 2
    gap = seen[1] - seen[0]
    assert 0.95 <= gap < 2.0, gap  # our own backoff would have been <= 0.05 s


def test_429_retry_after_ms_is_honoured(fake_server):
    seen: list[float] = []

    def handler(request, index):
        seen.append(time.monotonic())
        if index == 0:
            return Reply(status=429, body={"error": {"message": "slow down"}}, headers={"retry-after-ms": "300", "Retry-After": "5"})
        return "ok"

    with fake_server(handler) as server:
        rows = run_checkpoint(make_items(1), manifest(server), retry=FAST)
    assert rows[0]["status"] == "ok"
    assert 0.28 <= seen[1] - seen[0] < 1.0


def test_retry_after_parsing():
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert retry_after_s({"Retry-After": "2.5"}) == 2.5
    assert retry_after_s({"retry-after-ms": "150"}) == 0.15
    assert retry_after_s({"Retry-After": format_datetime(now + timedelta(seconds=7), usegmt=True)}, now=now) == 7
    assert retry_after_s({"Retry-After": format_datetime(now - timedelta(seconds=7), usegmt=True)}, now=now) == 0
    assert retry_after_s({"Retry-After": "soon"}) is None
    assert retry_after_s({}) is None


def test_500_then_success(fake_server):
    def handler(request, index):
        return Reply(status=500, body={"error": {"message": "boom"}}) if index == 0 else "fine"

    with fake_server(handler) as server:
        rows = run_checkpoint(make_items(1), manifest(server), retry=FAST)
        assert server.request_count == 2
    assert rows[0]["status"] == "ok" and rows[0]["response_text"] == "fine" and rows[0]["attempts"] == 2


def test_persistent_503_becomes_error_row_with_status(fake_server):
    with fake_server(lambda r, i: Reply(status=503, body={"error": {"message": "overloaded"}})) as server:
        rows = run_checkpoint(make_items(2), manifest(server, max_retries=2), retry=FAST)
        assert server.request_count == 6
    for row in rows:
        assert row["status"] == ERROR and row["response_text"] is None
        assert "HTTP 503" in row["error"] and "InternalServerError" in row["error"]
        assert row["attempts"] == 3
    assert RunStats.from_rows(rows) == RunStats(requested=2, from_cache=0, sent=2, errors=2, http_requests=6)


def test_client_error_is_not_retried(fake_server):
    with fake_server(lambda r, i: Reply(status=400, body={"error": {"message": "bad request"}})) as server:
        rows = run_checkpoint(make_items(1), manifest(server), retry=FAST)
        assert server.request_count == 1
    assert rows[0]["status"] == ERROR and "HTTP 400" in rows[0]["error"] and rows[0]["attempts"] == 1


def test_timeout_is_retried_then_error_row(fake_server):
    with fake_server(lambda r, i: Reply(body=chat_completion_body("late"), delay_s=1.0)) as server:
        rows = run_checkpoint(make_items(1), manifest(server, timeout_s=0.25, max_retries=1), retry=FAST)
        assert server.request_count == 2
    row = rows[0]
    assert row["status"] == ERROR and "APITimeoutError" in row["error"] and row["attempts"] == 2
    assert row["latency_s"] >= 0.5


def test_connection_error_becomes_error_row():
    m = CheckpointManifest(id="down", base_url="http://127.0.0.1:9/v1", model="m", max_retries=1)
    rows = run_checkpoint(make_items(1), m, retry=FAST)
    assert rows[0]["status"] == ERROR and "APIConnectionError" in rows[0]["error"] and rows[0]["attempts"] == 2


@pytest.mark.parametrize("body", ["{not json", {"id": "x", "object": "chat.completion"}, {"choices": []}])
def test_malformed_body_is_error_row_naming_item(body, fake_server):
    with fake_server(lambda r, i: Reply(body=body)) as server:
        rows = run_checkpoint(make_items(1, prefix="item-"), manifest(server), retry=FAST)
        assert server.request_count == 1
    assert rows[0]["status"] == ERROR
    assert "item item-0" in rows[0]["error"] and "malformed response" in rows[0]["error"]


def test_concurrency_is_bounded(fake_server):
    lock = threading.Lock()
    in_flight = 0
    peak = 0

    def handler(request, index):
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        time.sleep(0.1)
        with lock:
            in_flight -= 1
        return "ok"

    with fake_server(handler) as server:
        rows = run_checkpoint(make_items(12), manifest(server, max_concurrency=3), retry=FAST)
    assert all(r["status"] == "ok" for r in rows)
    assert peak == 3


def test_rerun_with_cache_sends_nothing(tmp_path, fake_server):
    cache = ResponseCache(tmp_path / "cache")
    with fake_server() as server:
        first = run_checkpoint(make_items(5), manifest(server), cache=cache, retry=FAST)
        assert server.request_count == 5
        second = run_checkpoint(make_items(5), manifest(server), cache=cache, retry=FAST)
        assert server.request_count == 5
    assert all(r["cached"] and r["attempts"] == 0 for r in second)
    assert [r["response_text"] for r in second] == [r["response_text"] for r in first]
    assert [r["prompt_tokens"] for r in second] == [r["prompt_tokens"] for r in first]
    stats = RunStats.from_rows(second)
    assert (stats.from_cache, stats.sent, stats.http_requests) == (5, 0, 0)
    assert "0 model calls" in stats.summary()


def test_errors_are_not_cached(tmp_path, fake_server):
    cache = ResponseCache(tmp_path / "cache")
    with fake_server(lambda r, i: Reply(status=500, body={"error": {"message": "x"}}) if i == 0 else "ok") as server:
        m = manifest(server, max_retries=0)
        first = run_checkpoint(make_items(1), m, cache=cache, retry=FAST)
        second = run_checkpoint(make_items(1), m, cache=cache, retry=FAST)
        assert server.request_count == 2
    assert first[0]["status"] == ERROR
    assert second[0]["status"] == "ok" and second[0]["cached"] is False


def test_changed_params_or_prompt_miss_the_cache(tmp_path, fake_server):
    cache = ResponseCache(tmp_path / "cache")
    with fake_server() as server:
        run_checkpoint(make_items(2), manifest(server), cache=cache, retry=FAST)
        run_checkpoint(make_items(2), manifest(server, params={"temperature": 1}), cache=cache, retry=FAST)
        run_checkpoint(make_items(2), manifest(server, system_prompt="Be brief."), cache=cache, retry=FAST)
        assert server.request_count == 6


def test_streaming_with_window_keeps_order_and_reports_progress(fake_server):
    seen = []

    def handler(request, index):
        n = int(prompt_of(request).split()[-1])
        time.sleep(0.01 if n % 3 else 0.03)
        return f"a{n}"

    async def collect(server):
        return [
            row["item_id"]
            async for row in aiter_responses(
                make_items(30), manifest(server, max_concurrency=4), progress=seen.append, retry=FAST, window=6
            )
        ]

    with fake_server(handler) as server:
        order = asyncio.run(collect(server))
    assert order == [f"q{i}" for i in range(30)]
    assert len(seen) == 30


def test_run_checkpoint_inside_running_loop(fake_server):
    async def main(server):
        return run_checkpoint(make_items(2), manifest(server), retry=FAST)

    with fake_server() as server:
        rows = asyncio.run(main(server))
    assert [r["status"] for r in rows] == ["ok", "ok"]


def test_missing_api_key_env_is_a_clear_error(monkeypatch, fake_server):
    from policyeval.errors import PolicyevalError

    monkeypatch.delenv("POLICYEVAL_TEST_KEY", raising=False)
    with fake_server() as server:
        m = manifest(server, api_key_env="POLICYEVAL_TEST_KEY")
        with pytest.raises(PolicyevalError, match="POLICYEVAL_TEST_KEY"):
            run_checkpoint(make_items(1), m, retry=FAST)
        monkeypatch.setenv("POLICYEVAL_TEST_KEY", "secret")
        assert run_checkpoint(make_items(1), m, retry=FAST)[0]["status"] == "ok"


# ---------------------------------------------------------------------------
# The `respond` command


def test_cli_respond_keeps_parquet_item_columns(tmp_path, fake_server, capsys):
    from policyeval.cli import main
    from policyeval.records import ITEM_SCHEMA
    from policyeval.tables import read_parquet, write_parquet

    items = [
        EvalItem(item_id=f"p{i}", messages=[{"role": "user", "content": f"prompt {i}"}], category_id="weapons",
                 expected_behavior="refuse", policy_id="pol", policy_version="1.2.0", severity="high")
        for i in range(3)
    ]
    write_parquet([it.to_row() for it in items], tmp_path / "items.parquet", ITEM_SCHEMA)
    with fake_server() as server:
        code = main(["respond", "--items", str(tmp_path / "items.parquet"), "--base-url", server.base_url,
                     "--model", "fake-model", "--checkpoint-id", "fake-ckpt", "--param", "temperature=0",
                     "--param", "max_tokens=16", "--system-prompt", "Be safe.", "--no-cache",
                     "--out", str(tmp_path / "out.parquet")])
        assert server.requests[0]["temperature"] == 0 and server.requests[0]["max_tokens"] == 16
        assert server.requests[0]["messages"][0] == {"role": "system", "content": "Be safe."}
    assert code == 0
    frame = read_parquet(tmp_path / "out.parquet", RESPONSE_SCHEMA)
    assert list(frame.columns) == RESPONSE_SCHEMA.names
    assert frame["item_id"].tolist() == ["p0", "p1", "p2"]
    assert set(frame["policy_version"]) == {"1.2.0"} and set(frame["expected_behavior"]) == {"refuse"}
    assert set(frame["checkpoint_id"]) == {"fake-ckpt"} and set(frame["status"]) == {"ok"}
    assert "3 items: 0 from cache, 3 sent (3 HTTP requests), 0 errors" in capsys.readouterr().out


def test_cli_respond_with_manifest_and_unreachable_endpoint(tmp_path, capsys):
    from policyeval.cli import main
    from policyeval.tables import read_parquet

    (tmp_path / "items.jsonl").write_text('{"id": "a", "prompt": "hi"}\n{"id": "b", "prompt": "there"}\n')
    (tmp_path / "down.yaml").write_text("id: down\nbase_url: http://127.0.0.1:9/v1\nmodel: m\nmax_retries: 3\n")
    code = main(["respond", "--items", str(tmp_path / "items.jsonl"), "--checkpoint", str(tmp_path / "down.yaml"),
                 "--max-retries", "0", "--no-cache", "--out", str(tmp_path / "out.parquet")])
    err = capsys.readouterr().err
    assert code == 2  # partial: written, every item an error
    assert "every request to checkpoint down failed" in err and "APIConnectionError" in err
    frame = read_parquet(tmp_path / "out.parquet")
    assert frame["status"].tolist() == [ERROR, ERROR] and frame["attempts"].tolist() == [1, 1]


def test_cli_respond_rejects_mixing_manifest_and_inline_options(tmp_path, capsys):
    from policyeval.cli import main

    (tmp_path / "items.jsonl").write_text('{"id": "a", "prompt": "hi"}\n')
    code = main(["respond", "--items", str(tmp_path / "items.jsonl"), "--checkpoint", "x.yaml", "--model", "m",
                 "--out", str(tmp_path / "o.parquet")])
    assert code == 1 and "cannot be combined" in capsys.readouterr().err
    assert main(["respond", "--items", str(tmp_path / "items.jsonl"), "--out", str(tmp_path / "o.parquet"),
                 "--concurrency", "0", "--base-url", "http://127.0.0.1:9/v1", "--model", "m"]) == 1
    assert not (tmp_path / "o.parquet").exists()


def test_cli_respond_streams_rows_in_batches_in_item_order(tmp_path, fake_server, monkeypatch, capsys):
    import pyarrow.parquet as pq

    from policyeval.cli import main, respond as respond_module
    from policyeval.tables import read_parquet

    monkeypatch.setattr(respond_module, "WRITE_BATCH_ROWS", 2)
    (tmp_path / "items.jsonl").write_text("".join(f'{{"id": "i{n}", "prompt": "prompt {n}"}}\n' for n in range(5)))

    def handler(request, index):
        n = int(prompt_of(request).split()[-1])
        time.sleep(0.002 * (5 - n))  # later items answer first
        return Reply(body=chat_completion_body(f"answer {n}"))

    with fake_server(handler) as server:
        code = main(["respond", "--items", str(tmp_path / "items.jsonl"), "--base-url", server.base_url,
                     "--model", "fake-model", "--concurrency", "4", "--no-cache", "--out", str(tmp_path / "out.parquet")])
    assert code == 0
    assert pq.ParquetFile(tmp_path / "out.parquet").metadata.num_row_groups == 3  # 2 + 2 + 1 rows
    frame = read_parquet(tmp_path / "out.parquet", RESPONSE_SCHEMA)
    assert list(frame.columns) == RESPONSE_SCHEMA.names
    assert frame["item_id"].tolist() == [f"i{n}" for n in range(5)]
    assert frame["response_text"].tolist() == [f"answer {n}" for n in range(5)]
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    assert "5 items: 0 from cache, 5 sent (5 HTTP requests), 0 errors" in capsys.readouterr().out


def test_parquet_stream_writer_matches_write_parquet_and_is_atomic(tmp_path):
    from policyeval.tables import ParquetStreamWriter, read_parquet, write_parquet

    rows = [{**it.to_row(), "status": "ok", "attempts": i, "latency_s": float("nan") if i == 3 else 0.5}
            for i, it in enumerate(make_items(7))]
    write_parquet(rows, tmp_path / "whole.parquet", RESPONSE_SCHEMA)
    with ParquetStreamWriter(tmp_path / "streamed.parquet", RESPONSE_SCHEMA, batch_size=3) as writer:
        for row in rows:
            writer.write(row)
        assert not (tmp_path / "streamed.parquet").exists()  # nothing in place before a clean close
    assert writer.rows_written == 7
    whole, streamed = read_parquet(tmp_path / "whole.parquet"), read_parquet(tmp_path / "streamed.parquet")
    assert streamed.equals(whole) and streamed["latency_s"].isna().tolist() == [False] * 3 + [True] + [False] * 3

    before = (tmp_path / "streamed.parquet").read_bytes()
    with pytest.raises(RuntimeError, match="boom"):
        with ParquetStreamWriter(tmp_path / "streamed.parquet", RESPONSE_SCHEMA, batch_size=2) as writer:
            writer.write_many(rows)
            raise RuntimeError("boom")
    assert (tmp_path / "streamed.parquet").read_bytes() == before  # the old file survives a failed write
    assert sorted(p.name for p in tmp_path.iterdir()) == ["streamed.parquet", "whole.parquet"]  # no temporaries left

    with ParquetStreamWriter(tmp_path / "empty.parquet", RESPONSE_SCHEMA):
        pass
    assert len(read_parquet(tmp_path / "empty.parquet", RESPONSE_SCHEMA)) == 0


def test_replies_without_an_answer_are_never_answers_and_are_asked_again(fake_server, tmp_path):
    """5% each of `choices: []`, `choices: [{}]`, null content with content_filter and a 200 with an
    error body: none is stored as an answer; a rerun against a healthy server asks exactly those."""
    from policyeval.graders import grade_responses
    from policyeval.graders.refusal_grader import RefusalGrader
    from policyeval.records import CONTENT_FILTERED

    broken = {
        0: {"choices": []},
        1: {"choices": [{}]},
        2: {"choices": [{"index": 0, "message": {"role": "assistant", "content": None}, "finish_reason": "content_filter"}]},
        3: {"error": {"message": "overloaded", "type": "server_error"}},
    }

    def faulty(request, index):
        n = int(prompt_of(request).split()[-1])
        if n % 20 in broken:
            return Reply(body=broken[n % 20])
        return Reply(body=chat_completion_body(f"Here is an answer to {n}."))

    items = make_items(100)
    cache = ResponseCache(tmp_path / "cache")
    with fake_server(faulty) as server:
        rows = run_checkpoint(items, manifest(server), cache, retry=FAST)
    bad = {f"q{n}" for n in range(100) if n % 20 in broken}
    by_id = {r["item_id"]: r for r in rows}
    assert len(rows) == 100 and len(bad) == 20
    for item_id in bad:
        row = by_id[item_id]
        assert row["status"] != "ok" and not row["response_text"], row
        assert row["error"] and item_id in row["error"]
    assert {by_id[f"q{n}"]["status"] for n in range(2, 100, 20)} == {CONTENT_FILTERED}
    assert all(by_id[f"q{n}"]["status"] == ERROR for n in range(100) if n % 20 in (0, 1, 3))
    assert all(r["status"] == "ok" and r["response_text"] for r in rows if r["item_id"] not in bad)

    # graded as errors of the run, never as refusals
    import pandas as pd
    graded = grade_responses(pd.DataFrame(rows), RefusalGrader())
    assert set(graded.loc[graded["item_id"].isin(bad), "behavior"]) == {ERROR}

    # a healthy server on the same URL: exactly the 20 are asked again, the rest come from the cache
    with fake_server(lambda request, index: "Fine now.") as server:
        again = run_checkpoint(items, manifest(server), cache, retry=FAST)
        assert {prompt_of(r) for r in server.requests} == {f"prompt {n}" for n in range(100) if n % 20 in broken}
    assert all(r["status"] == "ok" and r["response_text"] for r in again)
