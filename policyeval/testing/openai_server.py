"""A scriptable OpenAI-compatible HTTP server on loopback.

Tests and benchmarks talk to it through the real `openai` client over real sockets, so
retries, timeouts, Retry-After and malformed bodies are exercised exactly as they would
be against a hosted endpoint. A handler decides each reply; every request is recorded.
"""

from __future__ import annotations

import json
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

    def __init__(self, handler: Handler | None = None, models: list[str] | None = None, host: str = "127.0.0.1", port: int = 0):
        self.handler = handler or _default_handler
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
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

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
