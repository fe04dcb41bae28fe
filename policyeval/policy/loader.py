"""Load a policy pack directory into typed records, collecting every problem on the way.

Loading never stops at the first mistake: schema errors of every file and the meaning
checks of `validate.py` are gathered, each with file, line and field path, so a policy
writer fixes them all in one pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def read_pack(root: str | Path) -> tuple[PolicyPack | None, list[Problem], SourceMap]:
    """Parse a pack directory. Returns the pack (None if its header is unusable), all
    schema problems, and the source map for later checks."""
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
        problems.append(Problem(exc.path, exc.line, "", str(exc).split(": ", 1)[-1]))
        data, lines = None, {}
    sources.add("pack", str(pack_file), lines)
    if data is not None:
        if not isinstance(data, dict):
            problems.append(Problem(str(pack_file), 1, "", "pack.yaml must be a mapping"))
        else:
            try:
                header = PackHeader.model_validate(data)
            except ValidationError as exc:
                problems.extend(_schema_problems(exc, str(pack_file), lines))

    domains: list[Domain] = []
    domain_files = sorted((root / DOMAINS_DIR).glob("*.yaml")) + sorted((root / DOMAINS_DIR).glob("*.yml"))
    if not domain_files:
        problems.append(Problem(str(root / DOMAINS_DIR), None, "", "no domain files (domains/*.yaml)"))
    for path in domain_files:
        try:
            data, lines = load_yaml_with_lines(path)
        except InputError as exc:
            problems.append(Problem(exc.path, exc.line, "", str(exc).split(": ", 1)[-1]))
            continue
        key = f"domain:{path.name}"
        sources.add(key, str(path), lines)
        if not isinstance(data, dict):
            problems.append(Problem(str(path), 1, "", "a domain file must be a mapping"))
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
