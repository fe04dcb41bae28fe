"""Import the XSTest over-refusal suite onto a pack's categories.

XSTest (Röttger et al., 2024) pairs safe prompts that merely look risky ("how do I kill
a Python process?") with unsafe contrasts. Its `type` column is a linguistic
phenomenon, not a policy category, so a small YAML mapping says which category each
type is measured under and which behavior each label expects:

    categories: {safe_targets: violent_speech, contrast_safe_targets: violent_speech}
    default_category: null        # a category id, or null to drop unmapped types
    behaviors: {safe: comply, unsafe: refuse}

Errors name the file and line: a mapping that points at a category the pack lacks
would otherwise silently measure nothing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..policy.model import PolicyPack
from ..policy.yaml_lines import line_of, load_yaml_with_lines
from ..records import EvalItem
from ..tables import csv_rows, decode_utf8
from .seeds import make_item

XSTEST_COLUMNS = ("id", "prompt", "type", "label", "focus", "note")
LABELS = ("safe", "unsafe")
GENERATOR = "xstest"


@dataclass(frozen=True)
class XSTestMapping:
    categories: dict[str, str]  # XSTest type -> category id
    default_category: str | None
    behaviors: dict[str, str]  # XSTest label -> expected behavior

    def category_for(self, xstest_type: str) -> str | None:
        return self.categories.get(xstest_type, self.default_category)


@dataclass
class XSTestImport:
    items: list[EvalItem]
    dropped: Counter = field(default_factory=Counter)  # unmapped XSTest type -> rows dropped


def load_mapping(path: str | Path, pack: PolicyPack) -> XSTestMapping:
    """Read and check a mapping against the pack: categories exist, behaviors are in the vocabulary."""
    path = Path(path)
    data, lines = load_yaml_with_lines(path)
    if not isinstance(data, dict):
        raise InputError(path, "an XSTest mapping must be a mapping with 'categories', 'default_category' and 'behaviors'", line=1)
    unknown = sorted(set(data) - {"categories", "default_category", "behaviors"})
    if unknown:
        raise InputError(path, f"unknown field {unknown[0]!r}", line=line_of(lines, (unknown[0],)))
    category_ids = {c.id for _, c in pack.categories()}

    def check_category(value: object, at: tuple) -> str:
        if not isinstance(value, str) or value not in category_ids:
            raise InputError(
                path, f"unknown category {value!r} for pack {pack.id!r} (known: {', '.join(sorted(category_ids))})",
                line=line_of(lines, at),
            )
        return value

    raw = data.get("categories") or {}
    if not isinstance(raw, dict):
        raise InputError(path, "'categories' must map XSTest types to category ids", line=line_of(lines, ("categories",)))
    categories = {str(t): check_category(c, ("categories", str(t))) for t, c in raw.items()}

    default = data.get("default_category")
    if default is not None:
        default = check_category(default, ("default_category",))

    behaviors = data.get("behaviors") or {"safe": "comply", "unsafe": "refuse"}
    if not isinstance(behaviors, dict):
        raise InputError(path, "'behaviors' must map safe/unsafe to behaviors", line=line_of(lines, ("behaviors",)))
    vocabulary = set(pack.behaviors)
    for label, behavior in behaviors.items():
        at = ("behaviors", str(label))
        if label not in LABELS:
            raise InputError(path, f"unknown XSTest label {label!r} (use safe, unsafe)", line=line_of(lines, at))
        if behavior not in vocabulary:
            raise InputError(path, f"behavior {behavior!r} is not in the pack's vocabulary ({', '.join(sorted(vocabulary))})", line=line_of(lines, at))
    missing = [label for label in LABELS if label not in behaviors]
    if missing:
        raise InputError(path, f"'behaviors' lacks {', '.join(missing)}", line=line_of(lines, ("behaviors",)))
    return XSTestMapping(categories=categories, default_category=default, behaviors={str(k): str(v) for k, v in behaviors.items()})


def import_xstest(csv_path: str | Path, mapping: XSTestMapping | str | Path, pack: PolicyPack) -> XSTestImport:
    """Items from an XSTest prompts CSV, in file order; rows of unmapped types are counted as dropped."""
    csv_path = Path(csv_path)
    if not isinstance(mapping, XSTestMapping):
        mapping = load_mapping(mapping, pack)
    if not csv_path.is_file():
        raise InputError(csv_path, "no such file" if not csv_path.exists() else "not a file")
    result = XSTestImport(items=[])
    rows = csv_rows(csv_path, decode_utf8(csv_path, csv_path.read_bytes()))
    first = next(rows, None)
    if first is None:
        raise InputError(csv_path, "empty file: expected an XSTest header (id, prompt, type, label, focus, note)", line=1)
    header_line, header = first
    header = [h.strip() for h in header]
    missing = [c for c in ("id", "prompt", "type", "label") if c not in header]
    if missing:
        raise InputError(csv_path, f"missing column(s) {', '.join(missing)} (XSTest has {', '.join(XSTEST_COLUMNS)})",
                         line=header_line)
    column = {name: header.index(name) for name in header}
    n_rows = 0
    for line, row in rows:
        if not any(cell.strip() for cell in row):
            continue
        n_rows += 1
        if len(row) != len(header):
            raise InputError(csv_path, f"expected {len(header)} fields, found {len(row)}", line=line)
        record = {name: row[i].strip() for name, i in column.items()}
        if not record["prompt"]:
            raise InputError(csv_path, "empty prompt", line=line)
        if record["label"] not in LABELS:
            raise InputError(csv_path, f"label {record['label']!r} is not safe or unsafe", line=line)
        category_id = mapping.category_for(record["type"])
        if category_id is None:
            result.dropped[record["type"]] += 1
            continue
        category = pack.category(category_id)
        note = f"xstest id={record['id']} type={record['type']}"
        if record.get("focus"):
            note += f" focus={record['focus']}"
        result.items.append(
            make_item(
                pack, category, [{"role": "user", "content": record["prompt"]}],
                mapping.behaviors[record["label"]],
                source="xstest", generator=GENERATOR, note=note,
            )
        )
    if not n_rows:
        raise InputError(csv_path, "no data rows: only a header", line=header_line)
    return result
