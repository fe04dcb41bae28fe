"""Run a checkpoint over eval items: bounded concurrency, retries, a resumable cache.

Requests go over a lean HTTP/1.1 client on asyncio (`_WireClient`): a fixed set of
slots, one per allowed request in flight, each owning its own keep-alive connection.
Taking a slot is a pop from a free list, so the per-request cost does not grow with the
concurrency (a shared connection pool scans its connections on every request, which made
a run slower at 256 in flight than at 32). Endpoints behind an HTTP proxy (the usual
`HTTPS_PROXY`/`NO_PROXY` variables) go through `openai.AsyncOpenAI` instead, which
speaks to proxies; both transports describe failures in the same words. Retrying is
decided here, the same way for every endpoint (the client library's own retries are off):

* 429, 408, 409, 5xx, timeouts and connection errors are retried with exponential
  backoff and full jitter; a `retry-after-ms` or `Retry-After` header (seconds or an
  HTTP date) replaces the backoff when it is present and sane.
* Other 4xx, and a body that is not a chat completion (bad JSON, no choices), are not
  retried: asking again would get the same answer.
* An item that still fails becomes an `error` row with the cause. Items are never
  dropped, so a responses table always has one row per item, in item order.
* Only a real answer is an answer: a reply with no text (`choices: [{}]`, `content: null`)
  is an `error` row, and one whose text the provider's content filter withheld
  (`finish_reason: content_filter`) a `content_filtered` row. Neither is cached, so a
  rerun asks exactly those again; a cached record without text is a miss.

System prompt rule: the manifest's `system_prompt` is prepended as a system message
unless the item already has a system message of its own, which wins; an item that sets
its own system prompt is testing that deployment context on purpose.

Memory stays flat as items grow: a fixed pool of workers pulls from a bounded queue fed
lazily from the items, so only a few requests' state exists at any time. An answer is
committed to the cache before its slot carries another request (answers arriving
together share one commit), so a killed run re-asks at most `max_concurrency` requests.

Row columns follow `RESPONSE_SCHEMA`. Per row: `attempts` counts the HTTP requests this
run made for the item (0 when served from the cache); `latency_s` is the answering
request's latency (the original one for a cached answer), or the time spent on an item
that failed. The API key is sent in the `Authorization` header and nowhere else: no row,
error text or log line carries it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import json
import logging
import os
import random
import ssl
import time
import urllib.parse
import urllib.request
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Callable, Coroutine, Iterable, Mapping, TypeVar

from ..errors import PolicyevalError
from ..records import CONTENT_FILTERED, ERROR, EvalItem, canonical_json, normalize_messages
from .cache import ResponseCache, request_key
from .manifest import CheckpointManifest, resolve_api_key

log = logging.getLogger(__name__)

OK = "ok"
Progress = Callable[[dict[str, Any]], None]

WIRE = "wire"
OPENAI = "openai"
TRANSPORTS = (WIRE, OPENAI)

_RETRY_STATUSES = frozenset({408, 409, 429})
_ERROR_TEXT_LIMIT = 500

# ---------------------------------------------------------------------------
# Records


T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff for retryable failures; the number of retries comes from the manifest."""

    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    max_retry_after_s: float = 120.0  # a server asking for longer than this gets our backoff instead

    def backoff_s(self, retry_number: int) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2^n)] spreads a burst of retries out."""
        return random.uniform(0.0, min(self.max_delay_s, self.base_delay_s * (2 ** retry_number)))


@dataclass(frozen=True)
class RunStats:
    """What a run cost: how many items, how many answered from cache, how many HTTP requests."""

    requested: int
    from_cache: int
    sent: int  # items that needed the model
    errors: int
    http_requests: int  # including retries

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, Any]]) -> "RunStats":
        tally = RunTally()
        for row in rows:
            tally.add(row)
        return tally.stats()

    def summary(self) -> str:
        calls = "0 model calls" if self.sent == 0 else f"{self.sent} sent ({self.http_requests} HTTP requests)"
        return f"{self.requested} items: {self.from_cache} from cache, {calls}, {self.errors} errors"


class RunTally:
    """RunStats counted row by row, plus the first error, so a streamed run keeps no rows."""

    def __init__(self) -> None:
        self.requested = self.from_cache = self.errors = self.http_requests = 0
        self.first_error: str | None = None

    def add(self, row: Mapping[str, Any]) -> None:
        self.requested += 1
        if row.get("cached"):
            self.from_cache += 1
        else:
            self.http_requests += int(row.get("attempts") or 0)
        if row.get("status") != OK:
            self.errors += 1
            if self.first_error is None:
                self.first_error = row.get("error")

    def stats(self) -> RunStats:
        return RunStats(self.requested, self.from_cache, self.requested - self.from_cache, self.errors, self.http_requests)


def apply_system_prompt(messages: list[dict[str, Any]], system_prompt: str | None) -> list[dict[str, Any]]:
    """The messages to send: the manifest's system prompt first, unless the item has its own."""
    if not system_prompt or any(str(m.get("role", "")).strip().lower() == "system" for m in messages):
        return list(messages)
    return [{"role": "system", "content": system_prompt}, *messages]


