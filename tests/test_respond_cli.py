"""`policyeval respond`: exit codes, a failed run never replacing a good output, and items
read as a stream with the same checks as `read_items`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from policyeval.cli import main
from policyeval.cli.respond import READ_BATCH_ROWS, Exit, count_items, incomplete_path, iter_items
from policyeval.errors import InputError
from policyeval.generate import read_items
from policyeval.records import ITEM_SCHEMA, EvalItem
from policyeval.tables import read_parquet, write_parquet
from policyeval.testing.openai_server import Reply, chat_completion_body


def write_jsonl(path, n: int, prefix: str = "i"):
    path.write_text("".join(json.dumps({"id": f"{prefix}{k}", "prompt": f"prompt {k}"}) + "\n" for k in range(n)))
    return path


def respond(items, out, base_url, *extra: str) -> int:
    return main(["respond", "--items", str(items), "--base-url", base_url, "--model", "fake-model",
                 "--max-retries", "0", "--no-cache", "--out", str(out), *extra])


def prompt_number(request: dict) -> int:
    return int(request["messages"][-1]["content"].split()[-1])


def test_exit_codes_are_named():
    assert (Exit.OK, Exit.USAGE, Exit.PARTIAL, Exit.KEPT) == (0, 1, 2, 3)
    assert incomplete_path(Path("d/x.parquet")) == Path("d/x.incomplete.parquet")
    assert incomplete_path(Path("d/x")) == Path("d/x.incomplete.parquet")


def test_every_item_answered_exits_0(tmp_path, fake_server, capsys):
    items = write_jsonl(tmp_path / "items.jsonl", 4)
    with fake_server() as server:
        assert respond(items, tmp_path / "out.parquet", server.base_url) == Exit.OK
    assert "4 items: 0 from cache, 4 sent (4 HTTP requests), 0 errors" in capsys.readouterr().out
    assert (read_parquet(tmp_path / "out.parquet")["status"] == "ok").all()


def test_bad_input_exits_1_before_any_request_and_writes_nothing(tmp_path, fake_server, capsys):
    items = write_jsonl(tmp_path / "items.jsonl", 50)
    with items.open("a") as handle:
        handle.write('{"id": "i3", "prompt": "a duplicate, far down the file"}\n')
    with fake_server() as server:
        code = respond(items, tmp_path / "out.parquet", server.base_url)
        assert server.request_count == 0
    assert code == Exit.USAGE
    assert f"{items}:51: duplicate id 'i3' (first on line 4)" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [items]


def test_partial_run_exits_2_and_says_how_many(tmp_path, fake_server, capsys):
    items = write_jsonl(tmp_path / "items.jsonl", 10)

    def handler(request, index):
        if prompt_number(request) % 5 == 0:
            return Reply(status=400, body={"error": {"message": "nope"}})
        return "fine"

    with fake_server(handler) as server:
        code = respond(items, tmp_path / "out.parquet", server.base_url)
    assert code == Exit.PARTIAL
    err = capsys.readouterr().err
    assert "partial: 2 of 10 items are errors (first: BadRequestError: HTTP 400" in err
    frame = read_parquet(tmp_path / "out.parquet")
    assert frame["status"].tolist().count("error") == 2 and len(frame) == 10


def test_a_worse_run_keeps_the_good_output_and_writes_beside_it(tmp_path, fake_server, capsys):
    items = write_jsonl(tmp_path / "items.jsonl", 6)
    out = tmp_path / "out.parquet"
    with fake_server() as server:
        assert respond(items, out, server.base_url) == Exit.OK
    good = out.read_bytes()
    capsys.readouterr()

    # the endpoint is down: nothing good to write over a good table
    code = respond(items, out, "http://127.0.0.1:9/v1")
    assert code == Exit.KEPT
    captured = capsys.readouterr()
    assert out.read_bytes() == good
    beside = tmp_path / "out.incomplete.parquet"
    assert f"-> {beside}" in captured.out
    assert f"kept: {out} has 0 rows with errors, this run 6 (first: APIConnectionError: " in captured.err
    kept = [line for line in captured.err.splitlines() if line.startswith("kept:")]
    assert len(kept) == 1 and kept[0].endswith(f"; this run's rows are in {beside}")
    assert read_parquet(beside)["status"].tolist() == ["error"] * 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["items.jsonl", "out.incomplete.parquet", "out.parquet"]

    # a partial run with fewer errors than the table it would replace does replace it
    shutil.copyfile(beside, out)  # six errors there now
    with fake_server(lambda r, i: Reply(status=400, body={}) if prompt_number(r) == 0 else "ok") as server:
        assert respond(items, out, server.base_url) == Exit.PARTIAL
    assert read_parquet(out)["status"].tolist() == ["error"] + ["ok"] * 5

    # as good as the existing table: replaced
    with fake_server() as server:
        assert respond(items, out, server.base_url) == Exit.OK
    assert (read_parquet(out)["status"] == "ok").all()


def test_an_unreadable_existing_output_is_replaced(tmp_path, fake_server):
    items = write_jsonl(tmp_path / "items.jsonl", 2)
    out = tmp_path / "out.parquet"
    out.write_bytes(b"not parquet")
    code = respond(items, out, "http://127.0.0.1:9/v1")
    assert code == Exit.PARTIAL and read_parquet(out)["status"].tolist() == ["error", "error"]


def test_usage_errors_exit_1(tmp_path, capsys):
    items = write_jsonl(tmp_path / "items.jsonl", 1)
    assert main(["respond", "--items", str(items), "--out", str(tmp_path / "o.parquet")]) == Exit.USAGE
    assert "give --checkpoint MANIFEST" in capsys.readouterr().err
    assert main(["respond", "--items", str(items), "--base-url", "http://h/v1", "--model", "m", "--param", "oops",
                 "--out", str(tmp_path / "o.parquet")]) == Exit.USAGE
    assert main(["respond", "--items", str(items), "--base-url", "http://h/v1", "--model", "m",
                 "--out", str(tmp_path)]) == Exit.USAGE
    assert main(["respond", "--base-url", "http://h/v1", "--model", "m", "--out", str(tmp_path / "o.parquet")]) == Exit.USAGE
    assert not (tmp_path / "o.parquet").exists()


# ---------------------------------------------------------------------------
# Items as a stream


def parquet_items(path, n: int):
    items = [
        EvalItem(item_id=f"p{k}", messages=[{"role": "user", "content": f"prompt {k}"}], category_id="c",
                 expected_behavior="refuse", severity="high", policy_version="1.0.0", note=None if k % 2 else "n")
        for k in range(n)
    ]
    write_parquet([it.to_row() for it in items], path, ITEM_SCHEMA)
    return path


def test_streamed_items_equal_read_items(tmp_path):
    jsonl = tmp_path / "items.jsonl"
    jsonl.write_text(
        '{"id": 1, "prompt": "hi", "category": "c1", "expected": "refuse", "severity": "low"}\n'
        "\n"
        '{"item_id": "b", "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]}\n'
        '{"id": "c", "messages": "[{\\"role\\": \\"user\\", \\"content\\": \\"as text\\"}]", "source": "mine"}\n'
    )
    parquet = parquet_items(tmp_path / "items.parquet", 2 * READ_BATCH_ROWS + 5)
    for path in (jsonl, parquet):
        assert list(iter_items(path)) == read_items(path)
        assert count_items(path) == len(read_items(path))


@pytest.mark.parametrize(
    "name, content",
    [
        ("a.jsonl", '{"id": "a", "prompt": "x"}\n{"id": "a", "prompt": "y"}\n'),
        ("a.jsonl", '{"id": "a", "prompt": "x"}\nnot json\n'),
        ("a.jsonl", '{"id": "a", "messages": [{"role": "assistant", "content": "x"}]}\n'),
        ("a.jsonl", '{"id": "a", "prompt": "x", "severity": 3}\n'),
        ("a.jsonl", ""),
        ("a.txt", "x"),
        ("a.parquet", "not parquet"),
    ],
)
def test_streamed_items_fail_like_read_items(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InputError) as expected:
        read_items(path)
    with pytest.raises(InputError) as streamed:
        count_items(path)
    if name.endswith(".parquet"):  # pyarrow words the cause a little differently per reader
        assert str(streamed.value).split("(")[0] == str(expected.value).split("(")[0]
    else:
        assert str(streamed.value) == str(expected.value)


def test_parquet_item_errors_name_the_row(tmp_path):
    rows = [EvalItem(item_id=f"p{k}", messages=[{"role": "user", "content": "x"}], category_id="c",
                     expected_behavior="comply").to_row() for k in range(3)]
    rows[2]["item_id"] = "p0"
    write_parquet(rows, tmp_path / "dup.parquet", ITEM_SCHEMA)
    rows[2]["item_id"], rows[1]["messages"] = "p2", "{not json"
    write_parquet(rows, tmp_path / "bad.parquet", ITEM_SCHEMA)
    pq.write_table(pq.read_table(tmp_path / "bad.parquet").drop(["messages"]), tmp_path / "nomsg.parquet")
    for name in ("dup.parquet", "bad.parquet", "nomsg.parquet"):
        with pytest.raises(InputError) as expected:
            read_items(tmp_path / name)
        with pytest.raises(InputError) as streamed:
            count_items(tmp_path / name)
        assert str(streamed.value) == str(expected.value)


def test_respond_reads_parquet_items_in_batches(tmp_path, fake_server, monkeypatch):
    from policyeval.cli import respond as respond_module

    monkeypatch.setattr(respond_module, "READ_BATCH_ROWS", 3)
    items = parquet_items(tmp_path / "items.parquet", 10)
    with fake_server() as server:
        assert respond(items, tmp_path / "out.parquet", server.base_url, "--concurrency", "3") == Exit.OK
    frame = read_parquet(tmp_path / "out.parquet")
    assert frame["item_id"].tolist() == [f"p{k}" for k in range(10)]
    assert set(frame["severity"]) == {"high"} and frame["note"].isna().tolist()[:2] == [False, True]
    assert frame["response_text"].tolist()[0] == chat_completion_body("Echo: prompt 0")["choices"][0]["message"]["content"]
