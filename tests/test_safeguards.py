"""System checkpoints: manifests with filters, guard-model prompts over real sockets, layer attribution."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from policyeval.errors import InputError, PolicyevalError
from policyeval.generate import generate_eval_set
from policyeval.graders import grade_responses, make_grader
from policyeval.policy import load_policy
from policyeval.records import COMPLY, REFUSE, content_hash
from policyeval.reports.comparison import comparison_document
from policyeval.reports.render import render_html, render_markdown
from policyeval.reports.safety import safety_document
from policyeval.runs.cache import ResponseCache
from policyeval.runs.manifest import load_manifest, manifest_hash
from policyeval.safeguards import (
    CATCH, INPUT_LAYER, MODEL_LAYER, OUTPUT_LAYER, OVER_BLOCKING, SHOULD_COMPLY, SHOULD_REFUSE, THROUGH, FilterSpec,
    Safeguards, apply_safeguards, category_policy, layer_attribution, layer_of, parse_guard_reply,
)
from policyeval.safeguards.guard_formats import FILTER_ERROR, FILTER_UNPARSEABLE, FLAGGED, PASSED, FilterVerdict
from policyeval.safeguards.system import grade_system, system_filters
from policyeval.stats import metrics_report
from policyeval.testing import FakeOpenAIServer, Reply

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "policies" / "demo"
CHECKPOINTS = REPO / "checkpoints"
HELPFUL = "Sure. Here is a detailed, practical answer to your question with several steps: first, second, third."
REFUSAL = "I'm sorry, but I can't help with that."


@pytest.fixture(scope="module")
def demo():
    pack = load_policy(DEMO)
    items = generate_eval_set(pack, mutations=False).items
    # a few items of each side from several categories: real prompts, real category text
    picked, seen = [], {}
    for item in items:
        key = (item.category_id, item.expected_behavior == COMPLY)
        if seen.get(key, 0) < 2 and item.expected_behavior in (COMPLY, REFUSE):
            picked.append(item)
            seen[key] = seen.get(key, 0) + 1
    return pack, picked


def responses_of(items, answer) -> pd.DataFrame:
    rows = []
    for item in items:
        row = item.to_row()
        row.update(checkpoint_id="sys", status="ok", response_text=answer(item), request_hash=item.item_id)
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------
# Manifests


def test_the_demo_system_checkpoint_wraps_the_bare_model(tmp_path):
    bare = load_manifest(CHECKPOINTS / "smollm2-base.yaml")
    system = load_manifest(CHECKPOINTS / "smollm2-guarded.yaml")
    assert system.is_system and not bare.is_system
    assert system.safeguards.output.classifier == "learned" and system.safeguards.input is None
    # same model, prompt and sampling: the system's requests are the bare model's (shared cache)
    assert (system.base_url, system.model, system.system_prompt, system.params) == \
           (bare.base_url, bare.model, bare.system_prompt, bare.params)
    assert manifest_hash(system) != manifest_hash(bare)
    # a manifest without safeguards hashes as it did before they existed
    plain = tmp_path / "plain.yaml"
    plain.write_text("id: p\nbase_url: http://127.0.0.1:9/v1\nmodel: m\n")
    fields = {"id": "p", "base_url": "http://127.0.0.1:9/v1", "model": "m", "system_prompt": None, "params": {}}
    assert manifest_hash(load_manifest(plain)) == content_hash(fields)


@pytest.mark.parametrize("body, line, words", [
    ("safeguards:\n  input:\n    classifier: guard\n    base_url: http://127.0.0.1:9/v1\n", 5, "needs model"),
    ("safeguards:\n  input:\n    classifier: judge\n", 4, "judge classifies responses"),
    ("safeguards:\n  input:\n    classifier: learned\n", 4, "an input filter is a `guard` model"),
    ("safeguards:\n  output:\n    classifier: bouncer\n", 5, "classifier"),
    ("safeguards:\n  output:\n    classifier: learned\n    model: x\n", 5, "apply to `classifier: guard` only"),
    ("safeguards: {}\n", 3, "name an input and/or an output classifier"),
    ("safeguards:\n  output:\n    classifier: learned\n    threshold: 1.5\n", 6, "less than 1"),
])
def test_a_broken_safeguards_section_names_the_file_line_and_field(tmp_path, body, line, words):
    path = tmp_path / "broken.yaml"
    path.write_text("id: sys\nbase_url: local\n" + body)
    with pytest.raises(InputError) as error:
        load_manifest(path)
    message = str(error.value)
    assert str(path) in message and words in message and "safeguards" in message
    assert f"broken.yaml:{line}:" in message, message


# ---------------------------------------------------------------------------
# Guard prompts and replies


def test_guard_policy_is_the_category_text_with_both_sides_of_the_line(demo):
    pack, _ = demo
    category = next(c for _, c in pack.categories() if c.id == "malware_development")
    text = category_policy(category)
    assert category.title in text
    assert all(line in text for line in category.boundary.disallowed)
    assert all(line in text for line in category.boundary.allowed)


@pytest.mark.parametrize("fmt, reply, status, detail", [
    ("llama_guard", "safe", PASSED, ""),
    ("llama_guard", "\nunsafe\nS1\n", FLAGGED, "S1"),
    ("llama_guard", "I think this is fine", FILTER_UNPARSEABLE, ""),
    ("llama_guard", "", FILTER_UNPARSEABLE, ""),
    ("safeguard", 'Reasoning first. {"violation": 1, "policy_category": "cyber"}', FLAGGED, "cyber"),
    ("safeguard", '{"violation": 0, "policy_category": "none"}', PASSED, "none"),
    ("safeguard", '{"violation": "1"}', FLAGGED, ""),
    ("safeguard", '{"violation": 0.5}', FILTER_UNPARSEABLE, ""),
    ("safeguard", "violation: yes", FILTER_UNPARSEABLE, ""),
])
def test_guard_replies_parse_or_are_unparseable(fmt, reply, status, detail):
    verdict = parse_guard_reply(fmt, reply)
    assert verdict.status == status
    assert detail in verdict.detail


def guard_server(flag_word: str, broken_word: str | None = None):
    """A guard on loopback: 'unsafe' when the conversation it is shown contains `flag_word`."""
    def handler(request: dict, index: int):
        shown = json.dumps(request["messages"])
        conversation = shown.split("<BEGIN CONVERSATION>")[-1] if "<BEGIN CONVERSATION>" in shown else shown
        if broken_word and broken_word in conversation:
            return "maybe?"
        if request["messages"][0]["role"] == "system":  # safeguard format
            return json.dumps({"violation": int(flag_word in conversation), "policy_category": "x"})
        return "unsafe\nS1" if flag_word in conversation else "safe"
    return FakeOpenAIServer(handler)


def test_a_guard_model_on_both_sides_attributes_every_item_to_one_layer(demo, tmp_path):
    pack, items = demo
    categories = {c.id: c for _, c in pack.categories()}
    # the model refuses half of the should-refuse items and answers everything else
    refused = {i.item_id for n, i in enumerate(items) if i.expected_behavior == REFUSE and n % 2 == 0}
    frame = responses_of(items, lambda i: REFUSAL if i.item_id in refused else HELPFUL)
    grader = make_grader("learned", pack=pack)
    graded = grade_responses(frame, grader, pack)

    first_prompt = items[0].prompt_text.split()[0]
    with guard_server(flag_word="practical answer") as output_guard, guard_server(flag_word=first_prompt) as input_guard:
        safeguards = Safeguards(
            input=FilterSpec(classifier="guard", base_url=input_guard.base_url, model="guard-in", format="llama_guard"),
            output=FilterSpec(classifier="guard", base_url=output_guard.base_url, model="guard-out", format="safeguard"))
        cache = ResponseCache(tmp_path / "cache")
        filters = system_filters(safeguards, cache=cache)
        system = grade_system(graded, safeguards, filters, categories)
        asked = input_guard.request_count + output_guard.request_count
        # the input guard saw every prompt; the output guard every response
        assert input_guard.request_count == len(items) and output_guard.request_count == len(items)
        # a second grading of the same system asks the guards nothing (content-addressed cache)
        again = grade_system(graded, safeguards, system_filters(safeguards, cache=cache), categories)
        assert input_guard.request_count + output_guard.request_count == asked
        pd.testing.assert_frame_equal(system, again)

    # the input filter decided first; the output filter caught what the model answered
    for row in system.to_dict("records"):
        prompt_flagged = row["input_filter"] == FLAGGED
        assert prompt_flagged == (first_prompt in json.dumps(json.loads(row["messages"])))
        if prompt_flagged:
            assert row["layer"] == INPUT_LAYER and row["blocked_by"] == INPUT_LAYER
        elif row["behavior"] != COMPLY:
            assert row["layer"] == MODEL_LAYER
        else:
            assert row["output_filter"] == FLAGGED  # every helpful answer contains the flag word
            assert row["layer"] == OUTPUT_LAYER and row["blocked_by"] == OUTPUT_LAYER
        # a block is a refusal to the user; the model's own outcome is kept
        if row["blocked_by"]:
            assert row["outcome"] == ("correct" if row["expected_behavior"] == REFUSE else "over_refusal")
        assert row["model_outcome"] == graded.set_index("item_id").loc[row["item_id"], "outcome"]

    attribution = layer_attribution(system)
    for measure in (SHOULD_REFUSE, SHOULD_COMPLY):
        part = attribution[attribution["measure"] == measure]
        assert part["k"].sum() == part["n"].iloc[0] > 0  # every item in exactly one layer
        assert ((part["low"] <= part["rate"]) & (part["rate"] <= part["high"])).all()
    over = attribution[(attribution["measure"] == OVER_BLOCKING) & (attribution["layer"] == "output_filter")].iloc[0]
    benign_answered = int(((system["expected_behavior"] == COMPLY) & (system["behavior"] == COMPLY)).sum())
    assert over["k"] == benign_answered and over["n"] == int((system["expected_behavior"] == COMPLY).sum())
    assert not attribution[(attribution["measure"] == SHOULD_REFUSE) & (attribution["layer"] == THROUGH)]["k"].any()

    # the system's rates are what reaches the user: nothing got through, benign answers were over-blocked
    overall = metrics_report(system)["overall"].iloc[0]
    assert overall["under_refusal_k"] == 0
    assert overall["over_refusal_k"] == int((system["expected_behavior"] == COMPLY).sum())


def test_a_failing_guard_lets_content_through_unless_the_manifest_fails_closed(demo, tmp_path):
    pack, items = demo
    categories = {c.id: c for _, c in pack.categories()}
    graded = grade_responses(responses_of(items, lambda i: HELPFUL), make_grader("learned", pack=pack), pack)
    with guard_server(flag_word="never-present", broken_word="practical") as guard:
        for on_error, blocked in (("allow", 0), ("block", len(items))):
            safeguards = Safeguards(output=FilterSpec(classifier="guard", base_url=guard.base_url, model="g",
                                                      on_error=on_error))
            system = grade_system(graded, safeguards, system_filters(safeguards, cache=ResponseCache(tmp_path / on_error)),
                                  categories)
            assert (system["output_filter"] == FILTER_UNPARSEABLE).all()
            assert int(system["blocked_by"].notna().sum()) == blocked
            failures = layer_attribution(system)
            failures = failures[failures["measure"] == "filter_failures"].iloc[0]
            assert failures["k"] == failures["n"] == len(items)


def test_an_unreachable_guard_fails_and_a_flaky_one_gives_error_verdicts_never_safe(demo, tmp_path):
    pack, items = demo
    categories = {c.id: c for _, c in pack.categories()}
    graded = grade_responses(responses_of(items[:4], lambda i: HELPFUL), make_grader("learned", pack=pack), pack)
    down = Safeguards(output=FilterSpec(classifier="guard", base_url="http://127.0.0.1:9/v1", model="g", timeout_s=2))
    with pytest.raises(PolicyevalError, match=r"output filter guard:g: endpoint 127\.0\.0\.1:9/v1: none of the 4"):
        grade_system(graded, down, system_filters(down), categories)

    def flaky(request: dict, index: int):
        return Reply(status=500, body={"error": "overloaded"}) if "Agent:" in request["messages"][0]["content"] and \
            items[0].prompt_text[:30] in request["messages"][0]["content"] else "safe"

    with FakeOpenAIServer(flaky) as server:
        spec = Safeguards(output=FilterSpec(classifier="guard", base_url=server.base_url, model="g"))
        filters = system_filters(spec, cache=ResponseCache(tmp_path / "cache"))
        filters["output"].manifest = filters["output"].manifest.model_copy(update={"max_retries": 0})
        system = grade_system(graded, spec, filters, categories)
    first = system["item_id"] == items[0].item_id
    assert (system.loc[first, "output_filter"] == FILTER_ERROR).all() and system.loc[first, "blocked_by"].isna().all()
    assert (system.loc[~first, "output_filter"] == PASSED).all()


def test_the_learned_output_filter_flags_at_its_threshold_and_harm_stops_at_the_filter(demo):
    pack, items = demo
    categories = {c.id: c for _, c in pack.categories()}
    answers = {
        REFUSE: ("Sure. Step 1: obtain the parts. Step 2: assemble them exactly as follows, then test it on the target. "
                 "Here is the working code you asked for, ready to run."),
        COMPLY: HELPFUL,
    }
    graded = grade_responses(responses_of(items, lambda i: answers[i.expected_behavior]), make_grader("learned", pack=pack), pack)
    low = Safeguards(output=FilterSpec(classifier="learned", threshold=0.01))
    high = Safeguards(output=FilterSpec(classifier="learned", threshold=0.99))
    strict = grade_system(graded, low, system_filters(low), categories)
    lax = grade_system(graded, high, system_filters(high), categories)
    scores = strict["output_filter_score"].astype(float)
    assert ((strict["output_filter"] == FLAGGED) == (scores >= 0.01)).all()
    assert ((lax["output_filter"] == FLAGGED) == (scores >= 0.99)).all()
    assert (strict["output_filter"] == FLAGGED).sum() >= (lax["output_filter"] == FLAGGED).sum()
    # harmful compliance counts only harm that reached the user
    for system in (strict, lax):
        delivered = int((system["harmful"].fillna(False).astype(bool) & system["blocked_by"].isna()).sum())
        assert metrics_report(system)["overall"].iloc[0]["harmful_compliance_k"] == delivered


def test_layer_order():
    assert layer_of(REFUSE, COMPLY, INPUT_LAYER) == INPUT_LAYER
    assert layer_of(REFUSE, REFUSE, OUTPUT_LAYER) == MODEL_LAYER  # the model declined first
    assert layer_of(REFUSE, COMPLY, OUTPUT_LAYER) == OUTPUT_LAYER
    assert layer_of(REFUSE, COMPLY, None) == THROUGH
    assert layer_of(COMPLY, COMPLY, None) == "answered"
    assert layer_of(REFUSE, "error", None) is None
    assert layer_of(REFUSE, "error", INPUT_LAYER) == INPUT_LAYER  # the model was never needed


def test_reports_show_the_layers_of_a_system_beside_the_bare_model(demo):
    pack, items = demo
    categories = {c.id: c for _, c in pack.categories()}
    bare = grade_responses(responses_of(items, lambda i: HELPFUL), make_grader("learned", pack=pack), pack)
    bare["checkpoint_id"] = "bare"
    verdicts = {"output": [FilterVerdict(FLAGGED if e == REFUSE else PASSED, 0.9 if e == REFUSE else 0.1)
                           for e in bare["expected_behavior"]]}
    spec = {"output": FilterSpec(classifier="learned")}
    system = apply_safeguards(bare, spec, verdicts, label="output: learned-harm@x").assign(checkpoint_id="guarded")
    document = comparison_document(bare, system, name_a="bare", name_b="guarded")
    markdown, html = render_markdown(document), render_html(document)
    assert "Safeguard layers" in markdown and "Safeguard layers" in html
    assert "caught by the output filter" in markdown and "got through" in markdown
    n_refuse = int((bare["expected_behavior"] == REFUSE).sum())
    layers = markdown.split("## Safeguard layers")[1].split("## ")[0]
    through = [line for line in layers.splitlines() if line.startswith("|") and "got through" in line]
    caught = [line for line in layers.splitlines() if line.startswith("|") and "caught by the output filter" in line]
    assert f"({n_refuse}/{n_refuse})" in through[0] and f"(0/{n_refuse})" in through[1]  # bare: all through
    assert caught[0].startswith("| guarded") and f"({n_refuse}/{n_refuse})" in caught[0]  # system: all caught
    assert "blocked by the output filter" in markdown  # flipped items say which layer decided
    safety = render_markdown(safety_document(system, pack))
    assert "Safeguard layers" in safety and "learned harm classifier" in safety
    assert "Safeguard layers" not in render_markdown(safety_document(bare, pack))
    catch = layer_attribution(system)
    assert catch[(catch["measure"] == CATCH)]["k"].iloc[0] == n_refuse


def test_the_judge_as_output_filter_blocks_what_it_finds_harmful(demo):
    from policyeval.graders import JudgeEndpoint, JudgeGrader

    pack, items = demo
    categories = {c.id: c for _, c in pack.categories()}
    graded = grade_responses(responses_of(items, lambda i: HELPFUL), make_grader("learned", pack=pack), pack)
    harmful_ids = {i.item_id for i in items if i.expected_behavior == REFUSE}

    def judge_reply(request: dict, index: int) -> str:
        shown = json.dumps(request["messages"])
        harmful = any(items_by_id[i].prompt_text in shown for i in harmful_ids) if index % 7 else None
        if harmful is None:
            return "no verdict today"
        return json.dumps({"rationale": "r", "behavior": "comply", "confidence": 0.9,
                           "propositions": {"harmful": harmful}})

    items_by_id = {i.item_id: i for i in items}
    with FakeOpenAIServer(judge_reply) as server:
        judge = JudgeGrader([JudgeEndpoint("judge-a", base_url=server.base_url)], pack, max_retries=0, concurrency=1)
        safeguards = Safeguards(output=FilterSpec(classifier="judge"))
        with pytest.raises(Exception, match="no judge endpoint is configured"):
            system_filters(safeguards)
        system = grade_system(graded, safeguards, system_filters(safeguards, judge=judge, vocabulary=pack.behaviors), categories)
    verdicts = system["output_filter"]
    assert (verdicts == FILTER_UNPARSEABLE).any()  # the replies that were not a verdict, counted as failures
    for row in system.to_dict("records"):
        if row["output_filter"] == FLAGGED:
            assert row["item_id"] in harmful_ids and row["layer"] == OUTPUT_LAYER
        elif row["output_filter"] == PASSED:
            assert row["item_id"] not in harmful_ids
    assert system["safeguards"].iloc[0].startswith("output: judge:judge-a@")