def retry_after_s(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds the server asked us to wait: `retry-after-ms`, else `Retry-After` (seconds or HTTP date)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    raw_ms = lowered.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000.0)
        except ValueError:
            pass
    raw = lowered.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


# ---------------------------------------------------------------------------
# One run


@dataclass(slots=True)
class _Job:
    index: int
    item: EvalItem
    messages: list[dict[str, Any]]
    key: str


class _Plan:
    """Turns items into requests and answers into rows, with the per-run constants computed once."""

    def __init__(self, manifest: CheckpointManifest):
        self.manifest = manifest
        self.params = dict(manifest.params)
        self.constants = {
            "checkpoint_id": manifest.id,
            "base_url": manifest.base_url,
            "model": manifest.model,
            "params": canonical_json(self.params),
        }

    def job(self, index: int, item: EvalItem | Mapping[str, Any]) -> _Job:
        if not isinstance(item, EvalItem):
            item = EvalItem.from_row(dict(item))
        messages = normalize_messages(apply_system_prompt(item.messages, self.manifest.system_prompt))
        key = request_key(self.manifest.base_url, self.manifest.model or "", messages, self.params)
        return _Job(index, item, messages, key)

    def row(self, job: _Job, **response: Any) -> dict[str, Any]:
        row = job.item.to_row()
        row.update(self.constants)
        row["request_hash"] = job.key
        row.update(response)
        return row

    def cached_row(self, job: _Job, record: Mapping[str, Any]) -> dict[str, Any]:
        return self.row(
            job,
            status=OK,
            response_text=record.get("response_text"),
            finish_reason=record.get("finish_reason"),
            error=None,
            prompt_tokens=record.get("prompt_tokens"),
            completion_tokens=record.get("completion_tokens"),
            total_tokens=record.get("total_tokens"),
            latency_s=record.get("latency_s"),
            attempts=0,
            cached=True,
        )


# ---------------------------------------------------------------------------
# Failures, described the same way whichever transport carried the request


class _Failed(Exception):
    """One attempt's failure, with whether to retry and how long the server asked us to wait."""

    def __init__(self, message: str, retryable: bool, wait_s: float | None = None, status: str = ERROR):
        super().__init__(message)
        self.retryable = retryable
        self.wait_s = wait_s
        self.status = status


# The name of openai's exception class per HTTP status, so error texts read the same whichever
# transport ran. Names, not the classes: the wire transport does not import openai (half a
# second of every command's start-up).
_STATUS_ERRORS = {
    400: "BadRequestError",
    401: "AuthenticationError",
    403: "PermissionDeniedError",
    404: "NotFoundError",
    409: "ConflictError",
    422: "UnprocessableEntityError",
    429: "RateLimitError",
}


def _status_error_name(status: int) -> str:
    if status >= 500:
        return "InternalServerError"
    return _STATUS_ERRORS.get(status, "APIStatusError")


