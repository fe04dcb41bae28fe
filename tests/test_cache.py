"""The response cache: keys, atomic entries, and resuming a run that was killed midway."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from policyeval.records import normalize_messages
from policyeval.runs.cache import ResponseCache, request_key
from policyeval.tables import read_parquet
from policyeval.testing.openai_server import FakeOpenAIServer, Reply, chat_completion_body

REPO = Path(__file__).resolve().parents[1]
MESSAGES = [{"role": "user", "content": "hello"}]


def test_request_key_is_stable_and_sensitive():
    key = request_key("http://h/v1", "m", MESSAGES, {"temperature": 0})
    assert len(key) == 64
    assert key == request_key("http://h/v1/", "m", [{"role": "USER", "content": " hello "}], {"temperature": 0})
    assert key != request_key("http://h/v1", "m", MESSAGES, {"temperature": 1})
    assert key != request_key("http://h/v1", "m2", MESSAGES, {"temperature": 0})
    assert key != request_key("http://other/v1", "m", MESSAGES, {"temperature": 0})
    assert key != request_key("http://h/v1", "m", [{"role": "system", "content": "s"}, *MESSAGES], {"temperature": 0})


def test_put_get_round_trip_and_layout(tmp_path):
    cache = ResponseCache(tmp_path)
    key = request_key("local", "m", MESSAGES, {})
    assert cache.get(key) is None
    record = {"response_text": "hi", "prompt_tokens": 3}
    cache.put(key, record)
    assert cache.get(key) == record
    assert key in cache
    path = tmp_path / key[:2] / f"{key}.json"
    assert path.is_file()
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left behind
    cache.put(key, {"response_text": "again"})
    assert ResponseCache(tmp_path).get(key) == {"response_text": "again"}


def test_unreadable_entries_are_misses(tmp_path):
    cache = ResponseCache(tmp_path)
    key = "ab" + "0" * 62
    path = cache.path_for(key)
    path.parent.mkdir(parents=True)
    path.write_text('{"format": 1, "key": "ab00', encoding="utf-8")  # torn write
    assert cache.get(key) is None
    path.write_text(json.dumps({"format": 1, "key": "other", "record": {}}), encoding="utf-8")
    assert cache.get(key) is None


def test_stale_temporaries_are_ignored_and_removable(tmp_path):
    cache = ResponseCache(tmp_path)
    key = "cd" + "1" * 62
    tmp = tmp_path / "cd" / f".{key}.123.1.tmp"
    tmp.parent.mkdir(parents=True)
    tmp.write_text('{"format": 1, "key"', encoding="utf-8")
    assert cache.get(key) is None
    assert cache.remove_stale_temporaries() == 1
    assert not tmp.exists()


# ---------------------------------------------------------------------------
# Resume after a killed run


def _respond(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    env.pop("POLICYEVAL_CACHE_DIR", None)
    return subprocess.Popen(
        [sys.executable, "-m", "policyeval", "respond", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _entries(root: Path) -> dict[str, dict]:
    """Every finished entry under the cache root; fails on any file that looks like an entry but is not one."""
    entries = {}
    for path in root.rglob("*"):
        if path.is_dir():
            continue
        if path.name.endswith(".json"):
            entry = json.loads(path.read_text(encoding="utf-8"))  # must parse completely
            assert entry["key"] == path.stem and path.parent.name == path.stem[:2]
            assert isinstance(entry["record"]["response_text"], str)
            entries[path.stem] = entry
        else:
            assert path.name.startswith(".") and path.name.endswith(".tmp"), path
    return entries


def test_killed_run_resumes_asking_only_for_the_rest(tmp_path):
    n = 40
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps({"id": f"it{i}", "prompt": f"prompt {i}"}) + "\n" for i in range(n)))
    cache_dir = tmp_path / "cache"
    out = tmp_path / "out.parquet"
    delay = {"s": 0.15}

    def handler(request, index):
        text = request["messages"][-1]["content"]
        return Reply(body=chat_completion_body(f"answer to {text}"), delay_s=delay["s"])

    server = FakeOpenAIServer(handler)
    with server:
        args = [
            "--items", str(items), "--base-url", server.base_url, "--model", "fake-model",
            "--concurrency", "4", "--param", "max_tokens=8", "--cache", str(cache_dir), "--out", str(out),
        ]
        first = _respond(args, tmp_path)
        deadline = time.monotonic() + 60
        while len(list(cache_dir.glob("*/*.json"))) < 8:
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "no responses reached the cache"
            time.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=30)
        assert first.returncode == -signal.SIGKILL

        assert not out.exists()  # no partial output table
        answered = _entries(cache_dir)
        assert 8 <= len(answered) < n
        keys = {
            f"prompt {i}": request_key(server.base_url, "fake-model", normalize_messages([{"role": "user", "content": f"prompt {i}"}]), {"max_tokens": 8})
            for i in range(n)
        }
        cached_prompts = {p for p, k in keys.items() if k in answered}
        assert len(cached_prompts) == len(answered)

        server.requests.clear()  # the killed client's requests have all arrived; none is in flight
        delay["s"] = 0.0
        second = _respond(args, tmp_path)
        stdout, stderr = second.communicate(timeout=120)
        assert second.returncode == 0, stderr
        asked = [r["messages"][-1]["content"] for r in server.requests]

    assert sorted(asked) == sorted(set(keys) - cached_prompts)  # only the unanswered, each once
    frame = read_parquet(out)
    assert sorted(frame["item_id"]) == sorted(f"it{i}" for i in range(n))
    assert frame["item_id"].tolist() == [f"it{i}" for i in range(n)]  # item order
    assert (frame["status"] == "ok").all()
    assert int(frame["cached"].sum()) == len(answered)
    assert all(t == f"answer to {p}" for t, p in zip(frame["response_text"], frame["prompt_text"]))
    assert f"{len(answered)} from cache" in stdout
    assert len(_entries(cache_dir)) == n


def test_cli_rerun_reports_zero_model_calls(tmp_path):
    from policyeval.cli import main

    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps({"id": f"x{i}", "messages": [{"role": "user", "content": f"m {i}"}]}) + "\n" for i in range(3)))
    server = FakeOpenAIServer()
    with server:
        argv = ["respond", "--items", str(items), "--base-url", server.base_url, "--model", "fake-model",
                "--cache", str(tmp_path / "c"), "--out", str(tmp_path / "o.parquet")]
        assert main(argv) == 0
        assert server.request_count == 3
        assert main(argv) == 0
        assert server.request_count == 3
    frame = read_parquet(tmp_path / "o.parquet")
    assert frame["cached"].all() and frame["checkpoint_id"].eq("fake-model").all()


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"prompt": "no id"}', "needs an 'id'"),
        ('{"id": "a", "text": "x"}', "needs 'messages' or a non-empty 'prompt'"),
        ("not json", "invalid JSON"),
    ],
)
def test_cli_jsonl_errors_name_the_line(tmp_path, capsys, line, message):
    from policyeval.cli import main

    items = tmp_path / "items.jsonl"
    items.write_text('{"id": "ok", "prompt": "fine"}\n' + line + "\n")
    code = main(["respond", "--items", str(items), "--base-url", "http://127.0.0.1:9/v1", "--model", "m",
                 "--no-cache", "--out", str(tmp_path / "o.parquet")])
    err = capsys.readouterr().err
    assert code == 1
    assert f"{items}:2:" in err and message in err


def test_outputs_follow_the_umask_and_stale_temporaries_are_cleaned(tmp_path) -> None:
    import os
    import time

    from policyeval.tables import STALE_TEMP_S, atomic_write_bytes

    stale = tmp_path / ".table.parquet.abc123.tmp"
    stale.write_bytes(b"left by a killed write")
    old = time.time() - STALE_TEMP_S - 60
    os.utime(stale, (old, old))
    fresh = tmp_path / ".table.parquet.def456.tmp"  # another writer's, in progress
    fresh.write_bytes(b"")
    previous = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "table.parquet", b"data")
    finally:
        os.umask(previous)
    assert (tmp_path / "table.parquet").stat().st_mode & 0o777 == 0o644
    assert not stale.exists() and fresh.exists()
