"""The runner's HTTP transports over real loopback sockets: the lean HTTP/1.1 client
(keep-alive per slot, chunked and compressed bodies, connections the server closes,
https) and the openai fallback, which must describe every failure in the same words."""

from __future__ import annotations

import gzip
import json
import logging
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable

import pytest

from policyeval.records import ERROR, EvalItem
from policyeval.runs.cache import ResponseCache
from policyeval.runs.manifest import CheckpointManifest
from policyeval.runs.runner import OPENAI, WIRE, RetryPolicy, _uses_proxy, run_checkpoint
from policyeval.testing.openai_server import FakeOpenAIServer, FastFakeOpenAIServer, Reply, chat_completion_body

FAST = RetryPolicy(base_delay_s=0.01, max_delay_s=0.05)


def make_items(n: int) -> list[EvalItem]:
    return [
        EvalItem(item_id=f"q{i}", messages=[{"role": "user", "content": f"prompt {i}"}], category_id="c", expected_behavior="comply")
        for i in range(n)
    ]


def manifest(base_url: str, **overrides) -> CheckpointManifest:
    fields = {"id": "fake", "base_url": base_url, "model": "fake-model", "params": {"max_tokens": 8}}
    fields.update(overrides)
    return CheckpointManifest(**fields)


def answer_bytes(text: str) -> bytes:
    return json.dumps(chat_completion_body(text)).encode()


class RawServer:
    """A loopback server that answers each request with scripted raw bytes.

    `script(index, raw_request)` returns (bytes to send, then close the connection?);
    None as the bytes closes the connection without answering. `parts` splits each
    answer into that many writes, so the client must parse a response that arrives in
    pieces.
    """

    def __init__(self, script: Callable[[int, bytes], tuple[bytes | None, bool]], parts: int = 1):
        self.script = script
        self.parts = parts
        self.accepted = 0
        self.raw_requests: list[bytes] = []
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}/v1"

    def __enter__(self) -> "RawServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop = True
        self._sock.close()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self.accepted += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, _, rest = buffer.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(rest) < length:
                    data = conn.recv(65536)
                    if not data:
                        return
                    rest += data
                request, buffer = head + b"\r\n\r\n" + rest[:length], rest[length:]
                with self._lock:
                    index = len(self.raw_requests)
                    self.raw_requests.append(request)
                reply, close = self.script(index, request)
                if reply is None:
                    return
                step = max(1, len(reply) // self.parts)
                for start in range(0, len(reply), step):
                    conn.sendall(reply[start:start + step])
                    if self.parts > 1:
                        time.sleep(0.002)
                if close:
                    return


def http_reply(body: bytes, *headers: str, status: str = "200 OK", length: bool = True) -> bytes:
    lines = [f"HTTP/1.1 {status}", "Content-Type: application/json", *headers]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


# ---------------------------------------------------------------------------
# Wire format


def prompt_number(request: bytes) -> int:
    return int(json.loads(request.partition(b"\r\n\r\n")[2])["messages"][-1]["content"].split()[-1])


def test_chunked_body_with_extensions_and_trailers_arriving_in_pieces():
    def script(index, request):
        body = answer_bytes(f"chunked {prompt_number(request)}")
        chunks = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(body[i:i + 7]), body[i:i + 7]) for i in range(0, len(body), 7))
        return http_reply(chunks + b"0\r\nX-Trailer: yes\r\n\r\n", "Transfer-Encoding: chunked", length=False), False

    with RawServer(script, parts=5) as server:
        rows = run_checkpoint(make_items(3), manifest(server.base_url, max_concurrency=1), retry=FAST)
        assert server.accepted == 1  # one keep-alive connection for all three
    assert [r["response_text"] for r in rows] == ["chunked 0", "chunked 1", "chunked 2"]
    assert all(r["attempts"] == 1 for r in rows)


def test_gzip_body_and_body_read_until_close():
    def script(index, request):
        n = prompt_number(request)
        if n % 2 == 0:
            return http_reply(gzip.compress(answer_bytes(f"zipped {n}")), "Content-Encoding: gzip"), False
        return http_reply(answer_bytes(f"until close {n}"), length=False), True

    with RawServer(script) as server:
        rows = run_checkpoint(make_items(4), manifest(server.base_url, max_concurrency=1), retry=FAST)
    assert [r["response_text"] for r in rows] == ["zipped 0", "until close 1", "zipped 2", "until close 3"]
    assert all(r["status"] == "ok" and r["attempts"] == 1 for r in rows)


def test_connection_close_replies_open_a_new_connection_each_time():
    with RawServer(lambda index, request: (http_reply(answer_bytes("bye"), "Connection: close"), True)) as server:
        rows = run_checkpoint(make_items(5), manifest(server.base_url, max_concurrency=2), retry=FAST)
        assert server.accepted == 5
    assert all(r["status"] == "ok" and r["attempts"] == 1 for r in rows)


