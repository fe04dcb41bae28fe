"""Checkpoint manifests: one YAML file per model endpoint under test.

A manifest says where a checkpoint answers (an OpenAI-compatible base URL, or `local`
for the embedded SmolLM2 server), which model name to ask for, how to sample, and how
hard to push the endpoint. It never holds a secret: `api_key_env` names the environment
variable that does, so manifests can be committed and shared.

Errors point at the file, the line and the field, because manifests are hand-edited.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from ..errors import InputError, PolicyevalError
from ..policy.yaml_lines import parse_yaml
from ..records import canonical_json, content_hash
from ..safeguards.spec import Safeguards
from ..tables import decode_utf8

LOCAL = "local"
"""`base_url: local` selects the embedded local model server."""

LOCAL_MODEL_NAME = "smollm2-135m-instruct"
"""The model name the embedded server answers to (its `--model_alias`)."""

NO_KEY = "EMPTY"
"""Placeholder key for endpoints that need none (the client library insists on one)."""

CHECKPOINT_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_ENV_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Request fields the runner owns; a manifest setting them would break the cache key or parsing.
_RESERVED_PARAMS = ("model", "messages", "stream", "n")


class CheckpointManifest(BaseModel):
    """One checkpoint under test: endpoint, model, sampling parameters and load limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    base_url: str
    model: str | None = None  # optional only for `base_url: local`, which has one model
    api_key_env: str | None = None
    system_prompt: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    max_concurrency: int = Field(8, ge=1, le=1024)
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(5, ge=0, le=50)
    tags: list[str] = Field(default_factory=list)
    # A system checkpoint: classifiers around the model (policyeval/safeguards/spec.py)
    safeguards: Safeguards | None = None

    _source: Path | None = PrivateAttr(default=None)

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not CHECKPOINT_ID_PATTERN.match(value):
            raise ValueError(
                "must be 1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit "
                "(it names files and partitions)"
            )
        return value

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        value = value.strip()
        if value == LOCAL:
            return value
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"must be an http(s):// URL or `{LOCAL}`, got {value!r}")
        return value.rstrip("/")

    @field_validator("api_key_env")
    @classmethod
    def _check_api_key_env(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value.startswith(("sk-", "Bearer ")) or not _ENV_NAME_PATTERN.match(value):
            raise ValueError("must be the NAME of an environment variable holding the key, never the key itself")
        return value

    @field_validator("params")
    @classmethod
    def _check_params(cls, value: dict[str, Any]) -> dict[str, Any]:
        reserved = [k for k in _RESERVED_PARAMS if k in value]
        if reserved:
            raise ValueError(f"may not set {', '.join(reserved)} (the runner sets these)")
        try:
            canonical_json(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"must be JSON-compatible ({exc})") from None
        for key, item in value.items():
            if isinstance(item, float) and not math.isfinite(item):
                raise ValueError(f"{key} must be a finite number")
        return value

    @model_validator(mode="after")
    def _check_model(self) -> "CheckpointManifest":
        if self.base_url == LOCAL:
            if self.model is None:
                object.__setattr__(self, "model", LOCAL_MODEL_NAME)
            elif self.model != LOCAL_MODEL_NAME:
                raise ValueError(f"model: the embedded local server serves only {LOCAL_MODEL_NAME!r}")
        elif not self.model:
            raise ValueError("model: required unless base_url is `local`")
        return self

    @property
    def is_local(self) -> bool:
        return self.base_url == LOCAL

    @property
    def is_system(self) -> bool:
        """True when the checkpoint is the model with input and/or output classifiers."""
        return self.safeguards is not None

    @property
    def endpoint(self) -> str:
        """The endpoint's name in tags and pool names: `local`, or the base URL's host and path
        (short and plain, as Dagster tag values must be)."""
        return "local" if self.is_local else self.base_url.split("://", 1)[-1].rstrip("/")[:63]

    @property
    def source(self) -> Path | None:
        """The file this manifest was loaded from, if any."""
        return self._source

    def describe(self) -> str:
        """How to name this manifest in a message: its file if it has one, else its id."""
        return f"{self._source} (checkpoint {self.id})" if self._source else f"checkpoint {self.id}"


def manifest_hash(manifest: CheckpointManifest) -> str:
    """Content hash of what determines a checkpoint's answers.

    Load limits (concurrency, timeout, retries), tags and the key's variable name are
    left out: changing them does not change what the model is asked, so it must not
    invalidate earlier responses. Safeguards count when present (they change the system's
    outcomes); a manifest without them hashes as before they existed.
    """
    fields: dict[str, Any] = {
        "id": manifest.id,
        "base_url": manifest.base_url,
        "model": manifest.model,
        "system_prompt": manifest.system_prompt,
        "params": manifest.params,
    }
    if manifest.safeguards is not None:
        fields["safeguards"] = manifest.safeguards.model_dump(exclude={"input": {"max_concurrency", "timeout_s", "api_key_env"},
                                                                      "output": {"max_concurrency", "timeout_s", "api_key_env"}})
    return content_hash(fields)


def resolve_api_key(manifest: CheckpointManifest) -> str:
    """The API key from the variable the manifest names, or a placeholder when none is needed."""
    if manifest.api_key_env is None:
        return NO_KEY
    value = os.environ.get(manifest.api_key_env)
    if not value:
        raise PolicyevalError(
            f"{manifest.describe()}: environment variable {manifest.api_key_env} (api_key_env) is not set"
        )
    return value


# ---------------------------------------------------------------------------
# Loading


def load_manifest(path: str | os.PathLike) -> CheckpointManifest:
    """Load and validate one manifest; any problem names the file, line and field."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file" if not path.exists() else "not a file")
    root, data, _ = parse_yaml(decode_utf8(path, path.read_bytes()), path)
    if root is None:
        raise InputError(path, "the file is empty (or only comments): a checkpoint manifest must be a YAML mapping", line=1)
    if not isinstance(data, dict):
        raise InputError(path, "a checkpoint manifest must be a YAML mapping", line=root.start_mark.line + 1)
    try:
        manifest = CheckpointManifest.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise _located_error(path, root, error) from None
    manifest._source = path
    return manifest


def load_manifests(directory: str | os.PathLike) -> list[CheckpointManifest]:
    """Every `*.yaml` / `*.yml` manifest in a folder, sorted by id; duplicate ids are an error."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(directory, "no such folder")
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    seen: dict[str, Path] = {}
    manifests = []
    for file in files:
        manifest = load_manifest(file)
        if manifest.id in seen:
            raise InputError(file, f"checkpoint id {manifest.id!r} is also used by {seen[manifest.id]}")
        seen[manifest.id] = file
        manifests.append(manifest)
    return sorted(manifests, key=lambda m: m.id)


def _located_error(path: Path, root: yaml.Node | None, error: dict[str, Any]) -> InputError:
    """A pydantic error as `file:line: field x: message`, located through the YAML node tree."""
    loc = [part for part in error.get("loc", ()) if part != "__root__"]
    message = error.get("msg", "invalid value")
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    kind = error.get("type", "")
    # Errors raised by the whole-model validator carry their field in the message.
    if not loc and ":" in message:
        field, _, rest = message.partition(":")
        if field in CheckpointManifest.model_fields:
            loc, message = [field], rest.strip()
    field_name = ".".join(str(p) for p in loc) or "(manifest)"
    if kind == "extra_forbidden":
        allowed = ", ".join(CheckpointManifest.model_fields)
        message = f"unknown field (allowed: {allowed})"
    elif kind == "missing":
        message = "required field is missing"
    node, key_node = _find_node(root, loc)
    target = key_node if kind == "extra_forbidden" and key_node is not None else node
    line = target.start_mark.line + 1 if target is not None else 1
    return InputError(path, f"field {field_name}: {message}", line=line)


def _find_node(root: yaml.Node | None, loc: list[Any]) -> tuple[yaml.Node | None, yaml.Node | None]:
    """The deepest YAML node along `loc` (value node, and the key node of the last step)."""
    node, key_node = root, None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == str(part):
                    node, key_node = v, k
                    break
            else:
                return node, key_node
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node, key_node = node.value[part], None
        else:
            return node, key_node
    return node, key_node
