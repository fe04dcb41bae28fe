"""Checkpoint manifests: validation, located errors, folders, hashes and API keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from policyeval.errors import InputError, PolicyevalError
from policyeval.runs.manifest import (
    LOCAL_MODEL_NAME,
    NO_KEY,
    CheckpointManifest,
    load_manifest,
    load_manifests,
    manifest_hash,
    resolve_api_key,
)

REPO = Path(__file__).resolve().parents[1]

VALID = """\
id: gpt-test
base_url: https://api.example.com/v1/
model: test-model
api_key_env: EXAMPLE_API_KEY
system_prompt: Be careful.
params:
  temperature: 0
  max_tokens: 128
max_concurrency: 4
tags: [hosted]
"""


def write(tmp_path: Path, text: str, name: str = "m.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_valid_manifest_and_defaults(tmp_path):
    m = load_manifest(write(tmp_path, VALID))
    assert m.id == "gpt-test"
    assert m.base_url == "https://api.example.com/v1"  # trailing slash dropped
    assert m.params == {"temperature": 0, "max_tokens": 128}
    assert (m.max_concurrency, m.timeout_s, m.max_retries) == (4, 60.0, 5)
    assert m.tags == ["hosted"] and m.source == tmp_path / "m.yaml"


def test_local_manifest_gets_the_local_model_name():
    m = CheckpointManifest(id="loc", base_url="local")
    assert m.is_local and m.model == LOCAL_MODEL_NAME
    with pytest.raises(ValueError, match="serves only"):
        CheckpointManifest(id="loc", base_url="local", model="gpt-4")


def _error(tmp_path: Path, text: str) -> InputError:
    path = write(tmp_path, text)
    with pytest.raises(InputError) as info:
        load_manifest(path)
    assert str(path) in str(info.value)
    return info.value


def test_unknown_field_names_file_line_and_field(tmp_path):
    err = _error(tmp_path, VALID + "temprature: 0.5\n")
    assert err.line == 11
    assert "field temprature" in str(err) and "unknown field" in str(err)
    assert str(err).startswith(f"{tmp_path / 'm.yaml'}:11:")


def test_wrong_type_points_at_the_value(tmp_path):
    err = _error(tmp_path, VALID.replace("max_concurrency: 4", "max_concurrency: lots"))
    assert err.line == 9 and "field max_concurrency" in str(err)


def test_nested_field_error_points_inside(tmp_path):
    err = _error(tmp_path, VALID.replace("tags: [hosted]", "tags:\n  - ok\n  - {a: 1}"))
    assert err.line == 12 and "field tags.1" in str(err)


def test_missing_field_and_bad_id(tmp_path):
    err = _error(tmp_path, "id: x\nmodel: m\n")
    assert "field base_url" in str(err) and "missing" in str(err)
    err = _error(tmp_path, VALID.replace("id: gpt-test", "id: ../etc/passwd"))
    assert err.line == 1 and "field id" in str(err)
    err = _error(tmp_path, VALID.replace("id: gpt-test", "id: " + "a" * 65))
    assert "field id" in str(err)


def test_model_required_for_remote(tmp_path):
    err = _error(tmp_path, VALID.replace("model: test-model\n", ""))
    assert "field model" in str(err) and "required unless" in str(err)


def test_key_in_api_key_env_is_rejected(tmp_path):
    err = _error(tmp_path, VALID.replace("EXAMPLE_API_KEY", "sk-abc123"))
    assert err.line == 4 and "field api_key_env" in str(err) and "NAME of an environment variable" in str(err)


def test_reserved_params_and_bad_base_url(tmp_path):
    err = _error(tmp_path, VALID.replace("  max_tokens: 128", "  max_tokens: 128\n  stream: true"))
    assert "field params" in str(err) and "stream" in str(err) and err.line == 7
    err = _error(tmp_path, VALID.replace("https://api.example.com/v1/", "api.example.com"))
    assert "field base_url" in str(err) and err.line == 2


def test_yaml_syntax_error_has_line(tmp_path):
    err = _error(tmp_path, "id: x\nbase_url: local\nparams: {temperature: 0\nmodel: m\n")
    assert err.line is not None and "invalid YAML" in str(err)
    err = _error(tmp_path, "- just\n- a list\n")
    assert "mapping" in str(err)


def test_load_manifests_and_duplicate_ids(tmp_path):
    write(tmp_path, VALID, "a.yaml")
    write(tmp_path, VALID.replace("gpt-test", "other"), "b.yml")
    assert [m.id for m in load_manifests(tmp_path)] == ["gpt-test", "other"]
    write(tmp_path, VALID, "c.yaml")
    with pytest.raises(InputError) as info:
        load_manifests(tmp_path)
    assert "a.yaml" in str(info.value) and "c.yaml" in str(info.value) and "gpt-test" in str(info.value)
    with pytest.raises(InputError, match="no such folder"):
        load_manifests(tmp_path / "missing")


def test_manifest_hash_tracks_what_is_asked(tmp_path):
    base = CheckpointManifest(id="a", base_url="http://h/v1", model="m", params={"temperature": 0})
    assert manifest_hash(base) == manifest_hash(base.model_copy(update={"max_concurrency": 64, "tags": ["x"]}))
    assert manifest_hash(base) != manifest_hash(base.model_copy(update={"params": {"temperature": 1}}))
    assert manifest_hash(base) != manifest_hash(base.model_copy(update={"system_prompt": "s"}))


def test_resolve_api_key(tmp_path, monkeypatch):
    m = load_manifest(write(tmp_path, VALID))
    monkeypatch.delenv("EXAMPLE_API_KEY", raising=False)
    with pytest.raises(PolicyevalError) as info:
        resolve_api_key(m)
    assert "EXAMPLE_API_KEY" in str(info.value) and "m.yaml" in str(info.value)
    monkeypatch.setenv("EXAMPLE_API_KEY", "secret-value")
    assert resolve_api_key(m) == "secret-value"
    assert resolve_api_key(CheckpointManifest(id="x", base_url="local")) == NO_KEY


def test_shipped_demo_manifests_load():
    manifests = {m.id: m for m in load_manifests(REPO / "checkpoints")}
    assert {"smollm2-base", "smollm2-safety"} <= set(manifests)
    for m in (manifests["smollm2-base"], manifests["smollm2-safety"]):
        assert m.is_local and m.model == LOCAL_MODEL_NAME
        assert m.params == {"temperature": 0, "max_tokens": 96, "seed": 0}
        assert (m.max_concurrency, m.timeout_s) == (2, 120)
    assert manifests["smollm2-base"].system_prompt is None
    assert "refuse" in manifests["smollm2-safety"].system_prompt.lower()


def test_a_manifest_with_a_python_tag_or_bad_bytes_is_a_located_error(tmp_path) -> None:
    from policyeval.errors import InputError
    from policyeval.runs.manifest import load_manifest

    tagged = tmp_path / "tagged.yaml"
    tagged.write_text("id: x\nbase_url: http://127.0.0.1:9/v1\nmodel: m\nparams: !!python/object:os.environ {}\n")
    with pytest.raises(InputError) as raised:
        load_manifest(tagged)
    assert "tagged.yaml" in str(raised.value) and ":4" in str(raised.value) and "not plain data" in str(raised.value)

    latin = tmp_path / "latin.yaml"
    latin.write_bytes("id: caf\xe9\n".encode("latin-1"))
    with pytest.raises(InputError) as raised:
        load_manifest(latin)
    assert "latin.yaml" in str(raised.value) and "not UTF-8" in str(raised.value)
