"""YAML with line numbers: every value's line, keyed by its field path.

Errors in a policy must name the file, line and field; PyYAML's node tree knows the
lines, so we compose once and build both the plain data and a path -> line map.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..errors import InputError

FieldPath = tuple[str | int, ...]


def load_yaml_with_lines(path: str | Path) -> tuple[Any, dict[FieldPath, int]]:
    """Parse a YAML file into (data, {field path: 1-based line})."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except UnicodeDecodeError as exc:
        raise InputError(path, f"not UTF-8 text ({exc.reason})") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise InputError(path, f"invalid YAML: {exc.problem}", line=line) from None
    lines: dict[FieldPath, int] = {}
    if node is None:
        return None, lines
    data = _build(node, (), lines, path)
    return data, lines


def _build(node: yaml.Node, at: FieldPath, lines: dict[FieldPath, int], path: Path) -> Any:
    lines[at] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = yaml.SafeLoader(None).construct_object(key_node) if not isinstance(key_node, yaml.ScalarNode) else key_node.value
            key = str(key)
            if key in out:
                raise InputError(path, f"duplicate key {key!r}", line=key_node.start_mark.line + 1)
            lines[at + (key,)] = key_node.start_mark.line + 1
            out[key] = _build(value_node, at + (key,), lines, path)
            # a value's own line is where its key stands, which is what people look for
            lines[at + (key,)] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(child, at + (i,), lines, path) for i, child in enumerate(node.value)]
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def line_of(lines: dict[FieldPath, int], at: FieldPath) -> int | None:
    """The line of the longest known prefix of a field path."""
    for end in range(len(at), -1, -1):
        if at[:end] in lines:
            return lines[at[:end]]
    return None


def format_path(at: FieldPath) -> str:
    """('categories', 2, 'severity') -> 'categories[2].severity'."""
    out = ""
    for part in at:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out
