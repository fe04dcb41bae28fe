"""A learned grader trained on a team's own gold set, on top of the shipped labeled rows.

The shipped rows (``training_data``) teach what refusing and complying look like across
many models; a team's gold set teaches its own policy's boundaries (what its people call
a safe completion or a partial) on its own models' answers. Training on both keeps the
breadth of the first and adds the second.

* **Labels.** A gold label is a behavior of the pack. The behavior head knows three
  classes, and the pack's vocabulary is ordinal (see ``records.outcome_of``): ``comply``
  and ``refuse`` are the ends, every other behavior (``safe_complete``,
  ``confirm_before_acting``, one a team adds) is between them and trains ``partial``;
  the pack's own rules still decide the middle behaviors when grading.
* **Harm.** A gold ``harmful`` cell trains the harm head; without one a row's harm is
  unknown and it trains the behavior head only.
* **Split.** Items are held out by a hash of their id, never by row order: the same item
  always falls on the same side, all answers to one item stay together (no prompt is on
  both sides), and a growing gold set never moves an item from held-out into training,
  so "never trained on" stays true of the held-out part as labels accumulate.
* **Weight.** Each gold training row is repeated ``GOLD_WEIGHT`` (4) times. The behavior
  head sees about 5,500 shipped rows; a gold set of tens to hundreds of rows counted once
  would barely move it, while the team's labels are the in-domain ones. Repetition is
  exactly an integer sample weight for the regularized logistic loss, and 4 is below the
  vocabulary's ``min_df`` (5), so a word seen in a single gold item cannot enter the
  vocabulary by repetition alone: gold re-weights features many rows share instead of
  memorizing one item's wording. As a gold set grows into the thousands it outweighs the
  shipped rows, as it should. Measured with RBR gold (excluded from the shipped behavior
  head, its own partial convention) standing in for a team's gold set, on its 109 held-out
  items: shipped kappa 0.12; 40 gold rows x1 / x4 / x10: 0.31 / 0.35 / 0.36; 242 rows:
  0.47 / 0.47 / 0.50. Beyond 4 the gain is within noise and one-off words start to count.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from ..errors import InputError, PolicyevalError
from ..policy.model import PolicyPack
from ..records import COMPLY, PARTIAL, REFUSE, content_hash
from ..tables import is_blank
from ..validation import GraderValidation, validate_grader
from .base import Grader
from .linear_model import GraderArtifact
from .training import BEHAVIOR_CLASSES, TrainingOptions, train_artifact
from .training_data import LabeledResponse, load_shipped

GOLD_SOURCE = "gold"
GOLD_TRAINING_VERSION = "1"  # bump when what this module feeds to training changes
GOLD_WEIGHT = 4
HELDOUT_FRACTION = 0.3
SPLIT_SALT = "policyeval-gold-split/1"
MIN_GOLD_ROWS = 20
MIN_CLASSES = 2

_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


def training_behavior(label: str) -> str:
    """A pack behavior as a behavior-head class: the two ends stay, anything between is partial."""
    return label if label in (COMPLY, REFUSE) else PARTIAL


@dataclass(frozen=True)
class GoldColumns:
    """Where a gold table keeps each field; the defaults are the gold-set schema (``campaigns.gold``)."""

    prompt: str = "prompt_text"
    response: str = "response_text"
    label: str = "label"
    item_id: str | None = "item_id"  # None: the item is the prompt (its hash)
    harmful: str | None = None
    category: str | None = "category_id"

    @classmethod
    def of_gold_set(cls, frame: pd.DataFrame) -> "GoldColumns":
        """A gold set's columns, with its `harmful` column when it has one."""
        return cls(harmful="harmful" if "harmful" in frame.columns else None)


@dataclass(frozen=True)
class GoldExample:
    """One labeled gold row: the label is a behavior of the compared labels (pack or comply/refuse/partial)."""

    item_id: str
    prompt: str
    response: str
    label: str
    harmful: bool | None = None
    category_id: str | None = None
    row: int = 0  # data row in its table (1 = the first)

    def labeled_response(self, copy: int = 0) -> LabeledResponse:
        return LabeledResponse(
            source=GOLD_SOURCE, group=f"{GOLD_SOURCE}:{self.item_id}",
            row_id=f"{GOLD_SOURCE}:{self.item_id}:{content_hash(self.response, 8)}:{copy}",
            prompt=self.prompt, response=self.response, behavior=training_behavior(self.label),
            harmful=self.harmful)


