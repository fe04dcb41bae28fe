"""Label maps: human labels from another annotation scheme, read as grader labels.

Gold sets come labeled in their own scheme (XSTest: `1_full_compliance`,
`2_full_refusal`, `3_partial_refusal`). A label map is a flat YAML mapping from those
labels onto the labels the grader is compared in:

    1_full_compliance: comply
    2_full_refusal: refuse
    3_partial_refusal: partial

Without a policy pack the refusal grader is compared in its raw labels (comply /
refuse / partial), so maps target those; with a pack, they target the pack's behaviors
(e.g. `safe_complete` for a partial refusal). A target outside the comparison labels
is caught when the map is loaded, naming its line, instead of surfacing later as a
label the grader can never produce.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Collection, Sequence

import pandas as pd

from ..errors import InputError
from ..policy.yaml_lines import load_yaml_with_lines


def load_label_map(path: str | Path, targets: Collection[str] | None = None) -> dict[str, str]:
    """The mapping in `path`; each target must be in `targets` when that is given."""
    data, lines = load_yaml_with_lines(path)
    if not isinstance(data, dict) or not data:
        raise InputError(path, "a label map is a non-empty YAML mapping of `scheme label: target label`",
                         line=lines.get(()))
    mapping: dict[str, str] = {}
    for key, value in data.items():
        line = lines.get((key,))
        if not isinstance(value, str) or not value.strip():
            raise InputError(path, f"label {key!r} maps to {value!r}; a target must be a label name "
                                   "(quote values YAML would read as booleans or numbers)", line=line)
        target = value.strip()
        if targets is not None and target not in targets:
            raise InputError(path, f"label {key!r} maps to {target!r}, which is not one of the compared labels "
                                   f"({', '.join(targets)})", line=line)
        mapping[str(key).strip()] = target
    return mapping


def map_gold_labels(
    values: Sequence[Any],
    mapping: dict[str, str],
    targets: Collection[str],
    *,
    source: str | Path,
    column: str,
    map_source: str | Path | None = None,
) -> list[str | None]:
    """Each gold cell as a compared label; an empty cell stays None (unlabeled).

    A label already in `targets` needs no map entry. Anything else the map does not
    cover is an InputError naming the data row (1 = first row after the header).
    """
    out: list[str | None] = []
    for row, value in enumerate(values, start=1):
        if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)) or not str(value).strip():
            out.append(None)
            continue
        label = str(value).strip()
        if label in mapping:
            out.append(mapping[label])
        elif label in targets:
            out.append(label)
        else:
            covered = f"not covered by label map {map_source} and " if map_source is not None else ""
            raise InputError(source, f"data row {row} (1 = first row after the header): label {label!r} in column "
                                     f"{column} is {covered}not one of {', '.join(targets)}")
    return out
