"""The embedded model at the speed of the machine: one single-thread llama.cpp server per
core behind one loopback address.

llama-cpp-python's server decodes one sequence at a time, and on a small model its
threads mostly wait for each other: measured here on 2 cores with SmolLM2-135M
(`bench/local_model_bench.py`), one server with 2 threads gave 25 tokens/s, one with 1
thread 80, and two 1-thread servers side by side 139. So the pipeline starts one
single-thread server per core and a small TCP proxy that hands each new connection to the
server with the fewest open ones. The runner keeps one keep-alive connection per request
slot, so a checkpoint with `max_concurrency: 2` keeps both servers busy. Everything stays
on loopback; callers see one `base_url`, exactly as with one server.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

from .local_model import LocalModelServer

_PIPE_CHUNK = 64 * 1024


def default_replicas() -> int:
    """One server per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class LocalModelReplicas:
    """`with LocalModelReplicas() as local: local.base_url`: N one-thread servers, one address."""

    def __init__(self, replicas: int | None = None, host: str = "127.0.0.1"):
        self.replicas = replicas or default_replicas()
        self.host = host
        self.servers: list[LocalModelServer] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        self._stopping: asyncio.Event | None = None

    @property
    def base_url(self) -> str:
        if len(self.servers) == 1:
            return self.servers[0].base_url
        return f"http://{self.host}:{self._port}/v1"

    def start(self) -> "LocalModelReplicas":
        if self.servers:
            return self
        servers = [LocalModelServer(host=self.host, n_threads=1) for _ in range(self.replicas)]
        try:
            # one after the other, from this thread: a server dies with the thread that started it
            for server in servers:
                server.start()
        except BaseException:
            for server in servers:
                server.stop()
            raise
        self.servers = servers
        if len(servers) > 1:
            self._start_proxy()
        return self

    def _start_proxy(self) -> None:
        ready = threading.Event()
        backends = [(self.host, server.port) for server in self.servers]
        open_connections = [0] * len(backends)

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while data := await reader.read(_PIPE_CHUNK):
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                writer.close()

        async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
            chosen = min(range(len(backends)), key=open_connections.__getitem__)
            open_connections[chosen] += 1
            try:
                server_reader, server_writer = await asyncio.open_connection(*backends[chosen])
            except (OSError, asyncio.CancelledError):
                open_connections[chosen] -= 1
                client_writer.close()
                return
            try:
                await asyncio.gather(pipe(client_reader, server_writer), pipe(server_reader, client_writer))
            except asyncio.CancelledError:  # the proxy is stopping: end quietly
                client_writer.close()
                server_writer.close()
            finally:
                open_connections[chosen] -= 1

        async def serve() -> None:
            self._stopping = asyncio.Event()
            server = await asyncio.start_server(handle, self.host, 0)
            self._port = server.sockets[0].getsockname()[1]
            ready.set()
            await self._stopping.wait()
            server.close()
            connections = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in connections:
                task.cancel()
            await asyncio.gather(*connections, return_exceptions=True)

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(serve())
            self._loop.close()

        self._thread = threading.Thread(target=run, name="local-model-proxy", daemon=True)
        self._thread.start()
        ready.wait(timeout=10)

    def stop(self) -> None:
        if self._thread is not None:
            thread, self._thread = self._thread, None
            if self._loop is not None and not self._loop.is_closed():
                self._loop.call_soon_threadsafe(self._stopping.set)
            thread.join(timeout=10)
            self._loop = None
        for server in self.servers:
            server.stop()
        self.servers = []

    def __enter__(self) -> "LocalModelReplicas":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
