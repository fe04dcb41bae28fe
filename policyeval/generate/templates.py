"""Template expansion: one prompt pattern, every combination of its slot values.

Templates let a policy writer state minimal pairs ("store a {weapon} safely") once and
get full coverage. Expansion order is the product of slots in the order they are
written, so the same template always yields the same items in the same order.
"""

from __future__ import annotations

import itertools
import string
from typing import Any

from ..errors import PolicyevalError
from ..policy.model import Category, PolicyPack, Template
from ..records import EvalItem
from .seeds import make_item


def fill(text: str, values: dict[str, str]) -> str:
    """`text` with each `{slot}` replaced; `{{` and `}}` are literal braces.

    Format specs and conversions are not applied: slot values are inserted verbatim, and
    braces inside a value are never re-read as placeholders.
    """
    out: list[str] = []
    for literal, name, _spec, _conversion in string.Formatter().parse(text):
        out.append(literal)
        if name is None:
            continue
        if name not in values:
            raise PolicyevalError(f"template slot {{{name}}} has no values")
        out.append(values[name])
    return "".join(out)


def slot_combinations(template: Template) -> list[dict[str, str]]:
    """Every assignment of slot values, slots in written order, values in listed order."""
    names = list(template.slots)
    return [dict(zip(names, combo)) for combo in itertools.product(*(template.slots[n] for n in names))]


def _chat(template: Template, values: dict[str, str]) -> list[dict[str, Any]]:
    if template.text is not None:
        return [{"role": "user", "content": fill(template.text, values)}]
    messages = []
    for message in template.messages or []:
        m = message.model_dump(exclude_none=True)
        if isinstance(m.get("content"), str):
            m["content"] = fill(m["content"], values)
        messages.append(m)  # structured content (images, tool parts) passes through untouched
    return messages


def expand_template(template: Template) -> list[list[dict[str, Any]]]:
    """The chats a template expands to, one per slot combination."""
    return [_chat(template, values) for values in slot_combinations(template)]


def template_note(template: Template, values: dict[str, str]) -> str:
    assignment = ", ".join(f"{k}={v}" for k, v in values.items())
    return f"template {template.id}" + (f": {assignment}" if assignment else "")


def template_items(pack: PolicyPack, category: Category) -> list[EvalItem]:
    items = []
    for template in category.templates:
        for values in slot_combinations(template):
            items.append(
                make_item(
                    pack, category, _chat(template, values), template.expected,
                    source="template", note=template_note(template, values),
                )
            )
    return items
