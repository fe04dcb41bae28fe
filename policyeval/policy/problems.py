"""Problems found in a policy pack, each pinned to a file, line and field path."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import PolicyevalError


@dataclass(frozen=True, order=True)
class Problem:
    file: str
    line: int | None
    field: str
    message: str
    severity: str = "error"  # error | warning

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}" + (" (warning)" if self.severity == "warning" else "")


class PolicyValidationError(PolicyevalError):
    """A pack with errors. Carries every problem, so all can be fixed in one pass."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        errors = [p for p in problems if p.severity == "error"]
        head = f"{len(errors)} error(s) in policy pack"
        super().__init__(head + ("; first: " + str(errors[0]) if errors else ""))
