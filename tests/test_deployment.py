"""Deployment conversations: personal data scrubbed on import, bad lines named, refusal
rates per bucket, and drift flagged only beyond the margin with intervals apart."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from policyeval.deployment import (
    PiiScrubber,
    baseline_rates,
    bucket_start,
    detect_drift,
    drifted,
    grade_conversations,
    is_card_number,
    load_conversations,
    luhn_valid,
    parse_timestamp,
    refusal_rates,
)
from policyeval.errors import InputError
from policyeval.reports import drift_document

# ---------------------------------------------------------------------------
# Scrubbing

LUHN_VALID = ["4111111111111111", "4111 1111 1111 1111", "5500-0055-5555-5559", "378282246310005",
              "6011 0009 9013 9424"]
LUHN_INVALID = ["4111111111111112", "4111 1111 1111 1112", "5500-0055-5555-5558"]


def test_luhn():
    assert luhn_valid("79927398713") and not luhn_valid("79927398710")
    assert all(is_card_number("".join(c for c in n if c.isdigit())) for n in LUHN_VALID)
    assert not any(is_card_number("".join(c for c in n if c.isdigit())) for n in LUHN_INVALID)
    assert not is_card_number("1234567812345670")  # Luhn-valid, but no card network issues it


@pytest.mark.parametrize("number", LUHN_VALID)
def test_valid_card_numbers_are_scrubbed(number):
    scrubbed = PiiScrubber().scrub(f"{number} is my card, charge {number}.")
    assert scrubbed == "[CARD] is my card, charge [CARD]."


@pytest.mark.parametrize("number", LUHN_INVALID + ["123456789012", "20240102123045"])
def test_other_long_numbers_are_kept(number):
    text = f"order {number} shipped"
    assert PiiScrubber().scrub(text) == text


def test_emails_phones_and_ips_are_scrubbed():
    scrubber = PiiScrubber()
    text = ("Write to jane.doe+tag@example.co.uk or J_Smith@mail.example.org, call (415) 555-2671, "
            "+44 20 7946 0958 or 020 7946 0958; server 192.168.1.20 and 2001:db8::8a2e:370:7334.")
    assert scrubber.scrub(text) == ("Write to [EMAIL] or [EMAIL], call [PHONE], [PHONE] or [PHONE]; "
                                    "server [IP] and [IP].")
    assert dict(scrubber.counts) == {"EMAIL": 2, "PHONE": 3, "IP": 2}


def test_ordinary_text_is_left_alone():
    text = "Meet me at 5.30 at the office; version 2.1, 12:30:45, std::map, 3 of 40 items, dated 2024-01-02."
    assert PiiScrubber().scrub(text) == text


# ---------------------------------------------------------------------------
# Import


def write_jsonl(path, records):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n")
    return path


def test_import_scrubs_every_text(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [
        {"timestamp": "2026-03-02T10:00:00Z", "prompt": "I am bob@example.com, card 4111 1111 1111 1111",
         "response": "Noted, bob@example.com.", "category": "fraud", "conversation_id": "c1"},
        {"timestamp": "2026-03-02T11:00:00+02:00", "conversation_id": 7, "messages": [
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": [{"type": "text", "text": "Call me at (415) 555-2671"}]},
            {"role": "assistant", "content": "I'll call (415) 555-2671 from 10.0.0.1."}]},
    ])
    imported = load_conversations(path)
    first, second = imported.conversations
    assert first.prompt_text == "I am [EMAIL], card [CARD]"
    assert first.response_text == "Noted, [EMAIL]."
    assert second.prompt_text == "Call me at [PHONE]"
    assert second.response_text == "I'll call [PHONE] from [IP]."
    assert second.timestamp == datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
    assert (second.conversation_id, second.category_id) == ("7", "(none)")
    assert imported.scrubbed == {"CARD": 1, "EMAIL": 2, "IP": 1, "PHONE": 2}
    raw = json.dumps([c.__dict__ for c in imported.conversations], default=str)
    for secret in ("bob@example.com", "4111", "555-2671", "10.0.0.1"):
        assert secret not in raw


@pytest.mark.parametrize(("line", "message"), [
    ('{"prompt": "a", "response": "b"}', "missing `timestamp`"),
    ('{"timestamp": "yesterday", "prompt": "a", "response": "b"}', "is not an ISO 8601 date-time"),
    ('{"timestamp": 1700000000, "prompt": "a", "response": "b"}', "must be an ISO 8601 string"),
    ('{"timestamp": "2026-03-02", "prompt": "a"}', "`response` must be a string"),
    ('{"timestamp": "2026-03-02", "messages": [{"role": "user", "content": "a"}]}', "must be the assistant's"),
    ('{"timestamp": "2026-03-02", "messages": [], "prompt": "a"}', "not both"),
    ('{"timestamp": "2026-03-02"}', "needs `messages`, or `prompt` and `response`"),
    ("{not json", "invalid JSON"),
])
def test_bad_line_is_named(tmp_path, line, message):
    good = {"timestamp": "2026-03-02T10:00:00Z", "prompt": "a", "response": "b"}
    path = write_jsonl(tmp_path / "d.jsonl", [good, good, line])
    with pytest.raises(InputError) as caught:
        load_conversations(path)
    assert caught.value.line == 3
    assert str(caught.value).startswith(f"{path}:3: ")
    assert message in str(caught.value)


def test_timestamps():
    assert parse_timestamp("2026-03-02T10:00:00") == datetime(2026, 3, 2, 10, tzinfo=timezone.utc)  # naive = UTC
    assert parse_timestamp("2026-03-02T01:00:00-05:00") == datetime(2026, 3, 2, 6, tzinfo=timezone.utc)
    sunday = datetime(2026, 3, 8, 23, tzinfo=timezone.utc)
    assert bucket_start(sunday, "week").isoformat() == "2026-03-02"  # ISO weeks start on Monday
    assert bucket_start(sunday, "day").isoformat() == "2026-03-08"


# ---------------------------------------------------------------------------
# Rates and drift


def graded(category: str, refused: int, complied: int, start: datetime, invalid: int = 0) -> pd.DataFrame:
    rows = []
    for i in range(refused + complied + invalid):
        rows.append({"conversation_id": f"{category}-{start.date()}-{i}", "line": i, "timestamp": start + timedelta(minutes=i),
                     "category_id": category, "prompt_text": "", "response_text": "", "grader_id": "refusal",
                     "grader_version": "1", "behavior": "refuse" if i < refused else "comply" if i < refused + complied
                     else "error", "valid": i < refused + complied, "refused": i < refused})
    return pd.DataFrame(rows)


def baseline(category: str, refused: int, complied: int) -> pd.DataFrame:
    return pd.DataFrame({"category_id": [category] * (refused + complied), "checkpoint_id": "ck-a",
                         "behavior": ["refuse"] * refused + ["comply"] * complied})


MONDAY = datetime(2026, 3, 2, 9, tzinfo=timezone.utc)


def flags(result, category):
    rows = result.rates[result.rates["category_id"] == category]
    return list(rows["drifted"])


def test_drift_flagged_beyond_margin_with_intervals_apart():
    deployment = pd.concat([
        graded("weapons", 90, 10, MONDAY),  # 90% vs 50%: far beyond the margin, intervals apart
        graded("cyber", 55, 45, MONDAY),  # 55% vs 50%: within the margin
        graded("bio", 4, 1, MONDAY),  # 80% vs 50% on 5 conversations: intervals overlap
        graded("fraud", 130, 70, MONDAY),  # 65% vs 50% on 200 each: apart, but within a 0.2 margin
    ], ignore_index=True)
    base = pd.concat([*(baseline(c, 50, 50) for c in ("weapons", "cyber", "bio")), baseline("fraud", 100, 100)],
                     ignore_index=True)

    result = detect_drift(deployment, base, bucket="week", margin=0.1)
    assert flags(result, "weapons") == [True]
    assert flags(result, "cyber") == [False]
    assert flags(result, "bio") == [False]
    assert flags(result, "fraud") == [True]
    assert flags(detect_drift(deployment, base, bucket="week", margin=0.2), "fraud") == [False]
    row = result.rates[result.rates["category_id"] == "weapons"].iloc[0]
    assert row["delta"] == pytest.approx(0.4)
    assert (row["k"], row["n"], row["baseline_k"], row["baseline_n"]) == (90, 100, 50, 100)


def test_drift_rule_needs_both_conditions():
    assert drifted(0.9, 0.83, 0.94, 0.5, 0.4, 0.6, margin=0.1)
    assert not drifted(0.9, 0.5, 0.99, 0.5, 0.4, 0.6, margin=0.1)  # overlapping intervals
    assert not drifted(0.55, 0.52, 0.58, 0.5, 0.47, 0.51, margin=0.1)  # apart, within the margin
    assert not drifted(None, 0.0, 1.0, 0.5, 0.4, 0.6, margin=0.1)  # nothing measured


def test_rates_per_bucket_and_baseline():
    deployment = pd.concat([graded("weapons", 3, 1, MONDAY), graded("weapons", 1, 3, MONDAY + timedelta(days=1), invalid=2),
                            graded("weapons", 2, 2, MONDAY + timedelta(days=7))], ignore_index=True)
    daily = refusal_rates(deployment, "day")
    weekly = refusal_rates(deployment, "week")
    weapons_daily = daily[daily["category_id"] == "weapons"]
    assert list(weapons_daily["k"]) == [3, 1, 2] and list(weapons_daily["n"]) == [4, 4, 4]
    assert list(weapons_daily["n_invalid"]) == [0, 2, 0]
    weapons_weekly = weekly[weekly["category_id"] == "weapons"]
    assert [d.isoformat() for d in weapons_weekly["bucket_start"]] == ["2026-03-02", "2026-03-09"]
    assert list(weapons_weekly["k"]) == [4, 2]
    base = baseline_rates(pd.DataFrame({"category_id": ["a", "a", "a", "b"], "checkpoint_id": "ck",
                                        "behavior": ["refuse", "comply", "error", "refuse"]}))
    assert base.set_index("category_id").loc["a", ["k", "n"]].tolist() == [1, 2]
    assert base.set_index("category_id").loc["(all)", ["k", "n"]].tolist() == [2, 3]


def test_baseline_must_be_one_checkpoint():
    two = pd.concat([baseline("a", 1, 1), baseline("a", 1, 1).assign(checkpoint_id="ck-b")])
    with pytest.raises(Exception, match="2 checkpoints"):
        baseline_rates(two)


def test_grade_import_and_report(tmp_path):
    records = []
    for day in range(3):
        for j in range(20):
            stamp = (MONDAY + timedelta(days=day, minutes=j)).isoformat()
            refuse = day == 0
            records.append({"timestamp": stamp, "category": "weapons", "prompt": f"help, I am x{j}@example.com",
                            "response": "I can't help with that." if refuse else "Sure, here is how: step 1, begin."})
    imported = load_conversations(write_jsonl(tmp_path / "d.jsonl", records))
    rows = grade_conversations(imported.conversations)
    assert set(rows["behavior"]) == {"refuse", "comply"}
    result = detect_drift(rows, baseline("weapons", 10, 30), bucket="day", margin=0.1, scrubbed=imported.scrubbed)
    assert flags(result, "weapons") == [True, False, False]  # 100% on day one vs 25% on the eval set
    document = drift_document(result, source="d.jsonl")
    page, markdown = document.to_html(), document.to_markdown()
    assert len(document.charts) == 1 and "data-vega-spec" in page
    assert "100.0% [83.9–100.0] (20/20)" in page and "25.0% [14.2–40.2] (10/40)" in page
    assert "on import: 60 email" in markdown
    assert "x0@example.com" not in page
