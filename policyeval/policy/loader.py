"""Load a policy pack directory into typed records, collecting every problem on the way.

Loading never stops at the first mistake: schema errors of every file and the meaning
checks of `validate.py` are gathered, each with file, line and field path, so a policy
writer fixes them all in one pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from pydantic import ValidationError

from ..errors import InputError
from .hashing import pack_content_hash
from .model import Domain, PackHeader, PolicyPack
from .problems import PolicyValidationError, Problem
from .yaml_lines import FieldPath, format_path, line_of, load_yaml_with_lines

PACK_FILE = "pack.yaml"
DOMAINS_DIR = "domains"


class SourceMap:
    """Where each domain, category and field of a pack was written: for error messages."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[str, dict[FieldPath, int]]] = {}  # key -> (file, lines)
        self.domain_keys: list[str] = []  # parallel to PolicyPack.domains

    def add(self, key: str, file: str, lines: dict[FieldPath, int]) -> None:
        self.files[key] = (file, lines)

    def locate(self, key: str, at: FieldPath) -> tuple[str, int | None]:
        file, lines = self.files[key]
        return file, line_of(lines, at)

    def problem(self, key: str, at: FieldPath, message: str, severity: str = "error") -> Problem:
        file, line = self.locate(key, at)
        return Problem(file, line, format_path(at), message, severity)


def _schema_problems(exc: ValidationError, file: str, lines: dict[FieldPath, int], prefix: FieldPath = ()) -> list[Problem]:
    problems = []
    for error in exc.errors():
        at = prefix + tuple(part for part in error["loc"] if not (isinstance(part, str) and "[" in part))
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        elif error["type"] == "missing":
            message = "required field is missing"
        problems.append(Problem(file, line_of(lines, at), format_path(at), message))
    return problems


def _not_a_mapping(data: Any, lines: dict[FieldPath, int], what: str) -> tuple[int, str] | None:
    """(line, message) when a pack file's document is not a mapping: an empty file has no
    header or domain to load, so it must be an error rather than be skipped."""
    if isinstance(data, dict):
        return None
    if data is None:
        return 1, f"the file is empty (or only comments): {what} must be a YAML mapping"
    kind = "a list" if isinstance(data, list) else f"a single value ({type(data).__name__})"
    return lines.get((), 1), f"{what} must be a YAML mapping, not {kind}"


def read_pack(root: str | Path, extra_domains: Sequence[str | Path] = ()) -> tuple[PolicyPack | None, list[Problem], SourceMap]:
    """Parse a pack directory. Returns the pack (None if its header is unusable), all
    schema problems, and the source map for later checks.

    `extra_domains` are domain files read as if they were in `domains/`: a proposal (such
    as the emerging-risk report's draft categories) checked against the pack it extends."""
    root = Path(root)
    sources = SourceMap()
    problems: list[Problem] = []
    if not root.is_dir():
        raise InputError(root, "not a policy pack directory (expected a folder with pack.yaml)")
    pack_file = root / PACK_FILE
    if not pack_file.exists():
        raise InputError(pack_file, "no such file: a policy pack needs pack.yaml")

    header: PackHeader | None = None
    try:
        data, lines = load_yaml_with_lines(pack_file)
    except InputError as exc:
        problems.append(Problem(exc.path, exc.line, "", exc.message))
        data, lines = None, {}
    else:
        shape = _not_a_mapping(data, lines, "pack.yaml")
        if shape is not None:
            problems.append(Problem(str(pack_file), shape[0], "", shape[1]))
        else:
            try:
                header = PackHeader.model_validate(data)
            except ValidationError as exc:
                problems.extend(_schema_problems(exc, str(pack_file), lines))
    sources.add("pack", str(pack_file), lines)

    domains: list[Domain] = []
    domain_files = sorted((root / DOMAINS_DIR).glob("*.yaml")) + sorted((root / DOMAINS_DIR).glob("*.yml"))
    if not domain_files:
        problems.append(Problem(str(root / DOMAINS_DIR), None, "", "no domain files (domains/*.yaml)"))
    for extra in extra_domains:
        if not Path(extra).is_file():
            raise InputError(extra, "no such domain file")
    for path in [*domain_files, *(Path(extra) for extra in extra_domains)]:
        try:
            data, lines = load_yaml_with_lines(path)
        except InputError as exc:
            problems.append(Problem(exc.path, exc.line, "", exc.message))
            continue
        key = f"domain:{path.name}" if path.parent == root / DOMAINS_DIR else f"extra:{path}"
        sources.add(key, str(path), lines)
        shape = _not_a_mapping(data, lines, "a domain file")
        if shape is not None:
            problems.append(Problem(str(path), shape[0], "", shape[1]))
            continue
        try:
            domain = Domain.model_validate(data)
        except ValidationError as exc:
            problems.extend(_schema_problems(exc, str(path), lines))
            continue
        sources.domain_keys.append(key)
        domains.append(domain)

    if header is None:
        return None, problems, sources
    pack = PolicyPack(header=header, domains=domains, root=str(root))
    pack = pack.model_copy(update={"content_hash": pack_content_hash(pack)})
    return pack, problems, sources


def load_policy(root: str | Path, check_registry: bool = True) -> PolicyPack:
    """Load and validate a pack; raise PolicyValidationError listing every error."""
    from .validate import validate_pack  # validate imports loader's types

    pack, problems = validate_pack(root, check_registry=check_registry)
    errors = [p for p in problems if p.severity == "error"]
    if errors or pack is None:
        raise PolicyValidationError(sorted(problems, key=_problem_order))
    return pack


def _problem_order(problem: Problem) -> tuple[Any, ...]:
    return (problem.file, problem.line or 0, problem.field, problem.message)
