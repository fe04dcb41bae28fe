"""Grade deployment conversations with the same grader the eval baseline used.

Deployment traffic has no expected behavior, so what can be measured is the observed
one: how often the model refuses. Graded in the refusal classifier's raw labels
(comply / refuse / partial) or mapped to a pack's vocabulary; `refuse` means the same
in both, so the refusal rate compares with an eval baseline graded either way.
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from ..graders import DEFAULT_GRADER, RAW_LABELS, Grader, grade_texts, make_grader
from ..policy.model import Category, PolicyPack
from ..records import NON_VERDICTS, REFUSE
from .conversations import DeploymentConversation

GRADED_COLUMNS = ["conversation_id", "line", "timestamp", "category_id", "prompt_text", "response_text",
                  "grader_id", "grader_version", "behavior", "valid", "refused"]


def grade_conversations(
    conversations: Sequence[DeploymentConversation],
    pack: PolicyPack | None = None,
    grader: Grader | None = None,
    raw_labels: bool = False,
) -> pd.DataFrame:
    """One row per conversation with the grader's behavior and whether it is a refusal.

    The vocabulary is the pack's unless `raw_labels` (or no pack) is given; a category
    the pack defines grades with that category's guidance.
    """
    grader = grader if grader is not None else make_grader(DEFAULT_GRADER, pack=pack)
    vocabulary = list(pack.behaviors) if pack is not None and not raw_labels else list(RAW_LABELS)
    known: dict[str, Category] = {c.id: c for _, c in pack.categories()} if pack is not None else {}
    grades = grade_texts(
        [c.prompt_text for c in conversations],
        [c.response_text for c in conversations],
        grader,
        vocabulary,
        [known.get(c.category_id) for c in conversations],
    )
    rows = []
    for conversation, grade in zip(conversations, grades):
        valid = grade.behavior not in NON_VERDICTS
        rows.append({
            "conversation_id": conversation.conversation_id,
            "line": conversation.line,
            "timestamp": conversation.timestamp,
            "category_id": conversation.category_id,
            "prompt_text": conversation.prompt_text,
            "response_text": conversation.response_text,
            "grader_id": grader.id,
            "grader_version": grader.version,
            "behavior": grade.behavior,
            "valid": valid,
            "refused": valid and grade.behavior == REFUSE,
        })
    return pd.DataFrame(rows, columns=GRADED_COLUMNS)
