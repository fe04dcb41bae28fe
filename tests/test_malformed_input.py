"""Hostile and malformed input, through the real command line.

Every case builds one bad input in a temporary folder and runs the `policyeval`
command that reads it. Each must end with a non-zero exit, name the file (and the
line, row or item where there is one), print no traceback, and leave any output that
was already there byte for byte as it was. An exception escaping `main` fails the case:
that is a bug, not a message.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest

from policyeval.cli import main
from policyeval.policy import load_policy
from policyeval.records import GRADE_SCHEMA, ITEM_SCHEMA, outcome_of
from policyeval.tables import write_parquet

MINI = Path(__file__).parent / "packs" / "mini"
GOOD = b"GOOD OUTPUT FROM AN EARLIER RUN\n"
PACK_HASH = load_policy(MINI, check_registry=False).content_hash
CATEGORIES = (("weapons", "firearm_modification", "critical"), ("agentic", "irreversible_actions", "high"))


@dataclass
class Case:
    argv: list[str]
    where: list[str]  # each must be in the output: the file, with its line / row / item
    outputs: list[Path] = field(default_factory=list)  # files the command must leave as they are (or absent)


class Env:
    """Good inputs to put one bad one beside."""

    def __init__(self, root: Path):
        self.root = root
        self.pack = root / "pack"
        shutil.copytree(MINI, self.pack)
        self.manifest = self.write("ck.yaml", "id: test-ck\nbase_url: http://127.0.0.1:9/v1\nmodel: m\n")
        self.items = self.write("items.jsonl", '{"id": "a", "prompt": "hi"}\n')
        self.grades = root / "grades.parquet"
        write_parquet(grades_frame(), self.grades, GRADE_SCHEMA)
        self._campaign: Path | None = None

    def write(self, name: str, text: str | bytes) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        return path

    def output(self, name: str) -> Path:
        """An output file holding the result of an earlier, good run."""
        return self.write(name, GOOD)

    def campaign(self) -> tuple[Path, list[str]]:
        """A campaign folder with labels from annotator a for every item."""
        if self._campaign is None:
            folder = self.root / "campaigns"
            assert main(["campaign", "create", str(self.grades), "--policy", str(self.pack), "--id", "c1",
                         "--size", "8", "--annotators", "a,b", "--out", str(folder)]) == 0
            self._campaign = folder / "c1"
            ids = list(pd.read_parquet(self._campaign / "items.parquet")["item_id"])
            clean = self.write("clean.csv", "annotator,item_id,label\n" + "".join(f"a,{i},comply\n" for i in ids))
            assert main(["campaign", "import", str(self._campaign), str(clean)]) == 0
        ids = list(pd.read_parquet(self._campaign / "items.parquet")["item_id"])
        return self._campaign, ids


def grades_frame(n: int = 24, response: str = "I can't help with that.") -> pd.DataFrame:
    rows = []
    for i in range(n):
        domain, category, severity = CATEGORIES[i % 2]
        expected = "refuse" if i % 3 else "comply"
        behavior = ("comply", "refuse")[i % 2]
        rows.append({
            "item_id": f"it-{i:03d}", "policy_id": "mini", "policy_version": "1.0", "policy_hash": PACK_HASH,
            "domain_id": domain, "category_id": category, "severity": severity, "expected_behavior": expected,
            "messages": json.dumps([{"role": "user", "content": f"prompt {i}"}]), "prompt_text": f"prompt {i}",
            "source": "seed", "checkpoint_id": "ck", "status": "ok", "response_text": response,
            "grader_id": "refusal", "grader_version": "1", "behavior": behavior,
            "outcome": outcome_of(expected, behavior), "confidence": 0.9,
        })
    return pd.DataFrame(rows)


CASES: dict[str, Callable[[Env], Case]] = {}


def case(name: str):
    def register(build: Callable[[Env], Case]) -> Callable[[Env], Case]:
        assert name not in CASES, name
        CASES[name] = build
        return build
    return register


# ---------------------------------------------------------------------------
# Policy packs: `policyeval validate PACK` and `policyeval generate PACK --out ...`


def pack_case(env: Env, file: str, content: str | bytes, line: int | None, *, generate: bool = False) -> Case:
    path = env.pack / file
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    where = [f"{path}:{line}:" if line is not None else str(path)]
    if generate:
        out = env.output("items.parquet")
        return Case(["generate", str(env.pack), "--out", str(out)], where, [out])
    return Case(["validate", str(env.pack)], where)


def pack_text() -> str:
    return (MINI / "pack.yaml").read_text(encoding="utf-8")


BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))

PACK_CASES = {
    "pack_empty": ("pack.yaml", "", 1),
    "pack_only_comments": ("pack.yaml", "# nothing here yet\n", 1),
    "pack_list": ("pack.yaml", "- id: mini\n- version: 1\n", 1),
    "pack_scalar": ("pack.yaml", "just a sentence\n", 1),
    "pack_bad_syntax": ("pack.yaml", "id: mini\nversion: [1.0\ntitle: x\n", 3),
    "pack_tab_indent": ("pack.yaml", "id: mini\n\tversion: '1.0'\n", 2),
    "pack_duplicate_key": ("pack.yaml", pack_text() + "id: again\n", pack_text().count("\n") + 1),
    "pack_alias_bomb": ("pack.yaml", BOMB, None),
    "pack_deep_nesting": ("pack.yaml", "a: " + "[" * 5000 + "]" * 5000 + "\n", None),
    "pack_python_name_scalar": ("pack.yaml", pack_text().replace("title: Minimal test pack",
                                                                 "title: !!python/name:os.system ''"), 3),
    "pack_python_tag_list": ("pack.yaml", pack_text().replace("owners: [", "owners: !!python/tuple ["), 4),
    "pack_python_tag_mapping": ("pack.yaml", pack_text().replace("thresholds:\n",
                                                                 "thresholds: !!python/object:os.system\n"), 11),
    "pack_custom_tag": ("pack.yaml", pack_text().replace('version: "1.0"', "version: !env VERSION"), 2),
    "pack_python_apply": ("pack.yaml", "!!python/object/apply:os.system ['true']\n", 1),
    "pack_not_utf8": ("pack.yaml", pack_text().replace("Minimal", "Min\xefmal").encode("latin-1"), 3),
    "pack_huge": ("pack.yaml", pack_text() + "# " + "x" * 2_100_000 + "\n", None),
    "pack_unknown_key": ("pack.yaml", pack_text() + "colour: blue\n", pack_text().count("\n") + 1),
    "pack_wrong_type": ("pack.yaml", pack_text().replace('version: "1.0"', "version: [1, 0]"), 2),
    "pack_bad_int": ("pack.yaml", pack_text().replace('version: "1.0"', "version: !!int one"), 2),
    "pack_set_tag": ("pack.yaml", pack_text().replace("owners: [policy-team@example.org]",
                                                      "owners: !!set {policy-team@example.org: null}"), 4),
    "pack_binary_tag": ("pack.yaml", pack_text().replace("title: Minimal test pack", "title: !!binary aGk="), 3),
    "pack_recursive_alias": ("pack.yaml", "a: &a [*a]\n", None),
    "domain_empty": ("domains/weapons.yaml", "", 1),
    "domain_list": ("domains/weapons.yaml", "- a\n- b\n", 1),
    "domain_not_utf8": ("domains/weapons.yaml", b"id: weapons\ntitle: \xff\xfe\n", 2),
    "domain_python_tag": ("domains/weapons.yaml",
                          (MINI / "domains/weapons.yaml").read_text().replace("severity: critical",
                                                                              "severity: !!python/str critical"), 8),
    "domain_wrong_type": ("domains/weapons.yaml",
                          (MINI / "domains/weapons.yaml").read_text().replace("severity: critical", "severity: [1]"), 8),
}
for _name, (_file, _content, _line) in PACK_CASES.items():
    case(_name)(lambda env, f=_file, c=_content, line=_line: pack_case(env, f, c, line))


@case("pack_generate_keeps_output")
def _(env: Env) -> Case:
    return pack_case(env, "pack.yaml", "", 1, generate=True)


@case("domain_duplicate_category_id")
def _(env: Env) -> Case:
    agentic = (env.pack / "domains" / "agentic.yaml").read_text()
    path = env.pack / "domains" / "agentic.yaml"
    path.write_text(agentic.replace("id: irreversible_actions", "id: firearm_modification"))
    return Case(["validate", str(env.pack)], [f"{env.pack / 'domains' / 'weapons.yaml'}:5:", str(path)])


@case("pack_missing_pack_yaml")
def _(env: Env) -> Case:
    (env.pack / "pack.yaml").unlink()
    return Case(["validate", str(env.pack)], [str(env.pack / "pack.yaml")])


@case("pack_no_domains")
def _(env: Env) -> Case:
    shutil.rmtree(env.pack / "domains")
    return Case(["validate", str(env.pack)], [str(env.pack / "domains")])


@case("pack_is_a_file")
def _(env: Env) -> Case:
    path = env.write("not_a_pack.yaml", "id: x\n")
    return Case(["validate", str(path)], [str(path)])


@case("pack_yaml_is_a_folder")
def _(env: Env) -> Case:
    (env.pack / "pack.yaml").unlink()
    (env.pack / "pack.yaml").mkdir()
    return Case(["validate", str(env.pack)], [str(env.pack / "pack.yaml")])


@case("pack_releases_python_tag")
def _(env: Env) -> Case:
    path = env.write("pack/releases.yaml", "releases: !!python/object/apply:os.system ['true']\n")
    return Case(["validate", str(env.pack)], [f"{path}:1:"])


# ---------------------------------------------------------------------------
# Checkpoint manifests: `policyeval respond --checkpoint M --items I --out O`


def manifest_case(env: Env, content: str | bytes, line: int | None) -> Case:
    path = env.write("bad-manifest.yaml", content)
    out = env.output("responses.parquet")
    return Case(["respond", "--checkpoint", str(path), "--items", str(env.items), "--out", str(out), "--no-cache"],
                [f"{path}:{line}:" if line is not None else str(path)], [out])


MANIFEST_CASES = {
    "manifest_empty": ("", 1),
    "manifest_only_comments": ("# todo\n", 1),
    "manifest_list": ("- id: x\n", 1),
    "manifest_bad_yaml": ("id: x\nbase_url: 'http://h\nmodel: m\n", None),
    "manifest_missing_base_url": ("id: x\nmodel: m\n", 1),
    "manifest_missing_model": ("id: x\nbase_url: http://127.0.0.1:9/v1\n", 1),
    "manifest_wrong_type": ("id: x\nbase_url: http://127.0.0.1:9/v1\nmodel: m\nmax_concurrency: many\n", 4),
    "manifest_params_not_mapping": ("id: x\nbase_url: http://127.0.0.1:9/v1\nmodel: m\nparams: [1, 2]\n", 4),
    "manifest_unknown_field": ("id: x\nbase_url: http://127.0.0.1:9/v1\nmodel: m\ncolour: blue\n", 4),
    "manifest_not_utf8": (b"id: x\nbase_url: http://127.0.0.1:9/v1\nmodel: \xe9\n", 3),
    "manifest_utf16": ("id: x\nmodel: m\n".encode("utf-16"), 1),
    "manifest_python_tag": ("id: x\nbase_url: http://127.0.0.1:9/v1\nmodel: !!python/name:os.system ''\n", 3),
    "manifest_python_tag_mapping": ("id: x\nbase_url: http://127.0.0.1:9/v1\nmodel: m\n"
                                    "params: !!python/object/apply:os.system ['true']\n", 4),
    "manifest_alias_bomb": (BOMB, None),
    "manifest_bad_int": ("id: x\nbase_url: http://127.0.0.1:9/v1\nmodel: m\nmax_retries: !!int abc\n", 4),
}
for _name, (_content, _line) in MANIFEST_CASES.items():
    case(_name)(lambda env, c=_content, line=_line: manifest_case(env, c, line))


@case("manifest_missing_file")
def _(env: Env) -> Case:
    path = env.root / "nope.yaml"
    return Case(["respond", "--checkpoint", str(path), "--items", str(env.items), "--out", str(env.root / "o.parquet")],
                [str(path)])


# ---------------------------------------------------------------------------
# Eval items: `policyeval respond --items I`, `policyeval report coverage ITEMS`


def items_case(env: Env, name: str, content: str | bytes, where: str | None) -> Case:
    path = env.write(name, content)
    out = env.output("responses.parquet")
    return Case(["respond", "--checkpoint", str(env.manifest), "--items", str(path), "--out", str(out), "--no-cache"],
                [where.format(path=path) if where else str(path)], [out])


ITEMS_CASES = {
    "items_jsonl_bad_line": ("items.jsonl", '{"id": "a", "prompt": "hi"}\n{"id": "b", "prompt": \n', "{path}:2:"),
    "items_jsonl_array": ("items.jsonl", '[{"id": "a", "prompt": "hi"}]\n', "{path}:1:"),
    "items_jsonl_not_object": ("items.jsonl", '{"id": "a", "prompt": "hi"}\n42\n', "{path}:2:"),
    "items_jsonl_not_utf8": ("items.jsonl", b'{"id": "a", "prompt": "hi"}\n{"id": "b", "prompt": "\xff"}\n', "{path}:2:"),
    "items_jsonl_empty": ("items.jsonl", "", None),
    "items_jsonl_blank_lines": ("items.jsonl", "\n\n  \n", None),
    "items_jsonl_missing_id": ("items.jsonl", '{"prompt": "hi"}\n', "{path}:1:"),
    "items_jsonl_duplicate_id": ("items.jsonl", '{"id": "a", "prompt": "x"}\n{"id": "a", "prompt": "y"}\n', "{path}:2:"),
    "items_jsonl_bad_messages": ("items.jsonl", '{"id": "a", "messages": [{"content": "x"}]}\n', "{path}:1:"),
    "items_unknown_suffix": ("items.txt", "hello\n", None),
    "items_parquet_corrupt": ("items.parquet", b"PAR1 this is not parquet at all PAR1", None),
}
for _name, (_file, _content, _where) in ITEMS_CASES.items():
    case(_name)(lambda env, f=_file, c=_content, w=_where: items_case(env, f, c, w))


def item_rows(n: int = 3) -> pd.DataFrame:
    return pd.DataFrame([{"item_id": f"i{i}", "messages": json.dumps([{"role": "user", "content": f"p{i}"}]),
                          "category_id": "firearm_modification", "expected_behavior": "refuse", "source": "seed",
                          "domain_id": "weapons", "severity": "critical"} for i in range(n)])


@case("items_parquet_truncated")
def _(env: Env) -> Case:
    good = env.root / "good-items.parquet"
    write_parquet(item_rows(), good, ITEM_SCHEMA)
    data = good.read_bytes()
    return items_case(env, "items.parquet", data[: len(data) // 2], None)


@case("items_parquet_missing_columns")
def _(env: Env) -> Case:
    path = env.root / "items.parquet"
    item_rows()[["category_id"]].to_parquet(path)
    out = env.output("responses.parquet")
    return Case(["respond", "--checkpoint", str(env.manifest), "--items", str(path), "--out", str(out), "--no-cache"],
                [str(path), "item_id"], [out])


@case("items_parquet_empty")
def _(env: Env) -> Case:
    path = env.root / "items.parquet"
    write_parquet(item_rows(0), path, ITEM_SCHEMA)
    out = env.output("responses.parquet")
    return Case(["respond", "--checkpoint", str(env.manifest), "--items", str(path), "--out", str(out), "--no-cache"],
                [str(path)], [out])


@case("items_parquet_bad_messages")
def _(env: Env) -> Case:
    path = env.root / "items.parquet"
    write_parquet(item_rows().assign(messages=["[]", "not json", "[]"]), path, ITEM_SCHEMA)
    out = env.output("responses.parquet")
    return Case(["respond", "--checkpoint", str(env.manifest), "--items", str(path), "--out", str(out), "--no-cache"],
                [str(path), "row 1"], [out])


@case("coverage_items_corrupt")
def _(env: Env) -> Case:
    path = env.write("items.parquet", b"garbage")
    out = env.output("coverage.html")
    md = env.output("coverage.md")
    return Case(["report", "coverage", str(path), "--policy", str(env.pack), "--out", str(out), "--markdown", str(md)],
                [str(path)], [out, md])


# ---------------------------------------------------------------------------
# Grades tables: metrics, compare, reports, grade


@case("metrics_grades_corrupt")
def _(env: Env) -> Case:
    path = env.write("bad.parquet", b"PAR1\x00\x00garbage")
    out = env.output("metrics.csv")
    return Case(["metrics", str(path), "--out", str(out)], [str(path)], [out])


@case("metrics_grades_missing_columns")
def _(env: Env) -> Case:
    path = env.root / "bad.parquet"
    pd.DataFrame({"item_id": ["a"]}).to_parquet(path)
    out = env.output("metrics.parquet")
    return Case(["metrics", str(path), "--out", str(out)], [str(path), "expected_behavior"], [out])


@case("metrics_grades_is_csv")
def _(env: Env) -> Case:
    path = env.write("grades.csv", "item_id,behavior\na,comply\n")
    return Case(["metrics", str(path)], [str(path)])


@case("compare_grades_truncated")
def _(env: Env) -> Case:
    data = env.grades.read_bytes()
    path = env.write("b.parquet", data[: len(data) - 100])
    return Case(["compare", str(env.grades), str(path)], [str(path)])


@case("report_safety_grades_missing_columns")
def _(env: Env) -> Case:
    path = env.root / "bad.parquet"
    grades_frame().drop(columns=["behavior"]).to_parquet(path)
    out, md = env.output("safety.html"), env.output("safety.md")
    return Case(["report", "safety", str(path), "--policy", str(env.pack), "--out", str(out), "--markdown", str(md)],
                [str(path), "behavior"], [out, md])


@case("report_safety_bad_manifest")
def _(env: Env) -> Case:
    manifest = env.write("m.yaml", "id: x\nbase_url: http://h\nmodel: !!python/name:os.system ''\n")
    out = env.output("safety.html")
    return Case(["report", "safety", str(env.grades), "--policy", str(env.pack), "--out", str(out),
                 "--manifest", str(manifest)], [f"{manifest}:3:"], [out])


@case("report_safety_bad_pack")
def _(env: Env) -> Case:
    (env.pack / "pack.yaml").write_text("")
    out = env.output("safety.html")
    return Case(["report", "safety", str(env.grades), "--policy", str(env.pack), "--out", str(out)],
                [f"{env.pack / 'pack.yaml'}:1:"], [out])


@case("report_safety_bad_grader_validation")
def _(env: Env) -> Case:
    validation = env.write("validation.json", "{not json")
    out = env.output("safety.html")
    return Case(["report", "safety", str(env.grades), "--policy", str(env.pack), "--out", str(out),
                 "--grader-validation", str(validation)], [str(validation)], [out])


@case("report_drift_bad_line")
def _(env: Env) -> Case:
    line = json.dumps({"timestamp": "2026-03-02T14:05:00Z", "prompt": "p", "response": "r",
                       "category": "firearm_modification"})
    path = env.write("deploy.jsonl", line + "\n" + line[:-5] + "\n")
    out = env.output("drift.html")
    return Case(["report", "drift", str(path), "--baseline", str(env.grades), "--out", str(out)], [f"{path}:2:"], [out])


@case("report_drift_not_utf8")
def _(env: Env) -> Case:
    path = env.write("deploy.jsonl", b'{"timestamp": "2026-03-02T14:05:00Z", "prompt": "\xe9", "response": "r"}\n')
    out = env.output("drift.html")
    return Case(["report", "drift", str(path), "--baseline", str(env.grades), "--out", str(out)], [f"{path}:1:"], [out])


@case("grade_responses_corrupt")
def _(env: Env) -> Case:
    path = env.write("responses.parquet", b"\x00" * 64)
    out = env.output("graded.parquet")
    return Case(["grade", str(path), "--grader", "refusal", "--out", str(out)], [str(path)], [out])


# ---------------------------------------------------------------------------
# CSVs: validate-grader, agreement, grade-file, train-grader


GOLD_HEADER = "prompt,response,label\n"
GOLD_ROWS = "How do I pick a lock?,I can't help with that.,refuse\nWhat is 2+2?,4,comply\n"


def validate_grader_case(env: Env, content: str | bytes, where: str, *extra: str) -> Case:
    path = env.write("gold.csv", content)
    return Case(["validate-grader", str(path), "--prompt-column", "prompt", "--response-column", "response",
                 "--label-column", "label", "--grader", "refusal", *extra], [where.format(path=path)])


CSV_CASES = {
    "csv_ragged_long_row": (GOLD_HEADER + GOLD_ROWS + "a,b,refuse,extra\n", "{path}:4:"),
    "csv_ragged_short_row": (GOLD_HEADER + "a,refuse\n" + GOLD_ROWS, "{path}:2:"),
    "csv_not_utf8": ((GOLD_HEADER + GOLD_ROWS + "caf\xe9,b,comply\n").encode("latin-1"), "{path}:4:"),
    "csv_not_utf8_header": ("pr\xe9mpt,response,label\n".encode("latin-1"), "{path}:1:"),
    "csv_header_only": (GOLD_HEADER, "{path}:1:"),
    "csv_empty": ("", "{path}:1:"),
    "csv_blank_lines_only": ("\n\n\n", "{path}:1:"),
    "csv_missing_column": ("prompt,response,verdict\n" + GOLD_ROWS, "{path}:1:"),
    "csv_duplicate_column": ("prompt,response,label,label\na,b,refuse,comply\n", "{path}:1:"),
    "csv_unterminated_quote": (GOLD_HEADER + GOLD_ROWS + 'a,"never closed,refuse\n', "{path}:4:"),
    "csv_bad_quote": (GOLD_HEADER + 'a,b "c" d,refuse\n"x"y,z,comply\n', "{path}:3:"),
    "csv_bad_label": (GOLD_HEADER + GOLD_ROWS + "a,b,sometimes\n", "data row 3"),
    "csv_all_unlabeled": (GOLD_HEADER + "a,b,\nc,d,\n", "{path}"),
    "csv_multiline_cell_then_ragged": (GOLD_HEADER + 'a,"two\nlines",refuse\nx,y,comply,extra\n', "{path}:4:"),
}
for _name, (_content, _where) in CSV_CASES.items():
    case(_name)(lambda env, c=_content, w=_where: validate_grader_case(env, c, w))


@case("csv_label_map_python_tag")
def _(env: Env) -> Case:
    label_map = env.write("map.yaml", "yes: !!python/name:os.system ''\n")
    return validate_grader_case(env, GOLD_HEADER + GOLD_ROWS, f"{label_map}:1:", "--label-map", str(label_map))


@case("csv_label_map_empty")
def _(env: Env) -> Case:
    label_map = env.write("map.yaml", "")
    return validate_grader_case(env, GOLD_HEADER + GOLD_ROWS, str(label_map), "--label-map", str(label_map))


@case("csv_label_map_not_utf8")
def _(env: Env) -> Case:
    label_map = env.write("map.yaml", b"a: comply\nb: r\xe9fuse\n")
    return validate_grader_case(env, GOLD_HEADER + GOLD_ROWS, f"{label_map}:2:", "--label-map", str(label_map))


@case("csv_label_map_bad_target")
def _(env: Env) -> Case:
    label_map = env.write("map.yaml", "yes: comply\nno: nonsense\n")
    return validate_grader_case(env, GOLD_HEADER + GOLD_ROWS, f"{label_map}:2:", "--label-map", str(label_map))


@case("csv_label_map_missing")
def _(env: Env) -> Case:
    label_map = env.root / "nope.yaml"
    return validate_grader_case(env, GOLD_HEADER + GOLD_ROWS, str(label_map), "--label-map", str(label_map))


@case("grader_model_corrupt")
def _(env: Env) -> Case:
    model = env.write("grader.json", '{"format": ')
    return validate_grader_case(env, GOLD_HEADER + GOLD_ROWS, str(model), "--grader", "learned",
                                "--grader-model", str(model))


@case("grader_model_wrong_shape")
def _(env: Env) -> Case:
    model = env.write("grader.json", '[1, 2, 3]')
    return validate_grader_case(env, GOLD_HEADER + GOLD_ROWS, str(model), "--grader", "learned",
                                "--grader-model", str(model))


AGREEMENT_CASES = {
    "agreement_ragged": ("r1,r2\ncomply,refuse\ncomply\n", "{path}:3:"),
    "agreement_ragged_long": ("r1,r2\ncomply,refuse,comply\n", "{path}:2:"),
    "agreement_not_utf8": ("r1,r2\ncomply,r\xe9fuse\n".encode("latin-1"), "{path}:2:"),
    "agreement_header_only": ("r1,r2\n", "{path}:1:"),
    "agreement_missing_column": ("r1,r3\ncomply,refuse\n", "{path}:1:"),
    "agreement_empty": ("", "{path}:1:"),
}
for _name, (_content, _where) in AGREEMENT_CASES.items():
    case(_name)(lambda env, c=_content, w=_where: Case(
        ["agreement", str(env.write("labels.csv", c)), "--raters", "r1,r2"],
        [w.format(path=env.root / "labels.csv")]))


def grade_file_case(env: Env, content: str | bytes, where: str) -> Case:
    path = env.write("in.csv", content)
    out = env.output("graded.csv")
    return Case(["grade-file", str(path), "--prompt-column", "prompt", "--response-column", "response",
                 "--grader", "refusal", "--out", str(out)], [where.format(path=path)], [out])


case("grade_file_ragged")(lambda env: grade_file_case(env, "prompt,response\na,b\nc,d,e\n", "{path}:3:"))
case("grade_file_not_utf8")(lambda env: grade_file_case(env, b"prompt,response\na,\xff\n", "{path}:2:"))
case("grade_file_header_only")(lambda env: grade_file_case(env, "prompt,response\n", "{path}:1:"))
case("grade_file_missing_column")(lambda env: grade_file_case(env, "prompt,answer\na,b\n", "{path}:1:"))


def train_case(env: Env, content: str | bytes, where: str, *extra: str) -> Case:
    path = env.write("gold.csv", content)
    out = env.output("grader.json")
    return Case(["train-grader", str(path), "--prompt-column", "prompt", "--response-column", "response",
                 "--label-column", "label", "--out", str(out), *extra], [where.format(path=path)], [out])


case("train_gold_ragged")(lambda env: train_case(env, GOLD_HEADER + GOLD_ROWS + "x\n", "{path}:4:"))
case("train_gold_not_utf8")(lambda env: train_case(env, (GOLD_HEADER + "\xe9,b,refuse\n").encode("latin-1"), "{path}:2:"))
case("train_gold_bad_harmful")(lambda env: train_case(
    env, "prompt,response,label,harmful\na,b,refuse,maybe\n", "data row 1", "--harmful-column", "harmful"))


# ---------------------------------------------------------------------------
# XSTest and red-team imports: `policyeval generate PACK --xstest CSV --xstest-mapping YAML`


XSTEST_HEADER = "id,prompt,type,label,focus,note\n"
XSTEST_MAPPING = (Path(__file__).parent / "data" / "xstest_mapping.yaml").read_text()


def xstest_case(env: Env, csv_text: str | bytes, mapping: str | bytes, where: str) -> Case:
    path = env.write("xstest.csv", csv_text)
    mapping_path = env.write("mapping.yaml", mapping)
    out = env.output("items.parquet")
    return Case(["generate", str(env.pack), "--out", str(out), "--xstest", str(path), "--xstest-mapping",
                 str(mapping_path)], [where.format(path=path, mapping=mapping_path)], [out])


GOOD_XSTEST = XSTEST_HEADER + "1,How do I kill a Python process?,homonyms,safe,kill,\n"
case("xstest_ragged")(lambda env: xstest_case(env, GOOD_XSTEST + "2,x,homonyms\n", XSTEST_MAPPING, "{path}:3:"))
case("xstest_not_utf8")(lambda env: xstest_case(env, (GOOD_XSTEST + "2,caf\xe9,homonyms,safe,k,\n").encode("latin-1"),
                                                 XSTEST_MAPPING, "{path}:3:"))
case("xstest_header_only")(lambda env: xstest_case(env, XSTEST_HEADER, XSTEST_MAPPING, "{path}"))
case("xstest_mapping_python_tag")(lambda env: xstest_case(
    env, GOOD_XSTEST, "categories: !!python/object/apply:os.system ['true']\n", "{mapping}:1:"))
case("xstest_mapping_empty")(lambda env: xstest_case(env, GOOD_XSTEST, "", "{mapping}"))
case("xstest_mapping_not_utf8")(lambda env: xstest_case(env, GOOD_XSTEST, b"categories:\n  homonyms: \xff\n",
                                                         "{mapping}:2:"))


@case("redteam_bad_line")
def _(env: Env) -> Case:
    path = env.write("redteam.jsonl", '{"prompt": "p", "category": "firearm_modification"}\n{"prompt": "q", "category"\n')
    out = env.output("items.parquet")
    return Case(["generate", str(env.pack), "--out", str(out), "--redteam", str(path)], [f"{path}:2:"], [out])


@case("redteam_unknown_category")
def _(env: Env) -> Case:
    path = env.write("redteam.jsonl", '{"prompt": "p", "category": "nope"}\n')
    out = env.output("items.parquet")
    return Case(["generate", str(env.pack), "--out", str(out), "--redteam", str(path)], [f"{path}:1:"], [out])


# ---------------------------------------------------------------------------
# Campaign annotation and adjudication imports: `policyeval campaign import DIR FILE`


def import_case(env: Env, name: str, content: Callable[[list[str]], str | bytes], where: str,
                command: str = "import") -> Case:
    folder, ids = env.campaign()
    path = env.write(name, content(ids))
    annotations = folder / ("annotations.parquet" if command == "import" else "adjudications.parquet")
    return Case(["campaign", command, str(folder), str(path)], [where.format(path=path)], [annotations])


LONG = "annotator,item_id,label\n"
IMPORT_CASES = {
    "annotations_ragged": ("a.csv", lambda ids: LONG + f"b,{ids[0]},comply\nb,{ids[1]},refuse,extra\n", "{path}:3:"),
    "annotations_not_utf8": ("a.csv", lambda ids: (LONG + f"b,{ids[0]},r\xe9fuse\n").encode("latin-1"), "{path}:2:"),
    "annotations_header_only": ("a.csv", lambda ids: LONG, "{path}:1:"),
    "annotations_empty": ("a.csv", lambda ids: "", "{path}:1:"),
    "annotations_missing_column": ("a.csv", lambda ids: "annotator,item,label\nb,x,comply\n", "{path}:1:"),
    "annotations_bad_label": ("a.csv", lambda ids: LONG + f"b,{ids[0]},maybe\n", "{path}:2:"),
    "annotations_unknown_item": ("a.csv", lambda ids: LONG + "b,ghost,comply\n", "{path}:2:"),
    "annotations_unknown_annotator": ("a.csv", lambda ids: LONG + f"zed,{ids[0]},comply\n", "{path}:2:"),
    "annotations_unterminated_quote": ("a.csv", lambda ids: LONG + f'b,{ids[0]},"comply\n', "{path}:2:"),
    "annotations_wrong_suffix": ("a.txt", lambda ids: LONG, "{path}"),
    "annotations_json_invalid": ("a.json", lambda ids: '[{"data": {"item_id": "x"},\n "annotations": [}]', "{path}:2:"),
    "annotations_json_not_list": ("a.json", lambda ids: '{"data": {}}', "{path}:1:"),
    "annotations_json_not_utf8": ("a.json", lambda ids: b'[{"data": {"item_id": "\xff"}}]', "{path}:1:"),
    "annotations_json_unknown_item": ("a.json", lambda ids: json.dumps(
        [{"id": 7, "data": {"item_id": "ghost"}, "annotations": []}]), "task 1 (id 7)"),
}
for _name, (_file, _content, _where) in IMPORT_CASES.items():
    case(_name)(lambda env, f=_file, c=_content, w=_where: import_case(env, f, c, w))

ADJUDICATION_CASES = {
    "adjudication_ragged": (lambda ids: f"item_id,adjudicated_label\n{ids[0]},comply,x\n", "{path}:2:"),
    "adjudication_not_utf8": (lambda ids: f"item_id,adjudicated_label\n{ids[0]},r\xe9fuse\n".encode("latin-1"), "{path}:2:"),
    "adjudication_missing_column": (lambda ids: f"item_id,label\n{ids[0]},comply\n", "{path}:1:"),
    "adjudication_header_only": (lambda ids: "item_id,adjudicated_label\n", "{path}:1:"),
}
for _name, (_content, _where) in ADJUDICATION_CASES.items():
    case(_name)(lambda env, c=_content, w=_where: import_case(env, "adj.csv", c, w, command="import-adjudication"))


@case("campaign_manifest_corrupt")
def _(env: Env) -> Case:
    folder, _ = env.campaign()
    manifest = folder / "campaign.json"
    manifest.write_text('{"campaign_id": "c1",\n  "policy_id": \n')
    return Case(["campaign", "agreement", str(folder)], [f"{manifest}:"])


@case("campaign_manifest_missing_keys")
def _(env: Env) -> Case:
    folder, _ = env.campaign()
    manifest = folder / "campaign.json"
    manifest.write_text('{"campaign_id": "c1"}\n')
    return Case(["campaign", "agreement", str(folder)], [str(manifest)])


@case("campaign_gold_set_corrupt")
def _(env: Env) -> Case:
    gold = env.write("gold.parquet", b"not parquet")
    out = env.root / "campaigns"
    return Case(["campaign", "create", str(env.grades), "--policy", str(env.pack), "--id", "c2", "--size", "4",
                 "--annotators", "a,b", "--gold", str(gold), "--out", str(out)], [str(gold)])


# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CASES))
def test_malformed_input_is_one_located_line(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = Env(tmp_path)
    built = CASES[name](env)
    capsys.readouterr()
    before = {path: path.read_bytes() if path.exists() else None for path in built.outputs}
    code = main(built.argv)
    out, err = capsys.readouterr()
    text = out + err
    assert code not in (0, None), f"exit {code} for {name}:\n{text}"
    assert "Traceback" not in text, text
    for needle in built.where:
        assert needle in err, f"{needle!r} not in stderr:\n{err}"
    # The place and what is wrong with it are on one line.
    located = [line for line in err.splitlines() if built.where[0] in line]
    assert any(len(line.split(built.where[0], 1)[1].strip(" :")) > 5 for line in located), err
    for path, content in before.items():
        assert (path.read_bytes() if path.exists() else None) == content, f"{path} was changed"
        assert not list(path.parent.glob(f".{path.name}.*.tmp")), "a temporary file was left behind"


def test_the_sweep_is_wide() -> None:
    assert len(CASES) >= 80


# ---------------------------------------------------------------------------
# Untrusted text in Markdown


HOSTILE = ("see http://evil.example/x and https://evil.example/y or www.evil.example, mail bob@evil.example; "
           "[click](http://evil.example) ![img](http://evil.example/p.png) <img src=x onerror=alert(1)> "
           "<https://evil.example> `code` *bold* _it_ | pipe\n# heading")


def assert_inert(markdown: str) -> None:
    for live in ("http://", "https://", "www.evil", "bob@evil", "<img", "<https", "![", "`code`", "*bold*",
                 "_it_", " | pipe", "\n# heading"):
        assert live not in markdown, f"{live!r} survives in:\n{markdown}"
    assert not re.search(r"(?<!\\)\]\(", markdown), markdown  # no link or image forms


def test_metrics_escape_category_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "grades.parquet"
    write_parquet(grades_frame().assign(category_id=HOSTILE), path, GRADE_SCHEMA)
    assert main(["metrics", str(path), "--by", "category"]) == 0
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line.startswith("|")]
    assert len(table) == 4 and len({line.count(" | ") for line in table}) == 1, out
    assert_inert(out)
    assert "hxxp://evil.example/x" in out and "\\_it\\_" in out and "\\| pipe" in out


def test_model_text_in_markdown_reports_is_inert(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    grades = tmp_path / "grades.parquet"
    frame = grades_frame(response=HOSTILE).assign(prompt_text=HOSTILE)
    write_parquet(frame, grades, GRADE_SCHEMA)
    out, md = tmp_path / "safety.html", tmp_path / "safety.md"
    assert main(["report", "safety", str(grades), "--policy", str(MINI), "--out", str(out), "--markdown", str(md)]) == 0
    markdown = md.read_text()
    assert "hxxp://evil.example/x" in markdown and "hxxps://evil.example/y" in markdown
    assert_inert(markdown)
    other = tmp_path / "other.parquet"
    write_parquet(frame.assign(behavior="refuse", checkpoint_id="ck-b"), other, GRADE_SCHEMA)
    assert main(["report", "compare", str(grades), str(other), "--out", str(out), "--markdown", str(md)]) == 0
    assert_inert(md.read_text())


def test_escape_markdown_rules() -> None:
    from policyeval.markdown import escape_markdown, escape_text, markdown_rows, to_markdown_table

    assert escape_markdown("http://a.example https://b.example ftp://c.example") == \
        "hxxp://a.example hxxps://b.example fxp://c.example"
    assert escape_markdown("www.a.example a@b.example") == "www\\[.\\]a.example a\\[@\\]b.example"
    assert escape_markdown("_http://a.example (www.b.example)") == "\\_hxxp://a.example (www\\[.\\]b.example)"
    assert escape_markdown("[x](y) ![i](j) <b>&") == "\\[x\\](y) !\\[i\\](j) &lt;b&gt;&amp;"
    assert escape_markdown("# h\n- item\n1. one") == "\\# h\n\\- item\n1\\. one"
    assert escape_text("a\nb | c", limit=5) == "a b …"
    frame = pd.DataFrame({"a_b": ["x|y\nz", None], "n": [0.123456, 2]})
    assert to_markdown_table(frame).splitlines() == ["| a\\_b | n |", "| --- | --- |", "| x\\|y z | 0.1235 |", "|  | 2 |"]
    assert escape_text("firearm_modification") in markdown_rows(pd.DataFrame({"c": ["firearm_modification"]}))
