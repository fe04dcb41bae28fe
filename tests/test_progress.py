"""Progress lines of long steps: throttled, complete at the end, with cache and error counts."""

from policyeval.runs.progress import ProgressReporter


def test_progress_lines_are_throttled_and_the_last_one_is_complete() -> None:
    now = [0.0]
    lines: list[str] = []
    reporter = ProgressReporter(5, lines.append, label="fake-a responses", every_s=10, clock=lambda: now[0])
    for i, row in enumerate([{"cached": True}, {"status": "error"}, {}, {}, {"cached": True}]):
        now[0] = 4.0 * (i + 1)
        reporter(row)
    # emitted at t=12 (12 s after the start) and at the last item (t=20), not in between
    assert len(lines) == 2
    assert lines[0].startswith("fake-a responses: 3/5 done (60%), 1 from cache, 1 errors")
    assert lines[1] == "fake-a responses: 5/5 done (100%), 2 from cache, 1 errors, 0.2/s"
