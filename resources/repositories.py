"""The policy repository and the checkpoint registry: what exists to be measured.

Both read folders a team already keeps in version control: a folder of policy packs and
a folder of checkpoint manifests. Each policy version is snapshotted (normalized JSON)
when first materialized, so a key keeps meaning the same policy after the pack on disk
has moved on.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import dagster as dg
import httpx

from policyeval.keys import policy_version_key, safe_key
from policyeval.errors import PolicyevalError
from policyeval.policy import PolicyPack, load_policy
from policyeval.policy.loader import PACK_FILE
from policyeval.runs.manifest import CheckpointManifest, load_manifest
from policyeval.tables import atomic_write_bytes

from .environment import SNAPSHOTS, checkpoints_root, data_root, policies_root

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackProblem:
    path: str
    message: str


class PolicyRepository(dg.ConfigurableResource):
    """Policy packs under `packs_dir` (default $POLICYEVAL_POLICIES or ./policies).

    `packs_dir` may be one pack (a folder with pack.yaml) or a folder of packs.
    """

    packs_dir: str = ""
    snapshot_dir: str = ""  # default: $POLICYEVAL_DATA_DIR/policy_snapshots

    def _packs_root(self) -> Path:
        return policies_root(self.packs_dir)

    def _snapshots(self) -> Path:
        return Path(self.snapshot_dir) if self.snapshot_dir else data_root() / SNAPSHOTS

    def pack_dirs(self) -> list[Path]:
        root = self._packs_root()
        if (root / PACK_FILE).exists():
            return [root]
        return sorted(p.parent for p in root.glob(f"*/{PACK_FILE}"))

    def scan(self) -> tuple[dict[str, PolicyPack], list[PackProblem]]:
        """Current valid versions by partition key, and the packs that failed to load."""
        versions: dict[str, PolicyPack] = {}
        problems: list[PackProblem] = []
        for path in self.pack_dirs():
            try:
                pack = load_policy(path)
            except PolicyevalError as exc:
                problems.append(PackProblem(str(path), str(exc)))
                continue
            versions[self.key_for(pack)] = pack
        return versions, problems

    @staticmethod
    def key_for(pack: PolicyPack) -> str:
        return policy_version_key(pack.id, pack.version, pack.content_hash)

    def snapshot_path(self, key: str) -> Path:
        return self._snapshots() / f"{safe_key(key)}.json"

    def snapshot(self, pack: PolicyPack) -> Path:
        path = self.snapshot_path(self.key_for(pack))
        if not path.exists():
            atomic_write_bytes(path, pack.model_dump_json(indent=1).encode())
        return path

    def load(self, key: str) -> PolicyPack:
        """The policy version a partition key names: from its snapshot, else from disk."""
        path = self.snapshot_path(key)
        if path.exists():
            return PolicyPack.model_validate(json.loads(path.read_text()))
        versions, problems = self.scan()
        if key in versions:
            return versions[key]
        detail = "; ".join(f"{p.path}: {p.message}" for p in problems)
        raise PolicyevalError(f"policy version {key!r} is neither snapshotted nor on disk under {self._packs_root()}" + (f" ({detail})" if detail else ""))


    def previous_version(self, keys: Sequence[str], key: str) -> tuple[str, PolicyPack] | None:
        """The version of the same pack registered last before `key`, in `keys` (dynamic
        partitions keep insertion order); None for a pack's first version.

        Keys start with the pack id, which narrows the search; the loaded pack's id decides,
        since one id can be a prefix of another.
        """
        pack = self.load(key)
        earlier = list(keys[: list(keys).index(key)]) if key in keys else list(keys)
        prefix = f"{safe_key(pack.id)}-"
        for candidate in reversed(earlier):
            if not candidate.startswith(prefix):
                continue
            try:
                old = self.load(candidate)
            except PolicyevalError:
                continue  # neither snapshotted nor on disk any more: it cannot be compared
            if old.id == pack.id:
                return candidate, old
        return None


class CheckpointRegistry(dg.ConfigurableResource):
    """Checkpoint manifests under `manifests_dir` (default $POLICYEVAL_CHECKPOINTS or ./checkpoints),
    plus, when `models_url` is set, the models an endpoint lists under `/v1/models` whose id
    starts with `model_prefix`."""

    manifests_dir: str = ""
    models_url: str = ""  # e.g. https://api.example.com/v1
    model_prefix: str = ""
    models_api_key_env: str = ""  # NAME of the env var with the endpoint's key
    discovered_params: dict = {"temperature": 0, "max_tokens": 256}

    def _root(self) -> Path:
        return checkpoints_root(self.manifests_dir)

    def scan(self) -> tuple[dict[str, CheckpointManifest], list[str]]:
        """Every loadable manifest by id, and one message per file (or discovery) that failed.

        Files load one by one, so a single broken manifest cannot hide or block the others.
        Files win over discovered models with the same id.
        """
        found: dict[str, CheckpointManifest] = {}
        problems: list[str] = []
        root = self._root()
        files = sorted([*root.glob("*.yaml"), *root.glob("*.yml")]) if root.is_dir() else []
        for path in files:
            try:
                manifest = load_manifest(path)
            except PolicyevalError as exc:
                problems.append(f"skipping manifest {exc}")
                continue
            if manifest.id in found:
                problems.append(f"skipping manifest {path}: checkpoint id {manifest.id!r} is also used by {found[manifest.id].source}")
                continue
            found[manifest.id] = manifest
        if self.models_url:
            try:
                discovered = self.discover()
            except (PolicyevalError, httpx.HTTPError, ValueError) as exc:
                problems.append(f"model discovery at {self.models_url.rstrip('/')}/models failed: {exc}")
                discovered = []
            for manifest in discovered:
                found.setdefault(manifest.id, manifest)
        return found, problems

    def manifests(self) -> dict[str, CheckpointManifest]:
        found, problems = self.scan()
        for problem in problems:
            log.warning(problem)
        return found

    def get(self, checkpoint_id: str) -> CheckpointManifest:
        manifests, problems = self.scan()
        if checkpoint_id not in manifests:
            detail = f"; problems: {'; '.join(problems)}" if problems else ""
            raise PolicyevalError(
                f"checkpoint {checkpoint_id!r} has no valid manifest in {self._root()} (known: {', '.join(sorted(manifests)) or 'none'}){detail}"
            )
        return manifests[checkpoint_id]

    def discover(self) -> list[CheckpointManifest]:
        """Manifests for the endpoint's listed models that match the prefix."""
        headers = {}
        if self.models_api_key_env:
            key = os.environ.get(self.models_api_key_env)
            if not key:
                raise PolicyevalError(f"environment variable {self.models_api_key_env} is not set (key for {self.models_url})")
            headers["Authorization"] = f"Bearer {key}"
        response = httpx.get(self.models_url.rstrip("/") + "/models", headers=headers, timeout=10)
        response.raise_for_status()
        out = []
        for entry in response.json().get("data", []):
            model = str(entry.get("id", ""))
            if model and model.startswith(self.model_prefix):
                out.append(
                    CheckpointManifest(
                        id=safe_key(model)[:64],
                        base_url=self.models_url,
                        model=model,
                        api_key_env=self.models_api_key_env or None,
                        params=dict(self.discovered_params),
                        tags=["discovered"],
                    )
                )
        return out