def _where(source: object, row: int) -> str:
    header = " after the header" if str(source).lower().endswith(".csv") else ""
    return f"data row {row} (1 = first row{header})"


def _harmful(value: Any, source: object, row: int, column: str) -> bool | None:
    if is_blank(value):
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE or text in ("1.0",):
        return True
    if text in _FALSE or text in ("0.0",):
        return False
    raise InputError(source, f"{_where(source, row)}: {value!r} in column {column} is not true or false")


def gold_examples(frame: pd.DataFrame, columns: GoldColumns = GoldColumns(), *, source: object = "<gold set>",
                  labels: Sequence[str | None] | None = None) -> list[GoldExample]:
    """The labeled rows of a gold table; an empty label is unlabeled and left out.

    ``labels`` replaces the label column (e.g. after a label map). A labeled row without
    a response, an empty item id, or a harm cell that is not true/false is an InputError
    naming the data row.
    """
    needed = [columns.prompt, columns.response] + ([] if labels is not None else [columns.label])
    needed += [c for c in (columns.item_id, columns.harmful) if c]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise InputError(source, f"no column(s) {', '.join(missing)} (columns: {', '.join(map(str, frame.columns))})")
    if labels is not None and len(labels) != len(frame):
        raise ValueError(f"{len(labels)} labels for {len(frame)} rows")
    cells = list(labels) if labels is not None else list(frame[columns.label])
    category = columns.category if columns.category and columns.category in frame.columns else None
    out: list[GoldExample] = []
    for i, record in enumerate(frame.to_dict("records")):
        row = i + 1
        if is_blank(cells[i]):
            continue
        response = record[columns.response]
        if is_blank(response):
            raise InputError(source, f"{_where(source, row)}: empty {columns.response}; a label needs the response it judges")
        prompt = "" if is_blank(record[columns.prompt]) else str(record[columns.prompt])
        if columns.item_id:
            if is_blank(record[columns.item_id]):
                raise InputError(source, f"{_where(source, row)}: empty {columns.item_id}")
            item_id = str(record[columns.item_id]).strip()
        else:
            item_id = f"prompt-{content_hash(prompt)}"
        out.append(GoldExample(
            item_id=item_id, prompt=prompt, response=str(response), label=str(cells[i]).strip(),
            harmful=_harmful(record[columns.harmful], source, row, columns.harmful) if columns.harmful else None,
            category_id=None if category is None or is_blank(record[category]) else str(record[category]),
            row=row))
    return out


def read_gold_table(path: str | Path, columns: Sequence[str]) -> pd.DataFrame:
    """A gold table from CSV (text cells, only empty cells missing) or Parquet, naming any absent column."""
    from ..tables import read_csv_columns, read_parquet

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return read_csv_columns(path, columns)
    if suffix in (".parquet", ".pq"):
        return read_parquet(path, required=columns)
    raise InputError(path, "a gold set is a .csv or .parquet file")


def gold_hash(examples: Sequence[GoldExample]) -> str:
    """The content of a gold set as training sees it, independent of row order."""
    return content_hash(sorted([e.item_id, e.prompt, e.response, e.label, e.harmful] for e in examples))


