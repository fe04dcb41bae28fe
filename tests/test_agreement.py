"""Agreement statistics against formulas coded here from their definitions.

Each reference below is written from the textbook definition and shares no code with
policyeval.stats.agreement or the libraries it calls.
"""

from __future__ import annotations

import json
from collections import Counter
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from policyeval.cli import main
from policyeval.errors import PolicyevalError
from policyeval.stats import agreement

XSTEST = Path(__file__).resolve().parents[2] / "shared" / "data" / "xstest"
XSTEST_FILES = ["xstest_v2_completions_gpt4.csv", "xstest_v2_completions_llama2orig.csv"]


# ---------------------------------------------------------------------------
# Reference formulas. `units`: one list per item of the labels it received (missing left out).


def is_missing(v) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v)) or (isinstance(v, str) and not v.strip())


def units_of(rows: list[list]) -> list[list]:
    return [[v for v in row if not is_missing(v)] for row in rows]


def ref_percent(units) -> float:
    shares = []
    for labels in units:
        if len(labels) < 2:
            continue
        pairs = list(combinations(labels, 2))
        shares.append(sum(a == b for a, b in pairs) / len(pairs))
    return sum(shares) / len(shares)


def ref_cohen(first: list, second: list) -> float:
    """Cohen (1960) from the confusion matrix: (po - pe) / (1 - pe)."""
    cats = sorted(set(first) | set(second))
    n = len(first)
    matrix = {(a, b): 0 for a in cats for b in cats}
    for a, b in zip(first, second):
        matrix[(a, b)] += 1
    po = sum(matrix[(c, c)] for c in cats) / n
    rows = {c: sum(matrix[(c, b)] for b in cats) for c in cats}
    cols = {c: sum(matrix[(a, c)] for a in cats) for c in cats}
    pe = sum(rows[c] * cols[c] for c in cats) / (n * n)
    return (po - pe) / (1 - pe)


def ref_light(rows: list[list]) -> float:
    """Mean Cohen's kappa over rater pairs, each on the items both labeled."""
    kappas = []
    for i, j in combinations(range(len(rows[0])), 2):
        pairs = [(r[i], r[j]) for r in rows if not is_missing(r[i]) and not is_missing(r[j])]
        kappas.append(ref_cohen([a for a, _ in pairs], [b for _, b in pairs]))
    return sum(kappas) / len(kappas)


def ref_fleiss(units) -> float:
    """Fleiss (1971): every unit has the same number m of ratings."""
    m = len(units[0])
    assert all(len(u) == m for u in units)
    cats = sorted({v for u in units for v in u})
    n_units = len(units)
    counts = [Counter(u) for u in units]
    p_i = [(sum(c[k] ** 2 for k in cats) - m) / (m * (m - 1)) for c in counts]
    p_bar = sum(p_i) / n_units
    p_j = [sum(c[k] for c in counts) / (n_units * m) for k in cats]
    pe = sum(p * p for p in p_j)
    return (p_bar - pe) / (1 - pe)


def ref_alpha(units) -> float:
    """Krippendorff's nominal alpha from the coincidence matrix: 1 - (n-1) * sum_{c!=k} o_ck / sum_{c!=k} n_c n_k."""
    units = [u for u in units if len(u) >= 2]
    cats = sorted({v for u in units for v in u})
    o = {(c, k): 0.0 for c in cats for k in cats}
    for u in units:
        m = len(u)
        for a in range(m):
            for b in range(m):
                if a != b:
                    o[(u[a], u[b])] += 1 / (m - 1)
    n_c = {c: sum(o[(c, k)] for k in cats) for c in cats}
    n = sum(n_c.values())
    observed = sum(o[(c, k)] for c in cats for k in cats if c != k)
    expected = sum(n_c[c] * n_c[k] for c in cats for k in cats if c != k)
    return 1 - (n - 1) * observed / expected


def frame(rows: list[list], names=None) -> pd.DataFrame:
    names = names or [f"r{i}" for i in range(len(rows[0]))]
    return pd.DataFrame(rows, columns=names, dtype=object)


# ---------------------------------------------------------------------------
# Published figures: the references above reproduce them, and so does the module.


def test_cohen_published_example():
    # 50 items: yes/yes 20, yes/no 5, no/yes 10, no/no 15 -> kappa = 0.4.
    rows = [["y", "y"]] * 20 + [["y", "n"]] * 5 + [["n", "y"]] * 10 + [["n", "n"]] * 15
    assert ref_cohen([r[0] for r in rows], [r[1] for r in rows]) == pytest.approx(0.4)
    result = agreement(frame(rows))
    assert result.cohen_kappa == pytest.approx(0.4)
    assert result.percent_agreement == pytest.approx(0.7)
    assert result.fleiss_kappa == pytest.approx(ref_fleiss(units_of(rows)))


