"""A run in which no request sent was answered measured the endpoint, not the model."""

from policyeval.runs.reachability import unreachable


def row(status: str, cached: bool = False, error: str = "") -> dict:
    return {"status": status, "cached": cached, "error": error}


def test_some_answer_or_nothing_sent_is_a_measurement() -> None:
    assert unreachable([row("ok"), row("error", error="timeout")], "e") is None
    assert unreachable([row("ok", cached=True), row("ok", cached=True)], "e") is None
    assert unreachable([], "e") is None
    assert unreachable([row("content_filtered"), row("error")], "e") is None  # the provider answered


def test_every_request_sent_failing_is_a_broken_run_even_beside_cached_answers() -> None:
    message = unreachable([row("ok", cached=True), row("error", error="connection refused"), row("error", error="later")], "api.example.com/v1")
    assert message is not None
    assert message.startswith("endpoint api.example.com/v1: none of the 2 request(s) sent got an answer (connection refused)")
    assert "previous responses are kept" in message