def test_idle_connection_closed_by_the_server_is_replaced_without_costing_an_attempt():
    """A keep-alive connection the server dropped while idle (its request never answered)
    is retried once on a fresh connection, silently: it is not a failed attempt."""
    def script(index, request):
        if index == 1:
            return None, True  # the second request, on the reused connection: closed unanswered
        return http_reply(answer_bytes(f"answer {index}")), False

    with RawServer(script) as server:
        rows = run_checkpoint(make_items(3), manifest(server.base_url, max_concurrency=1, max_retries=0), retry=FAST)
        assert server.accepted == 2
    assert [r["status"] for r in rows] == ["ok", "ok", "ok"]
    assert [r["attempts"] for r in rows] == [1, 1, 1]


def test_a_reply_that_is_not_http_is_a_retried_connection_error():
    replies = iter([(b"SSH-2.0-OpenSSH\r\n\r\n", True)])

    def script(index, request):
        return next(replies, (http_reply(answer_bytes("fine")), False))

    with RawServer(script) as server:
        rows = run_checkpoint(make_items(1), manifest(server.base_url, max_retries=2), retry=FAST)
    assert rows[0]["status"] == "ok" and rows[0]["attempts"] == 2


def test_each_slot_keeps_one_connection_however_many_items():
    with FastFakeOpenAIServer(reply=Reply(body=chat_completion_body("hi"), delay_s=0.002)) as server:
        rows = run_checkpoint(make_items(300), manifest(server.base_url, max_concurrency=6), retry=FAST)
        assert server.request_count == 300
        assert server.connections_accepted <= 6
    assert all(r["status"] == "ok" and r["attempts"] == 1 for r in rows)


def test_fast_server_handler_records_and_lists_models():
    import urllib.request

    with FastFakeOpenAIServer(models=["m1", "m2"]) as server:
        rows = run_checkpoint(make_items(3), manifest(server.base_url), retry=FAST)
        with urllib.request.urlopen(f"{server.base_url}/models") as response:
            listed = [m["id"] for m in json.loads(response.read())["data"]]
        assert sorted(r["messages"][-1]["content"] for r in server.requests) == ["prompt 0", "prompt 1", "prompt 2"]
    assert [r["response_text"] for r in rows] == ["Echo: prompt 0", "Echo: prompt 1", "Echo: prompt 2"]
    assert listed == ["m1", "m2"]


# ---------------------------------------------------------------------------
# The API key


def test_api_key_is_sent_and_written_nowhere(tmp_path, monkeypatch, caplog):
    from policyeval.records import RESPONSE_SCHEMA
    from policyeval.tables import write_parquet

    secret = "sk-test-DO-NOT-WRITE-4242"
    monkeypatch.setenv("POLICYEVAL_TEST_SECRET", secret)

    def script(index, request):
        if index == 0:
            return http_reply(b'{"error": {"message": "invalid key"}}', status="401 Unauthorized"), False
        if index == 1:
            return http_reply(b'{"error": {"message": "busy"}}', "Retry-After: 0", status="503 Service Unavailable"), False
        return http_reply(answer_bytes("fine")), False

    cache = ResponseCache(tmp_path / "cache")
    caplog.set_level(logging.DEBUG)
    with RawServer(script) as server:
        rows = run_checkpoint(make_items(3), manifest(server.base_url, api_key_env="POLICYEVAL_TEST_SECRET", max_concurrency=1),
                              cache, retry=FAST)
        assert all(f"Authorization: Bearer {secret}".encode() in raw for raw in server.raw_requests)
    assert rows[0]["status"] == ERROR and "AuthenticationError: HTTP 401" in rows[0]["error"]
    write_parquet(rows, tmp_path / "out.parquet", RESPONSE_SCHEMA)
    cache.close()
    assert all(secret not in repr(value) for row in rows for value in row.values())
    assert secret not in caplog.text
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


# ---------------------------------------------------------------------------
# The same words from both transports


def _error_of(transport: str, handler, **overrides) -> dict:
    with FakeOpenAIServer(handler) as server:
        return run_checkpoint(make_items(1), manifest(server.base_url, **overrides), retry=FAST, transport=transport)[0]


