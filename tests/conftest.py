"""Fixtures shared by test modules: a writable copy of the mini policy pack."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

MINI_PACK = Path(__file__).parent / "packs" / "mini"


@pytest.fixture
def mini_pack_dir(tmp_path: Path) -> Path:
    """A copy of tests/packs/mini that a test may edit."""
    target = tmp_path / "mini"
    shutil.copytree(MINI_PACK, target)
    return target

