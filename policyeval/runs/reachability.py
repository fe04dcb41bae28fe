"""When a run measured the model and when it only measured a broken endpoint.

Error rows are part of a measurement: they count against the launch gate's error ceiling,
so a flaky endpoint shows as a failed gate. But a run in which no request sent got an
answer (the endpoint down, a wrong URL or key) measured nothing about the model; storing
it would replace good responses with all-error rows. Such a run is a failure, said in one
line, and the previous responses stay.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..records import ERROR


def unreachable(rows: Iterable[Mapping[str, Any]], endpoint: str) -> str | None:
    """None when some request sent this run was answered (or none was sent); else why not."""
    sent = errors = 0
    first_error = ""
    for row in rows:
        if row.get("cached"):
            continue
        sent += 1
        if row.get("status") == ERROR:
            errors += 1
            first_error = first_error or str(row.get("error") or "")
    if sent == 0 or errors < sent:
        return None
    return (f"endpoint {endpoint}: none of the {sent} request(s) sent got an answer ({first_error or 'no cause given'}); "
            "nothing was measured, so the previous responses are kept: fix the endpoint and run again")