@pytest.mark.parametrize(
    "reply, fragment",
    [
        (Reply(status=503, body={"error": {"message": "overloaded"}}), "InternalServerError: HTTP 503: Error code: 503 - overloaded"),
        (Reply(status=400, body={"error": {"message": "bad request"}}), "BadRequestError: HTTP 400: Error code: 400 - bad request"),
        (Reply(status=429, body={"error": {"message": "slow"}}, headers={"Retry-After": "0"}), "RateLimitError: HTTP 429"),
        (Reply(status=418, body="<html>teapot</html>"), "APIStatusError: HTTP 418: Error code: 418"),
        (Reply(body={"choices": []}), "malformed response (no choices in the body)"),
        (Reply(body="{not json"), "malformed response (invalid JSON"),
    ],
)
def test_both_transports_describe_failures_alike(reply, fragment):
    errors = {t: _error_of(t, lambda r, i: reply, max_retries=1) for t in (WIRE, OPENAI)}
    assert errors[WIRE]["error"] == errors[OPENAI]["error"]
    assert fragment in errors[WIRE]["error"]
    assert errors[WIRE]["attempts"] == errors[OPENAI]["attempts"]


def test_both_transports_time_out_and_fail_to_connect_alike():
    slow = lambda r, i: Reply(body=chat_completion_body("late"), delay_s=0.6)  # noqa: E731
    for transport in (WIRE, OPENAI):
        row = _error_of(transport, slow, timeout_s=0.2, max_retries=0)
        assert row["error"] == "APITimeoutError: no answer within 0.2s", transport
        down = run_checkpoint(make_items(1), manifest("http://127.0.0.1:9/v1", max_retries=0), retry=FAST, transport=transport)[0]
        assert down["error"].startswith("APIConnectionError: "), (transport, down["error"])


def test_both_transports_give_the_same_rows(tmp_path):
    with FakeOpenAIServer() as server:
        rows = {t: run_checkpoint(make_items(4), manifest(server.base_url), retry=FAST, transport=t) for t in (WIRE, OPENAI)}
        bodies = server.requests
    strip = lambda row: {k: v for k, v in row.items() if k != "latency_s"}  # noqa: E731
    assert [strip(r) for r in rows[WIRE]] == [strip(r) for r in rows[OPENAI]]
    key = lambda body: body["messages"][-1]["content"]  # noqa: E731
    assert sorted(bodies[:4], key=key) == sorted(bodies[4:], key=key)  # the same bodies, whichever client sent them


def test_proxy_environment_selects_the_openai_transport(monkeypatch):
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert not _uses_proxy("https://api.example.com/v1")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    assert _uses_proxy("https://api.example.com/v1")
    assert not _uses_proxy("http://api.example.com/v1")  # only https is proxied
    monkeypatch.setenv("NO_PROXY", "api.example.com")
    assert not _uses_proxy("https://api.example.com/v1")


# ---------------------------------------------------------------------------
# https


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    try:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
             "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
            check=True, capture_output=True, timeout=60,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"openssl could not make a test certificate: {exc}")
    return cert, key


def test_https_endpoint_with_verified_certificate(certificate, monkeypatch):
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    with FakeOpenAIServer(ssl_context=context) as server:
        assert server.base_url.startswith("https://")
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        untrusted = run_checkpoint(make_items(1), manifest(server.base_url, max_retries=0), retry=FAST, transport=WIRE)
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        rows = run_checkpoint(make_items(3), manifest(server.base_url, max_concurrency=2), retry=FAST, transport=WIRE)
    assert untrusted[0]["status"] == ERROR and "CERTIFICATE_VERIFY_FAILED" in untrusted[0]["error"]
    assert [r["response_text"] for r in rows] == ["Echo: prompt 0", "Echo: prompt 1", "Echo: prompt 2"]


def test_status_error_names_are_openais():
    import openai

    from policyeval.runs.runner import _status_error_name

    expected = {400: openai.BadRequestError, 401: openai.AuthenticationError, 403: openai.PermissionDeniedError,
                404: openai.NotFoundError, 409: openai.ConflictError, 422: openai.UnprocessableEntityError,
                429: openai.RateLimitError, 500: openai.InternalServerError, 503: openai.InternalServerError,
                418: openai.APIStatusError}
    assert {status: _status_error_name(status) for status in expected} == {s: c.__name__ for s, c in expected.items()}


def test_respond_starts_without_importing_openai():
    """openai is imported only when a proxy needs it: it is half a second of every command's start."""
    import sys

    code = "import sys, policyeval.cli.respond; print(sorted(m for m in ('openai', 'httpx', 'httpx2') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
    assert out.strip() == "[]"


def test_an_api_key_a_header_cannot_carry_is_a_clear_error(monkeypatch):
    from policyeval.errors import PolicyevalError

    monkeypatch.setenv("POLICYEVAL_TEST_SECRET", "sk-abc\r\nX-Injected: 1")
    with FastFakeOpenAIServer() as server:
        with pytest.raises(PolicyevalError, match="cannot carry") as raised:
            run_checkpoint(make_items(1), manifest(server.base_url, api_key_env="POLICYEVAL_TEST_SECRET"), retry=FAST)
        assert server.request_count == 0
    assert "sk-abc" not in str(raised.value)
