"""Fixtures shared by test modules: a writable copy of the mini policy pack, and one fake
OpenAI-compatible server per module that each test scripts."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import pytest

from policyeval.testing.openai_server import FakeOpenAIServer

MINI_PACK = Path(__file__).parent / "packs" / "mini"


@pytest.fixture
def mini_pack_dir(tmp_path: Path) -> Path:
    """A copy of tests/packs/mini that a test may edit."""
    target = tmp_path / "mini"
    shutil.copytree(MINI_PACK, target)
    return target



@pytest.fixture(scope="module")
def shared_server():
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
def fake_server(shared_server):
    """`with fake_server(handler) as server:` on one server per module (stopping one takes ~0.5 s)."""
    default = shared_server.handler

    @contextlib.contextmanager
    def use(handler=None):
        shared_server.requests.clear()  # between tests: no request is in flight
        shared_server.handler = handler or default
        try:
            yield shared_server
        finally:
            shared_server.handler = default

    return use
