"""Scriptable OpenAI-compatible HTTP servers on loopback.

Tests and benchmarks talk to them over real sockets, so retries, timeouts, Retry-After
and malformed bodies are exercised exactly as they would be against a hosted endpoint.
A handler decides each reply; every request is recorded.

`FakeOpenAIServer` is a ThreadingHTTPServer: simple, and a handler may block. For load,
`FastFakeOpenAIServer` answers from one asyncio thread, where a reply's delay is a timer
rather than a sleeping thread, so thousands of requests a second at a 10 ms delay cost
it little; run it in a process of its own (`python -m policyeval.testing.openai_server`)
so that a benchmark measures the client, not the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import ssl as _ssl
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


@dataclass
class Reply:
    """What the server sends back for one request."""

    status: int = 200
    body: Any = None  # dict -> JSON; str/bytes -> sent as is
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


def chat_completion_body(text: str, model: str = "fake-model", prompt_tokens: int = 10, completion_tokens: int = 5) -> dict:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


Handler = Callable[[dict, int], "Reply | str"]


def _default_handler(request: dict, index: int) -> Reply:
    last = request.get("messages", [{}])[-1].get("content", "")
    return Reply(body=chat_completion_body(f"Echo: {last}", model=request.get("model", "fake-model")))


class FakeOpenAIServer:
    """`with FakeOpenAIServer(handler) as server: server.base_url` -> http://127.0.0.1:PORT/v1.

    `handler(request_json, index)` returns a Reply, or a plain string to answer as the
    assistant. `index` counts chat requests from 0. `requests` lists every chat request
    body received; `models` is what GET /v1/models lists.
    """

    def __init__(
        self,
        handler: Handler | None = None,
        models: list[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: _ssl.SSLContext | None = None,
    ):
        self.handler = handler or _default_handler
        self._scheme = "https" if ssl_context is not None else "http"
        self.models = list(models or ["fake-model"])
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        server = self

        class _RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # answer at once: no 40 ms delayed-ACK stalls

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _send(self, reply: Reply) -> None:
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                body = reply.body
                if isinstance(body, (dict, list)):
                    data = json.dumps(body).encode()
                    content_type = "application/json"
                elif isinstance(body, bytes):
                    data, content_type = body, "application/json"
                else:
                    data, content_type = str(body or "").encode(), "application/json"
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(data)))
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test): nothing to do

            def do_GET(self) -> None:  # noqa: N802
                if self.path.rstrip("/").endswith("/models"):
                    self._send(Reply(body={"object": "list", "data": [{"id": m, "object": "model", "owned_by": "fake"} for m in server.models]}))
                else:
                    self._send(Reply(status=404, body={"error": {"message": "not found"}}))

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    request = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    self._send(Reply(status=400, body={"error": {"message": "bad json"}}))
                    return
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(Reply(status=404, body={"error": {"message": "not found"}}))
                    return
                with server._lock:
                    index = len(server.requests)
                    server.requests.append(request)
                reply = server.handler(request, index)
                if isinstance(reply, str):
                    reply = Reply(body=chat_completion_body(reply, model=request.get("model", "fake-model")))
                self._send(reply)

        class _Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256

        self._httpd = _Server((host, port), _RequestHandler)
        if ssl_context is not None:  # https: each accepted socket does its TLS handshake in its own thread
            self._httpd.socket = ssl_context.wrap_socket(self._httpd.socket, server_side=True, do_handshake_on_connect=False)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"{self._scheme}://127.0.0.1:{self.port}/v1"

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    def start(self) -> "FakeOpenAIServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> "FakeOpenAIServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# ---------------------------------------------------------------------------
# A server for load


def _reply_bytes(reply: Reply, keep_alive: bool = True) -> bytes:
    body = reply.body
    if isinstance(body, (dict, list)):
        data = json.dumps(body).encode()
    elif isinstance(body, bytes):
        data = body
    else:
        data = str(body or "").encode()
    reason = _REASONS.get(reply.status, "Status")
    head = [f"HTTP/1.1 {reply.status} {reason}", "Content-Type: application/json", f"Content-Length: {len(data)}"]
    head += [f"{key}: {value}" for key, value in reply.headers.items()]
    if not keep_alive:
        head.append("Connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + data


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 408: "Request Timeout", 409: "Conflict",
            429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


class _FastProtocol(asyncio.Protocol):
    def __init__(self, server: "FastFakeOpenAIServer"):
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server._connections += 1
        self.server.connections_accepted += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._connections -= 1

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            length = 0
            head = bytes(buffer[:end])
            at = head.lower().find(b"\r\ncontent-length:")
            if at >= 0:
                stop = head.find(b"\r\n", at + 2)
                length = int(head[at + 17: stop if stop >= 0 else len(head)].strip() or 0)
            if len(buffer) < end + 4 + length:
                return
            body = bytes(buffer[end + 4: end + 4 + length])
            del buffer[: end + 4 + length]
            request_line = head.split(b"\r\n", 1)[0].split(b" ")
            method = request_line[0].decode("latin-1")
            path = request_line[1].decode("latin-1") if len(request_line) > 1 else "/"
            self.server._dispatch(self.transport, method, path, body)


class FastFakeOpenAIServer:
    """`with FastFakeOpenAIServer(reply=Reply(...)) as server: server.base_url`, for load.

    One asyncio loop on a background thread answers every connection; a reply's
    `delay_s` is a timer, so delays overlap freely however many requests are waiting.
    `reply` (a Reply, or text to answer as the assistant) answers every chat request
    without parsing it, the cheapest path; otherwise `handler(request_json, index)`
    decides, as in `FakeOpenAIServer`. `record=False` keeps only `request_count`, not
    the request bodies. `connections_accepted` counts TCP connections since start.
    """

    def __init__(
        self,
        handler: Handler | None = None,
        *,
        reply: Reply | str | None = None,
        models: list[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        record: bool = True,
    ):
        if isinstance(reply, str):
            reply = Reply(body=chat_completion_body(reply))
        self.handler = handler or (None if reply is not None else _default_handler)
        self.reply = reply
        self._fixed = _reply_bytes(reply) if reply is not None else b""
        self.models = list(models or ["fake-model"])
        self.record = record
        self.requests: list[dict] = []
        self._count = 0
        self._connections = 0
        self.connections_accepted = 0
        self._lock = threading.Lock()
        self._host, self._port = host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "start the server first"
        return self._server.sockets[0].getsockname()[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def request_count(self) -> int:
        with self._lock:
            return self._count

    @property
    def open_connections(self) -> int:
        return self._connections

    def _dispatch(self, transport: asyncio.Transport, method: str, path: str, body: bytes) -> None:
        route = path.split("?", 1)[0].rstrip("/")
        if method == "GET" and route.endswith("/models"):
            models = {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "fake"} for m in self.models]}
            self._send(transport, _reply_bytes(Reply(body=models)), 0.0)
            return
        if method != "POST" or not route.endswith("/chat/completions"):
            self._send(transport, _reply_bytes(Reply(status=404, body={"error": {"message": "not found"}})), 0.0)
            return
        if self.handler is None and not self.record:
            with self._lock:
                self._count += 1
            assert self.reply is not None
            self._send(transport, self._fixed, self.reply.delay_s)
            return
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            self._send(transport, _reply_bytes(Reply(status=400, body={"error": {"message": "bad json"}})), 0.0)
            return
        with self._lock:
            index = self._count
            self._count += 1
            if self.record:
                self.requests.append(request)
        if self.handler is None:
            assert self.reply is not None
            self._send(transport, self._fixed, self.reply.delay_s)
            return
        reply = self.handler(request, index)
        if isinstance(reply, str):
            reply = Reply(body=chat_completion_body(reply, model=request.get("model", "fake-model")))
        self._send(transport, _reply_bytes(reply), reply.delay_s)

    def _send(self, transport: asyncio.Transport, data: bytes, delay_s: float) -> None:
        def write() -> None:
            if not transport.is_closing():
                transport.write(data)

        if delay_s > 0:
            assert self._loop is not None
            self._loop.call_later(delay_s, write)
        else:
            write()

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        try:
            self._server = loop.run_until_complete(
                loop.create_server(lambda: _FastProtocol(self), self._host, self._port, backlog=4096, reuse_address=True)
            )
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            self._server.close()
            loop.run_until_complete(self._server.wait_closed())
            loop.close()

    def start(self) -> "FastFakeOpenAIServer":
        self._thread = threading.Thread(target=self._run, name="fast-fake-openai", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "FastFakeOpenAIServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    """Serve until SIGTERM/SIGINT, printing `PORT n` first: a server process for benchmarks."""
    parser = argparse.ArgumentParser(prog="python -m policyeval.testing.openai_server", description=main.__doc__)
    parser.add_argument("--delay", type=float, default=0.01, help="seconds before each reply (default 0.01)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--text", default="A short benchmark answer.", help="the assistant's answer to every request")
    parser.add_argument("--threaded", action="store_true", help="serve with FakeOpenAIServer (threads) instead")
    args = parser.parse_args(argv)
    body = chat_completion_body(args.text, prompt_tokens=12, completion_tokens=6)
    reply = Reply(body=body, delay_s=args.delay)
    server: FakeOpenAIServer | FastFakeOpenAIServer
    if args.threaded:
        server = FakeOpenAIServer(lambda request, index: reply, port=args.port)
    else:
        server = FastFakeOpenAIServer(reply=reply, port=args.port, record=False)
    stopped = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopped.set())
    with server:
        print(f"PORT {server.port}", flush=True)
        while not stopped.wait(1.0):
            pass
    sys.stdout.flush()


if __name__ == "__main__":
    main()
