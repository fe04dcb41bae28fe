"""Released versions: a label, once released, names one content hash forever.

`releases.yaml` in the pack directory is append-only. Re-using a released label for
different content is an error, because every number measured under that label would
otherwise point at two different policies.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import InputError, PolicyevalError
from ..tables import atomic_write_bytes
from .model import PolicyPack
from .problems import Problem
from .yaml_lines import load_yaml_with_lines

REGISTRY_FILE = "releases.yaml"


@dataclass(frozen=True)
class Release:
    version: str
    content_hash: str
    released_at: str
    line: int | None = field(default=None, compare=False)


def read_releases(root: str | Path) -> list[Release]:
    path = Path(root) / REGISTRY_FILE
    if not path.exists():
        return []
    data, lines = load_yaml_with_lines(path)
    entries = (data or {}).get("releases", []) if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise InputError(path, "expected a mapping with a 'releases' list", line=1)
    out = []
    for index, entry in enumerate(entries):
        line = lines.get(("releases", index))
        if not isinstance(entry, dict) or not {"version", "content_hash"} <= set(entry):
            raise InputError(path, f"releases[{index}] needs 'version' and 'content_hash'", line=line)
        out.append(Release(str(entry["version"]), str(entry["content_hash"]), str(entry.get("released_at", "")), line))
    return out


def check_release(pack: PolicyPack) -> list[Problem]:
    """An error if the pack's label was released with different content."""
    path = Path(pack.root) / REGISTRY_FILE
    try:
        releases = read_releases(pack.root)
    except InputError as exc:
        return [Problem(exc.path, exc.line, "", exc.message)]
    for release in releases:
        if release.version == pack.version and release.content_hash != pack.content_hash:
            return [
                Problem(
                    str(path),
                    release.line,
                    "releases",
                    f"version {pack.version!r} was released with content hash {release.content_hash[:12]}, "
                    f"but the pack now hashes to {pack.content_hash[:12]}: a released version is immutable, "
                    "so give the changed pack a new version label",
                )
            ]
    return []


def release(pack: PolicyPack, today: dt.date | None = None) -> Release:
    """Record the pack's label and hash; idempotent for the same content."""
    problems = check_release(pack)
    if problems:
        raise PolicyevalError(str(problems[0]))
    releases = read_releases(pack.root)
    for existing in releases:
        if existing.version == pack.version:
            return existing
    new = Release(pack.version, pack.content_hash, (today or dt.date.today()).isoformat())
    entries = [{"version": r.version, "content_hash": r.content_hash, "released_at": r.released_at} for r in releases]
    entries.append({"version": new.version, "content_hash": new.content_hash, "released_at": new.released_at})
    header = "# Released versions of this pack: append-only. A label names one content hash forever.\n"
    atomic_write_bytes(Path(pack.root) / REGISTRY_FILE, (header + yaml.safe_dump({"releases": entries}, sort_keys=False)).encode())
    return new
