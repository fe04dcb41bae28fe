"""A domain error ends a step with its own message first.

An exception raised in an asset body reaches the run log as "Error occurred while executing
op ..." with the real message (a file, line or item that is wrong) below a traceback. A
`dg.Failure` is shown by its description. Every asset body is wrapped so a `PolicyevalError`
(bad input, an endpoint that cannot be reached, a missing checkpoint) becomes a Failure
whose description is that message; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

import dagster as dg

from policyeval.errors import PolicyevalError

F = TypeVar("F", bound=Callable[..., Any])


def fail_clearly(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PolicyevalError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from None

    return wrapper  # type: ignore[return-value]
