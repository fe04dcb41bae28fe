"""The response cache: keys, atomic entries, and resuming a run that was killed midway."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from policyeval.records import normalize_messages
from policyeval.runs.cache import DB_NAME, ResponseCache, request_key
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
    assert list(tmp_path.iterdir()) == []  # a lookup creates nothing
    record = {"response_text": "hi", "prompt_tokens": 3}
    cache.put(key, record)
    assert cache.get(key) == record
    assert key in cache and cache.count() == 1
    cache.put(key, {"response_text": "again"})
    assert ResponseCache(tmp_path).get(key) == {"response_text": "again"}
    cache.put_many([(f"{i:064x}", {"response_text": f"r{i}"}) for i in range(500)])
    assert cache.count() == 501 and cache.get(f"{7:064x}") == {"response_text": "r7"}
    cache.close()
    # a handful of files however many answers: the database and, while open, its WAL
    assert {p.name for p in tmp_path.iterdir()} <= {DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm"}
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_unreadable_entries_are_misses(tmp_path):
    cache = ResponseCache(tmp_path)
    key = "ab" + "0" * 62
    cache.put(key, {"response_text": "x"})
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        db.execute("UPDATE responses SET record = '{torn' WHERE key = ?", (key,))
    assert ResponseCache(tmp_path).get(key) is None


def test_earlier_per_file_entries_are_read_and_copied_in(tmp_path):
    """A cache folder of the earlier layout (one JSON file per answer) keeps serving."""
    key, other, torn = ("ab" + "1" * 62), ("cd" + "2" * 62), ("ef" + "3" * 62)
    for k, text in ((key, "old answer"), (other, "another")):
        path = tmp_path / k[:2] / f"{k}.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"format": 1, "key": k, "record": {"response_text": text}}), encoding="utf-8")
    (tmp_path / "ef").mkdir()
    (tmp_path / "ef" / f"{torn}.json").write_text('{"format": 1, "key": "ef33', encoding="utf-8")  # torn write
    (tmp_path / "ab" / f"{'ab' + '9' * 62}.json").write_text(json.dumps({"format": 1, "key": "other", "record": {}}))

    cache = ResponseCache(tmp_path)
    assert cache.path_for(key) == tmp_path / "ab" / f"{key}.json"
    assert cache.get(key) == {"response_text": "old answer"}
    assert cache.get(torn) is None and cache.get("ab" + "9" * 62) is None  # torn or mislabeled: misses
    assert cache.count() == 1  # the hit was copied into the database ...
    (tmp_path / "ab" / f"{key}.json").unlink()
    assert ResponseCache(tmp_path).get(key) == {"response_text": "old answer"}  # ... and is served from there
    assert ResponseCache(tmp_path).get(other) == {"response_text": "another"}


def test_stale_temporaries_are_ignored_and_removable(tmp_path):
    cache = ResponseCache(tmp_path)
    key = "cd" + "1" * 62
    tmp = tmp_path / "cd" / f".{key}.123.1.tmp"
    tmp.parent.mkdir(parents=True)
    tmp.write_text('{"format": 1, "key"', encoding="utf-8")
    assert cache.get(key) is None
    assert cache.remove_stale_temporaries() == 1
    assert not tmp.exists()


WRITER = r"""
import sys
from policyeval.runs.cache import ResponseCache
cache = ResponseCache(sys.argv[1])
worker, n = sys.argv[2], int(sys.argv[3])
for i in range(n):
    cache.put(f"{worker}-{i}", {"response_text": f"{worker} {i}"})
    if i % 10 == 0:
        cache.get(f"{worker}-{i // 2}")
"""


def test_several_processes_write_at_once(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), f"w{w}", "150"], env=env, stderr=subprocess.PIPE, text=True)
        for w in range(4)
    ]
    for writer in writers:
        _, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
    cache = ResponseCache(tmp_path)
    assert cache.count() == 600
    assert all(cache.get(f"w{w}-{i}") == {"response_text": f"w{w} {i}"} for w in range(4) for i in range(150))


def test_a_stored_answer_survives_the_process_being_killed(tmp_path):
    """`put` returns only once the answer is committed: SIGKILL right after it loses nothing."""
    script = (
        "import os, signal, sys\n"
        "from policyeval.runs.cache import ResponseCache\n"
        "cache = ResponseCache(sys.argv[1])\n"
        "cache.put('k1', {'response_text': 'one'})\n"
        "cache.put_many([('k2', {'response_text': 'two'}), ('k3', {'response_text': 'three'})])\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    process = subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=env, timeout=60)
    assert process.returncode == -signal.SIGKILL
    cache = ResponseCache(tmp_path)
    assert [cache.get(k) for k in ("k1", "k2", "k3")] == [{"response_text": t} for t in ("one", "two", "three")]


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
    """Every answer committed to the cache database (read as another process would)."""
    if not (root / DB_NAME).exists():
        return {}
    db = sqlite3.connect(root / DB_NAME, timeout=30)
    try:
        rows = db.execute("SELECT key, record FROM responses").fetchall()
    except sqlite3.OperationalError:  # created, its table not yet
        return {}
    finally:
        db.close()
    entries = {key: json.loads(record) for key, record in rows}  # each must parse completely
    assert all(isinstance(record["response_text"], str) for record in entries.values())
    return entries


def test_killed_run_resumes_asking_only_for_the_rest(tmp_path):
    """SIGKILL mid-run, then a re-run: every answer received before the kill is kept, the
    re-run asks each missing item once, and it re-asks at most `--concurrency` requests
    that the killed run had already sent (those in flight when it died)."""
    n, concurrency = 60, 4
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
            "--concurrency", str(concurrency), "--param", "max_tokens=8", "--cache", str(cache_dir), "--out", str(out),
        ]
        first = _respond(args, tmp_path)
        deadline = time.monotonic() + 60
        while len(_entries(cache_dir)) < 8:
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
        sent_before_kill = {r["messages"][-1]["content"] for r in server.requests}

        time.sleep(delay["s"] + 0.1)  # the killed client's last requests finish on the server
        server.requests.clear()
        delay["s"] = 0.0
        second = _respond(args, tmp_path)
        stdout, stderr = second.communicate(timeout=120)
        assert second.returncode == 0, stderr
        asked = [r["messages"][-1]["content"] for r in server.requests]

    assert sorted(asked) == sorted(set(keys) - cached_prompts)  # only the unanswered, each once
    re_asked = set(asked) & sent_before_kill
    assert len(re_asked) <= concurrency, re_asked
    frame = read_parquet(out)
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