@dataclass(frozen=True)
class GoldSplit:
    """Train / held-out by a hash of the item id: a pure function of the id, so it is stable
    under any row order and as the gold set grows."""

    heldout_fraction: float = HELDOUT_FRACTION
    salt: str = SPLIT_SALT

    def is_heldout(self, item_id: str) -> bool:
        digest = hashlib.sha256(f"{self.salt}\0{item_id}".encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big") / 2.0**64 < self.heldout_fraction

    def split(self, examples: Sequence[GoldExample]) -> tuple[list[GoldExample], list[GoldExample]]:
        """(train, held out)."""
        train = [e for e in examples if not self.is_heldout(e.item_id)]
        heldout = [e for e in examples if self.is_heldout(e.item_id)]
        return train, heldout

    def as_dict(self) -> dict[str, object]:
        return {"by": "item_id", "heldout_fraction": self.heldout_fraction, "salt": self.salt}

    @classmethod
    def of(cls, artifact: GraderArtifact) -> "GoldSplit | None":
        """The split an artifact was trained with; None when it learned from no gold set."""
        gold = artifact.provenance.get("gold")
        split = gold.get("split") if isinstance(gold, Mapping) else None
        if not isinstance(split, Mapping):
            return None
        return cls(heldout_fraction=float(split["heldout_fraction"]), salt=str(split["salt"]))


def untrainable_reason(examples: Sequence[GoldExample], split: GoldSplit = GoldSplit()) -> str | None:
    """Why a gold set is too small to train on, or None when it is enough.

    Fewer than ``MIN_GOLD_ROWS`` labels add noise, not a policy; a training part with one
    behavior class teaches a prior shift, not a boundary.
    """
    if len(examples) < MIN_GOLD_ROWS:
        return f"{len(examples)} labeled gold row(s); training needs at least {MIN_GOLD_ROWS}"
    train, _ = split.split(examples)
    classes = sorted({training_behavior(e.label) for e in train})
    if len(classes) < MIN_CLASSES:
        return (f"the training part ({len(train)} rows) holds only {', '.join(classes) or 'nothing'}: "
                f"needs at least {MIN_CLASSES} of {', '.join(BEHAVIOR_CLASSES)}")
    return None


def train_from_gold(examples: Sequence[GoldExample], *, base: Sequence[LabeledResponse] | None = None,
                    options: TrainingOptions = TrainingOptions(), split: GoldSplit = GoldSplit(),
                    weight: int = GOLD_WEIGHT, provenance: Mapping[str, object] | None = None,
                    ) -> tuple[GraderArtifact, list[GoldExample]]:
    """(the model, the held-out gold rows it never saw): ``base`` (default: the shipped
    rows) plus the gold training part, each gold row counted ``weight`` times."""
    reason = untrainable_reason(examples, split)
    if reason is not None:
        raise PolicyevalError(f"cannot train on this gold set: {reason}")
    if weight < 1:
        raise ValueError("weight must be at least 1")
    train, heldout = split.split(examples)
    rows = list(base if base is not None else load_shipped())
    rows += [e.labeled_response(k) for e in sorted(train, key=lambda e: (e.item_id, e.response)) for k in range(weight)]
    gold = {
        "gold_hash": gold_hash(examples),
        "rows": len(examples),
        "train_rows": len(train),
        "heldout_rows": len(heldout),
        "train_labels": dict(sorted(_count(training_behavior(e.label) for e in train).items())),
        "weight": weight,
        "split": split.as_dict(),
        "training_version": GOLD_TRAINING_VERSION,
        **dict(provenance or {}),
    }
    artifact = train_artifact(rows, options, provenance={
        "trained_from": "policyeval shipped training data and a gold set", "gold": gold})
    return artifact, heldout


def _count(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return counts


def never_trained_on(gold: pd.DataFrame, artifact: GraderArtifact, id_column: str = "item_id") -> pd.DataFrame:
    """The rows of a gold table ``artifact`` cannot have learned from: its held-out items
    when it was trained on gold (by the split it recorded), every row otherwise."""
    split = GoldSplit.of(artifact)
    if split is None or gold.empty:
        return gold
    return gold[[split.is_heldout(str(i)) for i in gold[id_column]]].reset_index(drop=True)


def heldout_validation(heldout: Sequence[GoldExample], grader: Grader, labels: Sequence[str],
                       pack: PolicyPack | None = None) -> GraderValidation:
    """A grader against the held-out gold labels (accuracy, kappa, confusion), in ``labels``;
    with a pack each row is graded against its category."""
    from .grade_table import grade_texts

    known = {c.id: c for _, c in pack.categories()} if pack is not None else {}
    categories = [known.get(e.category_id) if e.category_id else None for e in heldout] if pack is not None else None
    grades = grade_texts([e.prompt for e in heldout], [e.response for e in heldout], grader, list(labels), categories)
    return validate_grader([e.label for e in heldout], [g.behavior for g in grades],
                           [e.category_id for e in heldout], list(labels))
