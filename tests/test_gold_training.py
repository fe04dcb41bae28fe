"""Graders trained on a team's gold set: label mapping, the item-id split, errors that name the
file and row, and `policyeval train-grader GOLD.csv` end to end (one training per module)."""

from __future__ import annotations

import contextlib
import io
import random
from pathlib import Path

import pandas as pd
import pytest

from policyeval.cli import main
from policyeval.errors import InputError, PolicyevalError
from policyeval.graders.gold_training import (
    GOLD_SOURCE,
    GOLD_WEIGHT,
    MIN_GOLD_ROWS,
    GoldColumns,
    GoldExample,
    GoldSplit,
    gold_examples,
    gold_hash,
    heldout_validation,
    never_trained_on,
    read_gold_table,
    train_from_gold,
    training_behavior,
    untrainable_reason,
)
from policyeval.graders.learned import LearnedGrader
from policyeval.graders.linear_model import GraderArtifact
from policyeval.testing.gold import synthetic_gold

MINI = Path(__file__).resolve().parent / "packs" / "mini"
CSV_COLUMNS = {"prompt_text": "prompt", "response_text": "response", "label": "label", "item_id": "id"}


def example(item_id: str, label: str = "comply", response: str = "Sure, here you go.") -> GoldExample:
    return GoldExample(item_id=item_id, prompt=f"prompt {item_id}", response=response, label=label)


# ---------------------------------------------------------------------------
# Labels and rows


@pytest.mark.parametrize("label, expected", [
    ("comply", "comply"), ("refuse", "refuse"), ("partial", "partial"),
    ("safe_complete", "partial"), ("confirm_before_acting", "partial"), ("a_behavior_a_team_added", "partial"),
])
def test_pack_behaviors_map_onto_the_behavior_head(label: str, expected: str) -> None:
    assert training_behavior(label) == expected
    assert example("x", label).labeled_response().behavior == expected


def test_gold_set_rows_become_labeled_responses() -> None:
    gold = synthetic_gold(6).assign(harmful=["true", "0", None, "yes", "False", ""])
    gold.loc[2, "label"] = None  # unlabeled: left out
    examples = gold_examples(gold, GoldColumns.of_gold_set(gold))
    assert [e.row for e in examples] == [1, 2, 4, 5, 6]
    assert [e.harmful for e in examples] == [True, False, True, False, None]
    assert [e.item_id for e in examples] == [gold["item_id"][i] for i in (0, 1, 3, 4, 5)]
    assert examples[0].category_id == "firearm_modification"
    first = examples[0].labeled_response(copy=2)
    assert first.source == GOLD_SOURCE and first.behavior == "comply" and first.harmful is True
    assert first.row_id.endswith(":2") and first.row_id != examples[0].labeled_response(copy=0).row_id
    # Without a harmful column the harm labels are unknown, not false
    assert {e.harmful for e in gold_examples(synthetic_gold(6))} == {None}


def test_without_an_id_column_an_item_is_its_prompt() -> None:
    frame = pd.DataFrame({"p": ["Q1", "Q1", "Q2"], "r": ["a", "b", "c"], "l": ["comply", "refuse", "comply"]})
    examples = gold_examples(frame, GoldColumns(prompt="p", response="r", label="l", item_id=None, category=None))
    assert examples[0].item_id == examples[1].item_id != examples[2].item_id


# ---------------------------------------------------------------------------
# The split


