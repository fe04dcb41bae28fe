"""YAML with line numbers: every value's line, keyed by its field path.

Errors in a policy must name the file, line and field; PyYAML's node tree knows the
lines, so we compose once and build both the plain data and a path -> line map.

Packs and manifests come from many hands and are loaded by CI, sensors and runs, so only
plain data is accepted: a file larger than MAX_BYTES, a document whose aliases expand to
more than MAX_VALUES values (a few nested aliases can stand for billions) or that nests
deeper than MAX_DEPTH (building recurses), or any tag that is not one of YAML's plain
types (`!!python/...`, custom `!tags`, on scalars, lists or mappings alike) is an error
naming the file and line, before anything is built. Every YAML file the project reads
(packs, release registries, manifests, label maps, XSTest configs) comes through here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..errors import InputError
from ..tables import decode_utf8

FieldPath = tuple[str | int, ...]

MAX_BYTES = 2_000_000
MAX_VALUES = 200_000
MAX_DEPTH = 64
PLAIN_TAGS = frozenset(f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp"))


def check_plain_data(root: yaml.Node | None, path: Path) -> None:
    """Raise InputError unless the node tree is plain data of bounded expanded size."""
    if root is None:
        return
    seen = 0
    stack = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            raise InputError(path, f"the document expands to more than {MAX_VALUES:,} values (aliases nested too deep?)",
                              line=node.start_mark.line + 1)
        if depth > MAX_DEPTH:
            raise InputError(path, f"lists and mappings nested more than {MAX_DEPTH} deep", line=node.start_mark.line + 1)
        if node.tag not in PLAIN_TAGS:
            raise InputError(path, f"YAML tag {node.tag!r} is not plain data; remove it", line=node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key, value in reversed(node.value):
                stack.extend(((value, depth + 1), (key, depth + 1)))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((child, depth + 1) for child in reversed(node.value))


def compose_plain(text: str, path: Path) -> yaml.Node | None:
    """The YAML node tree of `text`, checked to be plain data (see the module docstring)."""
    if len(text.encode("utf-8", "replace")) > MAX_BYTES:
        raise InputError(path, f"larger than {MAX_BYTES:,} bytes: not a policy or manifest file")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError:
        raise InputError(path, f"lists and mappings nested more than {MAX_DEPTH} deep") from None
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise InputError(path, f"invalid YAML: {exc.problem}", line=line) from None
    except yaml.YAMLError as exc:
        raise InputError(path, f"invalid YAML: {exc}") from None
    check_plain_data(root, path)
    return root


def load_yaml_with_lines(path: str | Path) -> tuple[Any, dict[FieldPath, int]]:
    """Parse a YAML file into (data, {field path: 1-based line})."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file" if not path.exists() else "not a file")
    _, data, lines = parse_yaml(decode_utf8(path, path.read_bytes()), path)
    return data, lines


def parse_yaml(text: str, path: Path) -> tuple[yaml.Node | None, Any, dict[FieldPath, int]]:
    """(node tree, plain data, {field path: line}) of a YAML text; None data for an empty one."""
    node = compose_plain(text, path)
    lines: dict[FieldPath, int] = {}
    if node is None:
        return None, None, lines
    return node, _build(node, (), lines, path), lines


def _build(node: yaml.Node, at: FieldPath, lines: dict[FieldPath, int], path: Path) -> Any:
    lines[at] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = construct_plain(key_node, path) if not isinstance(key_node, yaml.ScalarNode) else key_node.value
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
    return construct_plain(node, path)


def construct_plain(node: yaml.Node, path: Path) -> Any:
    """The Python value of a checked node tree; a value its own tag rejects (`!!int abc`,
    a list as a mapping key) is an error naming the file and line."""
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise InputError(path, f"invalid YAML: {exc.problem or exc.context}",
                         line=mark.line + 1 if mark else node.start_mark.line + 1) from None
    except (ValueError, TypeError) as exc:
        raise InputError(path, f"invalid YAML value ({exc})", line=node.start_mark.line + 1) from None
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
