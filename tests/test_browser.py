"""The HTML reports in a real headless browser (Debian's chromium): every report renders,
its charts are drawn by the inlined Vega-Embed (an <svg> inside each chart container),
and model output that tries to run script stays text and runs nothing.

Skipped when /usr/bin/chromium is absent, except under CI, where it must be there.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path

import pytest

from policyeval.deployment import detect_drift, grade_conversations, load_conversations
from policyeval.policy import load_policy
from policyeval.policy.diff import diff_packs
from policyeval.reports import (
    comparison_document,
    coverage_document,
    drift_document,
    policy_diff_document,
    safety_document,
)
from test_reports import AGENTIC, PACK_DIR, WEAPONS, XSS, make_grades, mixed_spec

CHROMIUM = "/usr/bin/chromium"
PAYLOAD_TEXT = "<script>document.title='pwned'</script>"
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--virtual-time-budget=10000"]

if not (os.path.exists(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is required under CI (apt-get install chromium)", pytrace=False)
    pytest.skip(f"{CHROMIUM} not installed: browser tests skipped", allow_module_level=True)


class Dom(HTMLParser):
    """What the tests need from a dumped DOM: titles, body attributes, charts and visible text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.body_attrs: dict[str, str | None] = {}
        self.charts: dict[str, dict] = {}  # figure id -> {"attrs": ..., "svg": bool}
        self.text: list[str] = []
        self._stack: list[str] = []
        self._figure: list[str] = []
        self._in_title = False
        self._skip = 0  # inside <script> or <style>: not visible text

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "title":
            self._in_title = True
        if tag == "body":
            self.body_attrs = attrs
        if tag in ("script", "style"):
            self._skip += 1
        if tag == "figure" and "data-vega-spec" in attrs:
            self.charts[attrs["id"]] = {"attrs": attrs, "svg": False}
            self._figure.append(attrs["id"])
        elif tag == "figure":
            self._figure.append("")
        if tag == "svg" and self._figure and self._figure[-1]:
            self.charts[self._figure[-1]]["svg"] = True

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False
        if tag in ("script", "style"):
            self._skip -= 1
        if tag == "figure" and self._figure:
            self._figure.pop()

    def handle_data(self, data):
        if self._in_title:
            self.title += data
        elif not self._skip:
            self.text.append(data)


def dump_dom(page: Path, profile: Path) -> str:
    completed = subprocess.run(
        [CHROMIUM, *CHROME_FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=90,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    return completed.stdout


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, tuple[Path, object]]:
    """One HTML page per report, each carrying the script-injection payload in model output."""
    root = tmp_path_factory.mktemp("reports")
    pack = load_policy(PACK_DIR, check_registry=False)
    grades_a = make_grades(mixed_spec(), "ck-a", policy_hash=pack.content_hash)
    spec_b = [(*WEAPONS, "refuse", "comply")] * 8 + [(*WEAPONS, "comply", "comply")] * 5 + [(*AGENTIC, "comply", "refuse")] * 8
    grades_b = make_grades(spec_b, "ck-b")

    diff = diff_packs(pack, pack, with_items=False)
    relabeled = grades_a.copy()
    relabeled.loc[0, ["item_id", "expected_behavior"]] = ["it-relabeled", "safe_complete"]
    relabeled.loc[1, "prompt_text"] = XSS  # untrusted text in the item tables too
    relabeled.loc[1, ["item_id", "messages"]] = ["it-xss", json.dumps([{"role": "user", "content": XSS}])]

    start = datetime(2026, 3, 2, 9, tzinfo=timezone.utc)
    lines = [json.dumps({"timestamp": (start + timedelta(days=d, minutes=j)).isoformat(),
                         "category": "firearm_modification" if j % 2 else XSS,  # a hostile category name
                         "prompt": "hello", "response": "I can't help with that." if d < 2 else "Sure. " + XSS})
             for d in range(4) for j in range(10)]
    jsonl = root / "deployment.jsonl"
    jsonl.write_text("\n".join(lines) + "\n")
    imported = load_conversations(jsonl)
    result = detect_drift(grade_conversations(imported.conversations), grades_a, "day", 0.1, imported.scrubbed)

    documents = {
        "safety": safety_document(grades_a, pack),
        "comparison": comparison_document(grades_a, grades_b),
        "policy-diff": policy_diff_document(diff, old_grades=grades_a, new_grades=relabeled),
        "coverage": coverage_document(pack, grades_a),
        "drift": drift_document(result, source=str(jsonl)),
    }
    out = {}
    for name, document in documents.items():
        path = root / f"{name}.html"
        path.write_text(document.to_html(), encoding="utf-8")
        out[name] = (path, document)
    return out


@pytest.mark.parametrize("name", ["safety", "comparison", "policy-diff", "coverage", "drift"])
def test_report_renders_charts_and_runs_no_injected_script(pages, name, tmp_path):
    path, document = pages[name]
    dom = Dom()
    dom.feed(dump_dom(path, tmp_path / "profile"))

    assert dom.body_attrs.get("data-report") == name  # the page rendered
    assert "data-pwned" not in dom.body_attrs
    assert dom.title == document.title and "pwned" not in dom.title

    assert len(dom.charts) == len(document.charts) >= 1
    for chart_id, chart in dom.charts.items():
        assert chart["attrs"].get("data-rendered") == "true", (chart_id, chart["attrs"].get("data-chart-error"))
        assert chart["svg"], f"{chart_id}: no <svg> drawn"

    if name != "coverage":  # the coverage report shows no model output
        assert PAYLOAD_TEXT in "".join(dom.text)  # shown literally, as text