def test_split_is_by_item_id_hash_not_row_order() -> None:
    examples = [example(f"it-{i:04d}", "comply" if i % 2 else "refuse") for i in range(1000)]
    train, heldout = GoldSplit().split(examples)
    assert 0.25 < len(heldout) / len(examples) < 0.35
    shuffled = examples[:]
    random.Random(1).shuffle(shuffled)
    train2, heldout2 = GoldSplit().split(shuffled)
    assert {e.item_id for e in heldout2} == {e.item_id for e in heldout}
    assert {e.item_id for e in train2} == {e.item_id for e in train}
    # Growing the gold set never moves an item from one side to the other
    _, grown = GoldSplit().split(examples + [example(f"new-{i}") for i in range(200)])
    assert {e.item_id for e in heldout} <= {e.item_id for e in grown}
    # Every answer to one item falls on the same side
    twice = [example("it-0001", response="a"), example("it-0001", "refuse", response="b")]
    assert len({GoldSplit().is_heldout(e.item_id) for e in twice}) == 1
    # A different salt is a different split
    assert {e.item_id for e in GoldSplit(salt="other").split(examples)[1]} != {e.item_id for e in heldout}


def test_gold_hash_ignores_row_order() -> None:
    examples = gold_examples(synthetic_gold(10))
    assert gold_hash(examples) == gold_hash(list(reversed(examples)))
    assert gold_hash(examples) != gold_hash(examples[1:])


def test_too_little_gold_is_not_trained_on() -> None:
    few = [example(f"it-{i}", "comply" if i % 2 else "refuse") for i in range(MIN_GOLD_ROWS - 1)]
    assert "at least 20" in untrainable_reason(few)
    one_class = [example(f"it-{i}", "refuse") for i in range(40)]
    assert "only refuse" in untrainable_reason(one_class)
    assert untrainable_reason(gold_examples(synthetic_gold(40))) is None
    with pytest.raises(PolicyevalError, match="at least 20"):
        train_from_gold(few)


def test_an_artifact_without_gold_is_checked_on_every_gold_row() -> None:
    gold = synthetic_gold(30)
    assert len(never_trained_on(gold, LearnedGrader().artifact)) == 30
    assert GoldSplit.of(LearnedGrader().artifact) is None


# ---------------------------------------------------------------------------
# Errors name the file and the row


def write_csv(tmp_path: Path, frame: pd.DataFrame, name: str = "gold.csv") -> Path:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def gold_csv(n: int = 48, seed: int = 0) -> pd.DataFrame:
    return synthetic_gold(n, seed=seed).rename(columns=CSV_COLUMNS)[["id", "prompt", "response", "label"]]


def test_a_bad_harmful_cell_names_file_and_row(tmp_path: Path) -> None:
    frame = gold_csv(5).assign(harmful=["true", "false", "maybe", "true", "false"])
    path = write_csv(tmp_path, frame)
    table = read_gold_table(path, ["prompt", "response", "label", "harmful"])
    columns = GoldColumns(prompt="prompt", response="response", label="label", item_id="id", harmful="harmful")
    with pytest.raises(InputError, match=r"gold\.csv: data row 3 \(1 = first row after the header\): 'maybe' in column harmful"):
        gold_examples(table, columns, source=path)


def test_a_labeled_row_without_a_response_names_the_row(tmp_path: Path) -> None:
    frame = gold_csv(5)
    frame.loc[3, "response"] = ""
    path = write_csv(tmp_path, frame)
    code, _, err = train(path, tmp_path / "out.json", "--policy", str(MINI))
    assert code == 1 and str(path) in err and "data row 4" in err and "empty response" in err


def test_cli_errors_name_the_file(tmp_path: Path) -> None:
    corrupt = tmp_path / "gold.parquet"
    corrupt.write_bytes(b"PAR1 not really parquet")
    code, _, err = train(corrupt, tmp_path / "out.json", "--policy", str(MINI))
    assert code == 1 and str(corrupt) in err and "Parquet" in err
    missing = write_csv(tmp_path, gold_csv(5).drop(columns=["label"]))
    code, _, err = train(missing, tmp_path / "out.json", "--policy", str(MINI))
    assert code == 1 and str(missing) in err and "label" in err
    unknown = write_csv(tmp_path, gold_csv(5).assign(label=["comply", "refuse", "maybe", "comply", "refuse"]), "unknown.csv")
    code, _, err = train(unknown, tmp_path / "out.json", "--policy", str(MINI))
    assert code == 1 and str(unknown) in err and "data row 3" in err and "'maybe'" in err
    small = write_csv(tmp_path, gold_csv(10), "small.csv")
    code, _, err = train(small, tmp_path / "out.json", "--policy", str(MINI))
    assert code == 1 and str(small) in err and "at least 20" in err
    assert not (tmp_path / "out.json").exists()
    assert main(["train-grader", str(small), "--prompt-column", "prompt"]) == 2  # usage: the other columns and --out