def _status_failure(status: int, headers: Mapping[str, str], body: bytes) -> _Failed:
    """A non-2xx answer as `_Failed`, worded as openai words it (`Error code: 503 - overloaded`)."""
    message = f"Error code: {status}"
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    error = data.get("error", data) if isinstance(data, dict) else None
    detail = error.get("message") if isinstance(error, dict) else None
    if isinstance(detail, str) and detail:
        message += f" - {detail}"
    retryable = status in _RETRY_STATUSES or status >= 500
    wait = retry_after_s(headers) if retryable else None
    return _Failed(f"{_status_error_name(status)}: HTTP {status}: {message}", retryable, wait)


def _timeout_failure(timeout_s: float) -> _Failed:
    return _Failed(f"APITimeoutError: no answer within {timeout_s:g}s", True)


def _connection_failure(cause: BaseException | None, fallback: str = "connection failed") -> _Failed:
    detail = f"{type(cause).__name__}: {cause}" if cause is not None else fallback
    return _Failed(f"APIConnectionError: {detail}", True)


# ---------------------------------------------------------------------------
# The wire transport: HTTP/1.1 on asyncio, one keep-alive connection per slot


class _ProtocolError(Exception):
    """The server's bytes are not an HTTP/1.1 response we can read."""


class _StaleConnection(ConnectionError):
    """A reused keep-alive connection closed before any byte of the answer arrived."""


