"""Run a checkpoint over eval items: bounded concurrency, retries, a resumable cache.

One `openai.AsyncOpenAI` client per run, with the library's own retries off so that
retrying is decided here, the same way for every endpoint:

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
lazily from the items, so only a few requests' state exists at any time.

Row columns follow `RESPONSE_SCHEMA`. Per row: `attempts` counts the HTTP requests this
run made for the item (0 when served from the cache); `latency_s` is the answering
request's latency (the original one for a cached answer), or the time spent on an item
that failed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import json
import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Callable, Coroutine, Iterable, Mapping, TypeVar

import openai

from ..records import CONTENT_FILTERED, ERROR, EvalItem, canonical_json, normalize_messages
from .cache import ResponseCache, request_key
from .manifest import CheckpointManifest, resolve_api_key

if hasattr(openai, "DefaultAsyncHttpx2Client"):  # openai >= 3 speaks httpx2
    import httpx2 as _http
else:  # pragma: no cover - openai 1.x / 2.x
    import httpx as _http

log = logging.getLogger(__name__)

OK = "ok"
Progress = Callable[[dict[str, Any]], None]

_RESPONSE_TYPE = _http.Response
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


class _Endpoint:
    """The run's one client, made on the first cache miss (a fully cached run starts nothing)."""

    def __init__(self, manifest: CheckpointManifest, base_url: str | None, api_key: str | None):
        self.manifest = manifest
        self._base_url = base_url
        self._api_key = api_key
        self._client: openai.AsyncOpenAI | None = None
        self._local_server: Any = None
        self._lock = asyncio.Lock()

    async def client(self) -> openai.AsyncOpenAI:
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    self._client = self._connect()
        return self._client

    def _connect(self) -> openai.AsyncOpenAI:
        api_key = self._api_key or resolve_api_key(self.manifest)
        base_url = self._base_url
        if base_url is None:
            if self.manifest.is_local:
                from .local_model import LocalModelServer

                # no shared server was passed in (`base_url`): this run starts its own
                self._local_server = LocalModelServer().start()
                base_url = self._local_server.base_url
            else:
                base_url = self.manifest.base_url
        n = self.manifest.max_concurrency
        return openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key,
            timeout=self.manifest.timeout_s,
            max_retries=0,
            http_client=_http_client(n, self.manifest.timeout_s),
        )

    async def aclose(self) -> None:
        try:
            if self._client is not None:
                await self._client.close()
        finally:
            if self._local_server is not None:
                self._local_server.stop()


def _http_client(connections: int, timeout_s: float) -> Any:
    """An HTTP client whose pool holds a connection per concurrent request (no pool waits)."""
    factory = getattr(openai, "DefaultAsyncHttpx2Client", None) or openai.DefaultAsyncHttpxClient
    return factory(
        limits=_http.Limits(max_connections=connections, max_keepalive_connections=connections),
        timeout=_http.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
    )


class _Failed(Exception):
    """One attempt's failure, with whether to retry and how long the server asked us to wait."""

    def __init__(self, message: str, retryable: bool, wait_s: float | None = None, status: str = ERROR):
        super().__init__(message)
        self.retryable = retryable
        self.wait_s = wait_s
        self.status = status


def _describe_status_error(exc: openai.APIStatusError) -> str:
    message = getattr(exc, "message", None) or str(exc)
    return f"{type(exc).__name__}: HTTP {exc.status_code}: {message}"