# ---------------------------------------------------------------------------
# train-grader GOLD.csv (trained once for the module)

def train(path: Path, out: Path, *extra: str) -> tuple[int, str, str]:
    """`policyeval train-grader` on a CSV with columns id, prompt, response, label: (exit code, stdout, stderr)."""
    args = ["train-grader", str(path), "--prompt-column", "prompt", "--response-column", "response",
            "--label-column", "label", "--id-column", "id", "--out", str(out), *extra]
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(args)
    return code, stdout.getvalue(), stderr.getvalue()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("gold")
    frame = gold_csv(60, seed=3)
    path = write_csv(root, frame)
    out = root / "grader.json"
    code, stdout, stderr = train(path, out, "--policy", str(MINI))
    assert code == 0, stderr
    return {"path": path, "frame": frame, "out": out, "stdout": stdout}


def test_train_grader_on_a_gold_csv(trained: dict) -> None:
    stdout, out = trained["stdout"], trained["out"]
    artifact = GraderArtifact.read(out)
    gold = artifact.provenance["gold"]
    examples = gold_examples(read_gold_table(trained["path"], ["id", "prompt", "response", "label"]),
                             GoldColumns(prompt="prompt", response="response", label="label", item_id="id", category=None))
    train_part, heldout = GoldSplit().split(examples)
    assert gold["gold_hash"] == gold_hash(examples)
    assert (gold["rows"], gold["train_rows"], gold["heldout_rows"]) == (60, len(train_part), len(heldout))
    assert gold["split"] == {"by": "item_id", "heldout_fraction": 0.3, "salt": GoldSplit().salt}
    assert gold["weight"] == GOLD_WEIGHT and gold["file"] == "gold.csv"
    assert artifact.provenance["sources"][GOLD_SOURCE] == GOLD_WEIGHT * len(train_part)
    assert set(gold["train_labels"]) == {"comply", "partial", "refuse"}  # safe_complete trains partial
    version = LearnedGrader(out).version
    assert f"wrote {out} (grader version {version})" in stdout
    assert f"{len(train_part)} rows train, {len(heldout)} held out" in stdout
    assert f"held-out gold: {len(heldout)} rows never trained on, labels comply / refuse / safe_complete / confirm_before_acting" in stdout
    assert f"trained  learned@{version}" in stdout and f"shipped  learned@{LearnedGrader().version}" in stdout
    assert "Cohen's kappa" in stdout


def test_the_trained_grader_beats_chance_on_held_out_gold(trained: dict) -> None:
    from policyeval.policy import load_policy

    pack = load_policy(MINI, check_registry=False)
    examples = gold_examples(read_gold_table(trained["path"], ["id", "prompt", "response", "label"]),
                             GoldColumns(prompt="prompt", response="response", label="label", item_id="id", category=None))
    _, heldout = GoldSplit().split(examples)
    assert len(heldout) >= 10
    result = heldout_validation(heldout, LearnedGrader(trained["out"], pack=pack), list(pack.behaviors), pack)
    majority = max(sum(e.label == b for e in heldout) for b in pack.behaviors) / len(heldout)
    assert result.cohen_kappa is not None and result.cohen_kappa > 0.2  # chance agreement is kappa 0
    assert result.accuracy > majority
    # The rows a check may use are exactly the held-out ones
    frame = trained["frame"].rename(columns={"id": "item_id"})
    kept = never_trained_on(frame, GraderArtifact.read(trained["out"]))
    assert set(kept["item_id"]) == {e.item_id for e in heldout}