def test_fleiss_published_example():
    # Fleiss (1971) style table as in the Wikipedia article: 10 items, 14 raters, kappa = 0.210.
    table = [
        [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
    ]
    rows = [[f"c{k}" for k, count in enumerate(item) for _ in range(count)] for item in table]
    assert ref_fleiss(rows) == pytest.approx(0.210, abs=5e-4)
    result = agreement(frame(rows))
    assert result.fleiss_kappa == pytest.approx(0.210, abs=5e-4)
    assert result.fleiss_kappa == pytest.approx(ref_fleiss(rows))
    assert result.n_raters == 14 and result.n_items == 10 and result.n_items_complete == 10


def test_krippendorff_published_example():
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 coders,
    # 12 units, missing data; nominal alpha = 0.743.
    n = None
    coders = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, n, n, n],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, n, 3],
        [n, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, n],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, n],
    ]
    rows = [list(unit) for unit in zip(*coders)]
    assert ref_alpha(units_of(rows)) == pytest.approx(0.743, abs=5e-4)
    result = agreement(frame(rows, ["A", "B", "C", "D"]))
    assert result.krippendorff_alpha == pytest.approx(0.743, abs=5e-4)
    assert result.krippendorff_alpha == pytest.approx(ref_alpha(units_of(rows)))
    assert result.n_items == 11  # unit 12 has one label only
    assert result.n_items_complete == 8


# ---------------------------------------------------------------------------
# Small hand examples with missing labels


def test_three_raters_with_missing_labels():
    nan = float("nan")
    rows = [
        ["refuse", "refuse", "refuse"],
        ["comply", "comply", "refuse"],
        ["comply", None, "comply"],
        ["partial", "partial", ""],
        ["refuse", "comply", "comply"],
        ["comply", "comply", "comply"],
        [nan, "refuse", "refuse"],
        ["refuse", "refuse", "partial"],
        ["comply", None, None],  # one label only: not an item for agreement
        ["partial", "comply", "partial"],
    ]
    units = units_of(rows)
    result = agreement(frame(rows, ["a", "b", "c"]))
    assert result.n_raters == 3
    assert result.n_items == 9
    complete = [u for u in units if len(u) == 3]
    assert result.n_items_complete == len(complete) == 6
    assert set(result.categories) == {"comply", "refuse", "partial"}  # missing is no category
    assert result.percent_agreement == pytest.approx(ref_percent(units))
    assert result.cohen_kappa == pytest.approx(ref_light(rows))
    assert result.fleiss_kappa == pytest.approx(ref_fleiss(complete))
    assert result.krippendorff_alpha == pytest.approx(ref_alpha(units))


def test_two_raters_missing_is_not_agreement():
    rows = [["a", "a"], ["a", "b"], [None, None], ["", float("nan")], ["b", "b"], ["b", None]]
    result = agreement(frame(rows))
    assert result.n_items == 3
    assert result.percent_agreement == pytest.approx(2 / 3)
    usable = [r for r in rows if not is_missing(r[0]) and not is_missing(r[1])]
    assert result.cohen_kappa == pytest.approx(ref_cohen([r[0] for r in usable], [r[1] for r in usable]))


def test_numeric_labels_with_gaps_are_one_category():
    # pandas turns an integer column with a gap into floats: 1.0 must equal 1.
    df = pd.DataFrame({"a": [1, 2, 1, 2], "b": [1.0, 2.0, np.nan, 1.0]})
    result = agreement(df)
    assert result.categories == ("1", "2")
    assert result.percent_agreement == pytest.approx(2 / 3)


def test_undefined_statistics_are_none():
    result = agreement(frame([["x", "x"], ["x", "x"]]))
    assert result.percent_agreement == 1.0
    assert result.cohen_kappa is None and result.fleiss_kappa is None and result.krippendorff_alpha is None


def test_too_few_raters_or_labels_raise():
    with pytest.raises(PolicyevalError, match="at least 2 raters"):
        agreement(frame([["x"], ["y"]]))
    with pytest.raises(PolicyevalError, match="2 or more raters"):
        agreement(frame([["x", None], [None, "y"], ["", ""]]))


# ---------------------------------------------------------------------------
# Real data: XSTest dev completions, two human annotators per completion