_MAX_HEAD = 64 * 1024


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: one request at a time, the response parsed as bytes arrive.

    A Protocol rather than streams: reading a response costs one callback per network
    read and no task switches, which is most of the client's time at thousands of
    requests a second.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reusable = True
        self.used = 0  # responses read on this connection
        self._buffer = bytearray()
        self._waiter: asyncio.Future | None = None
        self._received = False  # any byte of the current response
        self._head: tuple[int, dict[str, str]] | None = None
        self._framing = ""  # "length" | "chunked" | "close"
        self._remaining = 0
        self._chunks: list[bytes] = []

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():  # bytes nobody asked for (an idle-timeout notice)
            self.reusable = False
            return
        self._received = True
        self._buffer += data
        try:
            self._advance()
        except _ProtocolError as exc:
            self._finish(exc)

    def eof_received(self) -> bool | None:
        self.reusable = False
        if self._waiter is not None and self._framing == "close" and self._head is not None:
            body = bytes(self._buffer)
            self._buffer.clear()
            self._complete(body)
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        if self._waiter is not None and not self._waiter.done():
            if self._framing == "close" and self._head is not None:
                body = bytes(self._buffer)
                self._buffer.clear()
                self._complete(body)
            elif not self._received and self.used:
                self._finish(_StaleConnection("the server closed the idle connection"))
            else:
                self._finish(exc or ConnectionResetError("the server closed the connection before answering"))

    # one round trip

    @property
    def usable(self) -> bool:
        return self.reusable and not self.closed and self.transport is not None and not self.transport.is_closing()

    async def roundtrip(self, request: bytes) -> tuple[int, dict[str, str], bytes]:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        self._received = False
        self._head = None
        self._framing = ""
        self._remaining = 0
        self._chunks = []
        self.transport.write(request)
        try:
            return await waiter
        finally:
            self._waiter = None

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()

    # parsing

    def _finish(self, exc: BaseException) -> None:
        self.reusable = False
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    def _complete(self, body: bytes) -> None:
        assert self._head is not None
        status, headers = self._head
        encoding = headers.get("content-encoding", "").strip().lower()
        if encoding in ("gzip", "x-gzip", "deflate"):
            try:
                body = zlib.decompress(body, 47 if encoding != "deflate" else zlib.MAX_WBITS)
            except zlib.error:
                try:
                    body = zlib.decompress(body, -zlib.MAX_WBITS)
                except zlib.error as exc:
                    self._finish(_ProtocolError(f"cannot decode a {encoding} body: {exc}"))
                    return
        self.used += 1
        if self._buffer:  # bytes beyond the answer: the connection's framing cannot be trusted
            self.reusable = False
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result((status, headers, body))

    def _advance(self) -> None:
        buffer = self._buffer
        while self._head is None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > _MAX_HEAD:
                    raise _ProtocolError("response head too long")
                return
            lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
            del buffer[: end + 4]
            parts = lines[0].split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
                raise _ProtocolError(f"not an HTTP response: {lines[0][:80]!r}")
            status = int(parts[1])
            if 100 <= status < 200:
                continue  # 100 Continue and friends: the real answer follows
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if sep:
                    name = name.strip().lower()
                    value = value.strip()
                    headers[name] = f"{headers[name]}, {value}" if name in headers else value
            if parts[0] == "HTTP/1.0" and "keep-alive" not in headers.get("connection", "").lower():
                self.reusable = False
            if "close" in headers.get("connection", "").lower():
                self.reusable = False
            self._head = (status, headers)
            if "chunked" in headers.get("transfer-encoding", "").lower():
                self._framing = "chunked"
            elif "content-length" in headers:
                try:
                    self._remaining = int(headers["content-length"])
                except ValueError:
                    self._remaining = -1
                if self._remaining < 0:
                    raise _ProtocolError(f"bad Content-Length {headers['content-length']!r}")
                self._framing = "length"
            elif status in (204, 304):
                self._framing, self._remaining = "length", 0
            else:
                self._framing = "close"
                self.reusable = False
        if self._framing == "length":
            if len(buffer) >= self._remaining:
                body = bytes(buffer[: self._remaining])
                del buffer[: self._remaining]
                self._complete(body)
        elif self._framing == "chunked":
            self._advance_chunks()

    def _advance_chunks(self) -> None:
        buffer = self._buffer
        while True:
            if self._remaining > 0:  # inside a chunk's data (+ its CRLF)
                if len(buffer) < self._remaining + 2:
                    return
                self._chunks.append(bytes(buffer[: self._remaining]))
                del buffer[: self._remaining + 2]
                self._remaining = 0
            if self._remaining == -1:  # after the last chunk: trailers up to an empty line
                end = buffer.find(b"\r\n")
                while end > 0:  # a trailer line
                    del buffer[: end + 2]
                    end = buffer.find(b"\r\n")
                if end < 0:
                    return
                del buffer[:2]
                self._complete(b"".join(self._chunks))
                return
            end = buffer.find(b"\r\n")
            if end < 0:
                return
            try:
                size = int(bytes(buffer[:end]).split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _ProtocolError("bad chunk size") from None
            del buffer[: end + 2]
            self._remaining = size if size > 0 else -1


@dataclass(slots=True)
class _Slot:
    """One request in flight at most; keeps its connection between requests."""

    connection: _Connection | None = None


class _WireClient:
    """POSTs chat completions over HTTP/1.1 (https via asyncio's ssl), one connection per slot."""

    def __init__(self, base_url: str, api_key: str):
        url = urllib.parse.urlsplit(base_url.rstrip("/"))
        if url.scheme not in ("http", "https") or not url.hostname:
            raise PolicyevalError(f"base_url {base_url!r} is not an http(s) URL")
        self.host = url.hostname
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.ssl = _ssl_context() if url.scheme == "https" else None
        host = f"[{self.host}]" if ":" in self.host else self.host
        if url.port and url.port != (443 if url.scheme == "https" else 80):
            host = f"{host}:{url.port}"
        path = f"{url.path}/chat/completions" + (f"?{url.query}" if url.query else "")
        if not api_key.isascii() or not api_key.isprintable():
            raise PolicyevalError("the API key has characters an HTTP header cannot carry (check the variable api_key_env names)")
        self._head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: policyeval\r\nAccept: application/json\r\n"
            f"Content-Type: application/json\r\nAuthorization: Bearer {api_key}\r\nContent-Length: "
        ).encode("latin-1")
        self._connections: set[_Connection] = set()

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(
            _Connection, self.host, self.port, ssl=self.ssl, server_hostname=self.host if self.ssl else None
        )
        self._connections.add(connection)
        return connection

    async def post(self, slot: _Slot, body: bytes) -> tuple[int, dict[str, str], bytes]:
        """(status, lower-case headers, body); raises OSError/_ProtocolError on a broken exchange.

        A keep-alive connection the server closed while idle is replaced once, silently:
        the server never saw the request, so it is not an attempt.
        """
        request = b"%s%d\r\n\r\n%s" % (self._head, len(body), body)
        for _ in range(2):
            connection = slot.connection
            if connection is None or not connection.usable:
                if connection is not None:
                    self._drop(connection)
                connection = slot.connection = await self._connect()
            try:
                return await connection.roundtrip(request)
            except _StaleConnection:
                self._drop(connection)
                slot.connection = None
            except BaseException:
                self._drop(connection)
                slot.connection = None
                raise
        raise ConnectionResetError("the server closed the connection before answering")

    @staticmethod
    def encode(payload: dict[str, Any]) -> bytes:
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def release(self, slot: _Slot) -> None:
        """After a request: a connection that cannot carry another one is closed now, not on next use."""
        if slot.connection is not None and not slot.connection.usable:
            self._drop(slot.connection)
            slot.connection = None

    def _drop(self, connection: _Connection) -> None:
        connection.close()
        self._connections.discard(connection)

    async def aclose(self) -> None:
        for connection in list(self._connections):
            connection.close()
        self._connections.clear()