async def _attempt(client: openai.AsyncOpenAI, job: _Job, plan: _Plan) -> bytes:
    """One HTTP request; returns the raw body of a 2xx answer or raises `_Failed`.

    The body is posted as built (the client's generic `post`, not the typed
    `chat.completions.create`): messages pass through untouched, non-standard sampling
    parameters need no special casing, the per-request cost is lower, and a malformed
    answer reaches `_parse` as bytes instead of failing inside the client.
    """
    try:
        response = await client.post(
            "/chat/completions",
            body={"model": plan.manifest.model, "messages": job.messages, **plan.params},
            cast_to=_RESPONSE_TYPE,
        )
        return response.content
    except openai.APIStatusError as exc:
        status = exc.status_code
        retryable = status in _RETRY_STATUSES or status >= 500
        wait = retry_after_s(exc.response.headers) if retryable else None
        raise _Failed(_describe_status_error(exc), retryable, wait) from None
    except openai.APITimeoutError:
        raise _Failed(f"APITimeoutError: no answer within {plan.manifest.timeout_s:g}s", True) from None
    except openai.APIConnectionError as exc:
        cause = exc.__cause__
        detail = f"{type(cause).__name__}: {cause}" if cause else str(exc)
        raise _Failed(f"APIConnectionError: {detail}", True) from None
    except openai.OpenAIError as exc:
        raise _Failed(f"{type(exc).__name__}: {exc}", False) from None


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
    endpoint: _Endpoint, job: _Job, plan: _Plan, slots: asyncio.Semaphore, retry: RetryPolicy
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Ask for one item until it is answered or out of retries: (row, record to cache or None)."""
    client = await endpoint.client()
    max_retries = plan.manifest.max_retries
    started = time.perf_counter()
    attempts = 0
    while True:
        attempts += 1
        try:
            async with slots:  # backoff sleeps happen outside, leaving the slot to others
                t0 = time.perf_counter()
                body = await _attempt(client, job, plan)
                latency = time.perf_counter() - t0
            answer = _parse(body, job.item.item_id)
        except _Failed as failure:
            if failure.retryable and attempts <= max_retries:
                wait = failure.wait_s
                if wait is None or wait > retry.max_retry_after_s:
                    wait = retry.backoff_s(attempts - 1)
                await asyncio.sleep(wait)
                continue
            tries = f" (after {attempts} attempts)" if attempts > 1 else ""
            return _error_row(plan, job, f"{failure}{tries}", attempts, started, failure.status), None
        except Exception as exc:  # an unexpected client failure still yields a row
            return _error_row(plan, job, f"{type(exc).__name__}: {exc}", attempts, started), None
        record = {**answer, "latency_s": latency, "attempts": attempts, "model": plan.manifest.model}
        row = plan.row(job, status=OK, error=None, latency_s=latency, attempts=attempts, cached=False, **answer)
        return row, record


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
) -> AsyncIterator[dict[str, Any]]:
    """Rows in item order as they become available.

    `base_url` overrides the manifest's (for `base_url: local` it is otherwise started
    on the first cache miss and stopped at the end). `window` bounds how far ahead of
    the oldest unfinished item the run may go (None: no bound beyond the item count).
    `progress(row)` is called as each item finishes, in completion order.
    """
    retry = retry or RetryPolicy()
    plan = _Plan(manifest)
    endpoint = _Endpoint(manifest, base_url, api_key)
    concurrency = manifest.max_concurrency
    slots = asyncio.Semaphore(concurrency)
    # Twice the slots: an item sleeping before a retry must not keep others from being sent.
    n_workers = concurrency * 2
    queue: asyncio.Queue[_Job | None] = asyncio.Queue(maxsize=n_workers)
    state = _Ordered(progress)

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
        warned = False
        try:
            while True:
                job = await queue.get()
                if job is None:
                    return
                row, record = await _ask(endpoint, job, plan, slots, retry)
                if record is not None and cache is not None:
                    try:
                        cache.put(job.key, record)
                    except OSError as exc:  # losing a cache entry costs a re-ask, not the run
                        if not warned:
                            log.warning("could not write to the response cache at %s: %s", cache.root, exc)
                            warned = True
                state.finish(job.index, row)
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
) -> list[dict[str, Any]]:
    """Every item's response row, in item order (see `aiter_responses`)."""
    rows = []
    async for row in aiter_responses(
        items, manifest, cache, progress, base_url=base_url, api_key=api_key, retry=retry
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
) -> list[dict[str, Any]]:
    """Blocking form of `arun_checkpoint`; safe to call from inside a running event loop too."""
    return run_blocking(
        lambda: arun_checkpoint(items, manifest, cache, progress, base_url=base_url, api_key=api_key, retry=retry)
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