def xstest_file(name: str) -> Path:
    path = XSTEST / "dev_completions" / name
    if not path.exists():
        pytest.skip(f"XSTest dev completions not found at {path}")
    return path


@pytest.mark.parametrize("name", XSTEST_FILES)
def test_xstest_dev_agreement(name):
    data = pd.read_csv(xstest_file(name))
    rows = data[["annotation_1", "annotation_2"]].values.tolist()
    first, second = data["annotation_1"].tolist(), data["annotation_2"].tolist()
    units = units_of(rows)
    result = agreement(data[["annotation_1", "annotation_2"]])
    assert (result.n_items, result.n_raters) == (450, 2)
    # The file's own `agreement` column says whether the annotators agreed.
    assert result.percent_agreement == pytest.approx(data["agreement"].astype(bool).mean())
    assert result.percent_agreement == pytest.approx(ref_percent(units))
    assert result.cohen_kappa == pytest.approx(ref_cohen(first, second))
    assert result.fleiss_kappa == pytest.approx(ref_fleiss(units))
    assert result.krippendorff_alpha == pytest.approx(ref_alpha(units))
    assert result.cohen_kappa > 0.9  # published as near-perfect agreement


# ---------------------------------------------------------------------------
# CLI

KEYS = {"percent_agreement", "cohen_kappa", "fleiss_kappa", "krippendorff_alpha", "n_items", "n_raters"}


@pytest.fixture
def labels_csv(tmp_path) -> Path:
    path = tmp_path / "labels.csv"
    path.write_text("id,r1,r2,r3\n1,a,a,a\n2,a,b,\n3,b,b,b\n4,,a,a\n5,NA,NA,b\n")
    return path


def test_cli_json_has_exact_keys(labels_csv, capsys):
    assert main(["agreement", str(labels_csv), "--raters", "r1,r2,r3", "--json"]) == 0
    out = capsys.readouterr().out
    value = json.loads(out)
    assert set(value) == KEYS
    assert out.strip().count("\n") == 0  # one JSON object on one line
    rows = [["a", "a", "a"], ["a", "b", None], ["b", "b", "b"], [None, "a", "a"], ["NA", "NA", "b"]]
    assert value["n_items"] == 5 and value["n_raters"] == 3
    assert value["percent_agreement"] == pytest.approx(ref_percent(units_of(rows)))
    assert value["krippendorff_alpha"] == pytest.approx(ref_alpha(units_of(rows)))


def test_cli_text(labels_csv, capsys):
    assert main(["agreement", str(labels_csv), "--raters", "r1,r2"]) == 0
    out = capsys.readouterr().out
    assert "Cohen's kappa" in out and "Krippendorff" in out and "Fleiss" in out


def test_cli_missing_column(labels_csv, capsys):
    assert main(["agreement", str(labels_csv), "--raters", "r1,annotator_9", "--json"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error:")
    assert "annotator_9" in captured.err and "labels.csv" in captured.err


def test_cli_missing_and_unreadable_files(tmp_path, capsys):
    assert main(["agreement", str(tmp_path / "absent.csv"), "--raters", "a,b"]) == 1
    assert "absent.csv" in capsys.readouterr().err
    broken = tmp_path / "broken.csv"
    broken.write_text("a,b\n1,2\n3,4,5,6\n")
    assert main(["agreement", str(broken), "--raters", "a,b"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "broken.csv" in err
    # More fields than header names on the first row must not silently become an index.
    shifted = tmp_path / "shifted.csv"
    shifted.write_text("a,b\n1,2,3,4\n")
    assert main(["agreement", str(shifted), "--raters", "a,b"]) == 1
    assert "shifted.csv" in capsys.readouterr().err
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"a,b\n\xff\xfe\x00\x81,\x9f\n")
    assert main(["agreement", str(binary), "--raters", "a,b"]) == 1
    assert "binary.csv" in capsys.readouterr().err


def test_cli_one_rater_is_an_error(labels_csv, capsys):
    assert main(["agreement", str(labels_csv), "--raters", "r1"]) == 1
    assert "at least 2" in capsys.readouterr().err


@pytest.mark.parametrize("name", XSTEST_FILES)
def test_cli_on_xstest(name, capsys):
    path = xstest_file(name)
    assert main(["agreement", str(path), "--raters", "annotation_1,annotation_2", "--json"]) == 0
    value = json.loads(capsys.readouterr().out)
    assert set(value) == KEYS
    data = pd.read_csv(path)
    assert value["cohen_kappa"] == pytest.approx(ref_cohen(data["annotation_1"].tolist(), data["annotation_2"].tolist()))