def _ssl_context() -> ssl.SSLContext:
    """Certificates from SSL_CERT_FILE/SSL_CERT_DIR when set, else certifi's bundle (as openai's client does)."""
    cafile, capath = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
    if not cafile and not capath:
        try:
            import certifi

            cafile = certifi.where()
        except ImportError:  # pragma: no cover - certifi comes with httpx
            pass
    context = ssl.create_default_context(cafile=cafile, capath=capath)
    context.set_alpn_protocols(["http/1.1"])
    return context


def _uses_proxy(base_url: str) -> bool:
    """Whether the environment routes this endpoint through a proxy (which only openai's client speaks)."""
    url = urllib.parse.urlsplit(base_url)
    proxies = urllib.request.getproxies_environment()
    if not (proxies.get(url.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass_environment(url.hostname or "", proxies)


# ---------------------------------------------------------------------------
# The openai transport (proxies)


class _OpenAIClient:
    """The same POST through `openai.AsyncOpenAI`, with failures mapped to the wire client's words."""

    def __init__(self, base_url: str, api_key: str, timeout_s: float, connections: int):
        import openai

        if hasattr(openai, "DefaultAsyncHttpx2Client"):  # openai >= 3 speaks httpx2
            import httpx2 as _http
        else:  # pragma: no cover - openai 1.x / 2.x
            import httpx as _http

        self.openai = openai
        self.response_type = _http.Response
        factory = getattr(openai, "DefaultAsyncHttpx2Client", None) or openai.DefaultAsyncHttpxClient
        self.client = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key,
            timeout=timeout_s,
            max_retries=0,
            http_client=factory(
                limits=_http.Limits(max_connections=connections, max_keepalive_connections=connections),
                timeout=_http.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
            ),
        )

    @staticmethod
    def encode(payload: dict[str, Any]) -> dict[str, Any]:
        return payload

    def release(self, slot: _Slot) -> None:
        pass

    async def post(self, slot: _Slot, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        """Posted as built (the client's generic `post`, not the typed `create`): messages and
        non-standard sampling parameters pass through untouched, and a malformed answer
        reaches `_parse` as bytes instead of failing inside the client."""
        openai = self.openai
        try:
            response = await self.client.post("/chat/completions", body=body, cast_to=self.response_type)
            return response.status_code, dict(response.headers), response.content
        except openai.APIStatusError as exc:
            return exc.status_code, dict(exc.response.headers), exc.response.content
        except openai.APITimeoutError:
            raise TimeoutError from None
        except openai.APIConnectionError as exc:
            raise _connection_failure(exc.__cause__, str(exc)) from None
        except openai.OpenAIError as exc:
            raise _Failed(f"{type(exc).__name__}: {exc}", False) from None

    async def aclose(self) -> None:
        await self.client.close()


class _Endpoint:
    """The run's client and its slots, made on the first cache miss (a fully cached run starts nothing)."""

    def __init__(self, manifest: CheckpointManifest, base_url: str | None, api_key: str | None, transport: str | None):
        if transport is not None and transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, not {transport!r}")
        self.manifest = manifest
        self._base_url = base_url
        self._api_key = api_key
        self._transport = transport
        self._client: _WireClient | _OpenAIClient | None = None
        self._local_server: Any = None
        self._lock = asyncio.Lock()
        self.slots: asyncio.LifoQueue[_Slot] = asyncio.LifoQueue()
        for _ in range(manifest.max_concurrency):
            self.slots.put_nowait(_Slot())

    async def client(self) -> _WireClient | _OpenAIClient:
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    self._client = self._connect()
        return self._client

    def _connect(self) -> _WireClient | _OpenAIClient:
        api_key = self._api_key or resolve_api_key(self.manifest)
        base_url = self._base_url
        if base_url is None:
            if self.manifest.is_local:
                from .local_replicas import LocalModelReplicas

                # no shared server was passed in (`base_url`): this run starts its own
                self._local_server = LocalModelReplicas().start()
                base_url = self._local_server.base_url
            else:
                base_url = self.manifest.base_url
        transport = self._transport or (OPENAI if _uses_proxy(base_url) else WIRE)
        if transport == OPENAI:
            return _OpenAIClient(base_url, api_key, self.manifest.timeout_s, self.manifest.max_concurrency)
        return _WireClient(base_url, api_key)

    async def aclose(self) -> None:
        try:
            if self._client is not None:
                await self._client.aclose()
        finally:
            if self._local_server is not None:
                self._local_server.stop()


async def _attempt(client: _WireClient | _OpenAIClient, slot: _Slot, payload: dict[str, Any], timeout_s: float) -> tuple[bytes, float]:
    """One HTTP request in a slot the caller holds: (raw body of a 2xx answer, latency), or `_Failed`."""
    body = client.encode(payload)
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            status, headers, content = await client.post(slot, body)
    except TimeoutError:
        raise _timeout_failure(timeout_s) from None
    except (OSError, _ProtocolError, ssl.SSLError) as exc:
        raise _connection_failure(exc) from None
    if 200 <= status < 300:
        return content, time.perf_counter() - started
    raise _status_failure(status, headers, content)


class _Store:
    """Answers go to the cache in small groups: every answer that arrives in one turn of
    the event loop is committed in one transaction, and each waits for that commit while
    still holding its slot. So no slot carries a new request before its last answer is
    durable, and a killed run re-asks at most `max_concurrency` requests."""

    def __init__(self, cache: ResponseCache):
        self.cache = cache
        self.pending: list[tuple[str, dict[str, Any], asyncio.Future]] = []
        self.warned = False

    async def put(self, key: str, record: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        if not self.pending:
            loop.call_soon(self._flush)
        done = loop.create_future()
        self.pending.append((key, record, done))
        await done

    def _flush(self) -> None:
        batch, self.pending = self.pending, []
        error: BaseException | None = None
        try:
            put_many = getattr(self.cache, "put_many", None)
            if put_many is not None:
                put_many([(key, record) for key, record, _ in batch])
            else:
                for key, record, _ in batch:
                    self.cache.put(key, record)
        except OSError as exc:  # losing cache entries costs re-asks, not the run
            if not self.warned:
                log.warning("could not write to the response cache at %s: %s", getattr(self.cache, "root", "?"), exc)
                self.warned = True
        except Exception as exc:
            error = exc
        for _, _, done in batch:
            if not done.done():
                done.set_exception(error) if error is not None else done.set_result(None)


def _parse(body: bytes, item_id: str) -> dict[str, Any]:
    """Text, finish reason and usage of a chat completion body; `_Failed` naming the item if it is not one."""
    try:
        data = json.loads(body)
    except ValueError as exc:
        snippet = body[:80].decode("utf-8", "replace")
        raise _Failed(f"item {item_id}: malformed response (invalid JSON: {exc}; body starts {snippet!r})", False) from None
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        error = data.get("error") if isinstance(data, dict) else None
        detail = f"; the body has an error: {canonical_json(error)[:200]}" if error else ""
        raise _Failed(f"item {item_id}: malformed response (no choices in the body{detail})", False)
    choice = choices[0]
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    content = message.get("content")
    if isinstance(content, list):  # content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if not isinstance(content, str):
        refusal = message.get("refusal")
        content = refusal if isinstance(refusal, str) else ""
    finish_reason = choice.get("finish_reason")
    if not content.strip():
        if finish_reason == "content_filter":
            raise _Failed(f"item {item_id}: the provider's content filter withheld the answer", False, status=CONTENT_FILTERED)
        raise _Failed(f"item {item_id}: the reply has no answer text (finish_reason {finish_reason!r})", False)
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    return {
        "response_text": content,
        "finish_reason": choice.get("finish_reason"),
        "prompt_tokens": _int_or_none(usage.get("prompt_tokens")),
        "completion_tokens": _int_or_none(usage.get("completion_tokens")),
        "total_tokens": _int_or_none(usage.get("total_tokens")),
    }


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


async def _ask(
    endpoint: _Endpoint, job: _Job, plan: _Plan, retry: RetryPolicy, store: _Store | None
) -> dict[str, Any]:
    """Ask for one item until it is answered or out of retries; its row.

    A slot is held for the HTTP request and for storing its answer: backoff sleeps happen
    outside it, leaving the slot to others.
    """
    client = await endpoint.client()  # a failure here (no API key, no local server) ends the run
    max_retries = plan.manifest.max_retries
    timeout_s = plan.manifest.timeout_s
    payload = {"model": plan.manifest.model, "messages": job.messages, **plan.params}
    started = time.perf_counter()
    attempts = 0
    while True:
        attempts += 1
        failure: _Failed | None = None
        slot = await endpoint.slots.get()
        try:
            try:
                body, latency = await _attempt(client, slot, payload, timeout_s)
                answer = _parse(body, job.item.item_id)
            except _Failed as exc:
                failure = exc
            except Exception as exc:  # an unexpected client failure still yields a row
                return _error_row(plan, job, f"{type(exc).__name__}: {exc}", attempts, started)
            else:
                if store is not None:
                    await store.put(job.key, {**answer, "latency_s": latency, "attempts": attempts, "model": plan.manifest.model})
                return plan.row(job, status=OK, error=None, latency_s=latency, attempts=attempts, cached=False, **answer)
        finally:
            client.release(slot)
            endpoint.slots.put_nowait(slot)
        if failure.retryable and attempts <= max_retries:
            wait = failure.wait_s
            if wait is None or wait > retry.max_retry_after_s:
                wait = retry.backoff_s(attempts - 1)
            await asyncio.sleep(wait)
            continue
        tries = f" (after {attempts} attempts)" if attempts > 1 else ""
        return _error_row(plan, job, f"{failure}{tries}", attempts, started, failure.status)


def _error_row(plan: _Plan, job: _Job, message: str, attempts: int, started: float, status: str = ERROR) -> dict[str, Any]:
    return plan.row(
        job,
        status=status,
        response_text=None,
        finish_reason=None,
        error=message[:_ERROR_TEXT_LIMIT],
        prompt_tokens=None,
        completion_tokens=None,
        total_tokens=None,
        latency_s=time.perf_counter() - started,
        attempts=attempts,
        cached=False,
    )


class _Ordered:
    """Finished rows waiting for their turn, so rows leave in item order."""

    def __init__(self, progress: Progress | None):
        self.ready: dict[int, dict[str, Any]] = {}
        self.next = 0
        self.total: int | None = None
        self.failure: BaseException | None = None
        self.changed = asyncio.Event()
        self.advanced = asyncio.Event()
        self.progress = progress

    def finish(self, index: int, row: dict[str, Any]) -> None:
        self.ready[index] = row
        if index == self.next:
            self.changed.set()
        if self.progress is not None:
            self.progress(row)

    def fail(self, exc: BaseException) -> None:
        if self.failure is None:
            self.failure = exc
        self.changed.set()


async def aiter_responses(
    items: Iterable[EvalItem | Mapping[str, Any]],
    manifest: CheckpointManifest,
    cache: ResponseCache | None = None,
    progress: Progress | None = None,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    retry: RetryPolicy | None = None,
    window: int | None = None,
    transport: str | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """Rows in item order as they become available.

    `base_url` overrides the manifest's (for `base_url: local` it is otherwise started
    on the first cache miss and stopped at the end). `window` bounds how far ahead of
    the oldest unfinished item the run may go (None: no bound beyond the item count).
    `progress(row)` is called as each item finishes, in completion order. `transport`
    forces `"wire"` or `"openai"` (default: wire, or openai when a proxy applies).
    """
    retry = retry or RetryPolicy()
    plan = _Plan(manifest)
    endpoint = _Endpoint(manifest, base_url, api_key, transport)
    # Twice the slots: an item sleeping before a retry must not keep others from being sent.
    n_workers = manifest.max_concurrency * 2
    queue: asyncio.Queue[_Job | None] = asyncio.Queue(maxsize=n_workers)
    state = _Ordered(progress)
    store = _Store(cache) if cache is not None else None

    async def produce() -> None:
        count = 0
        try:
            for index, item in enumerate(items):
                while window is not None and index >= state.next + window:
                    state.advanced.clear()
                    await state.advanced.wait()
                job = plan.job(index, item)
                record = cache.get(job.key) if cache is not None else None
                if record is not None and str(record.get("response_text") or "").strip():
                    state.finish(index, plan.cached_row(job, record))
                    if index % 512 == 511:
                        await asyncio.sleep(0)  # let the consumer drain a long run of cache hits
                else:
                    await queue.put(job)
                count = index + 1
            state.total = count
            state.changed.set()
            for _ in range(n_workers):
                await queue.put(None)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            state.fail(exc)

    async def work() -> None:
        try:
            while True:
                job = await queue.get()
                if job is None:
                    return
                state.finish(job.index, await _ask(endpoint, job, plan, retry, store))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # e.g. the local server failed to start: fatal for the run
            state.fail(exc)

    tasks = [asyncio.create_task(produce())] + [asyncio.create_task(work()) for _ in range(n_workers)]
    try:
        while True:
            while state.next in state.ready:
                row = state.ready.pop(state.next)
                state.next += 1
                state.advanced.set()
                yield row
            if state.failure is not None:
                raise state.failure
            if state.total is not None and state.next >= state.total:
                break
            state.changed.clear()
            await state.changed.wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await endpoint.aclose()


async def arun_checkpoint(
    items: Iterable[EvalItem | Mapping[str, Any]],
    manifest: CheckpointManifest,
    cache: ResponseCache | None = None,
    progress: Progress | None = None,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    retry: RetryPolicy | None = None,
    transport: str | None = None,
) -> list[dict[str, Any]]:
    """Every item's response row, in item order (see `aiter_responses`)."""
    rows = []
    async for row in aiter_responses(
        items, manifest, cache, progress, base_url=base_url, api_key=api_key, retry=retry, transport=transport
    ):
        rows.append(row)
    return rows


def run_checkpoint(
    items: Iterable[EvalItem | Mapping[str, Any]],
    manifest: CheckpointManifest,
    cache: ResponseCache | None = None,
    progress: Progress | None = None,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    retry: RetryPolicy | None = None,
    transport: str | None = None,
) -> list[dict[str, Any]]:
    """Blocking form of `arun_checkpoint`; safe to call from inside a running event loop too."""
    return run_blocking(
        lambda: arun_checkpoint(
            items, manifest, cache, progress, base_url=base_url, api_key=api_key, retry=retry, transport=transport
        )
    )


def run_blocking(make_coro: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """asyncio.run, or on a thread of its own when called from inside a running event loop
    (a notebook, an async orchestrator), where asyncio.run would refuse."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make_coro())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make_coro())).result()


__all__ = [
    "OK",
    "OPENAI",
    "TRANSPORTS",
    "WIRE",
    "RetryPolicy",
    "RunStats",
    "RunTally",
    "aiter_responses",
    "apply_system_prompt",
    "arun_checkpoint",
    "retry_after_s",
    "run_blocking",
    "run_checkpoint",
]
