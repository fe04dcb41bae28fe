"""User-facing errors: one line that names the file, line or item at fault.

The CLI prints these without a traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class PolicyevalError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class InputError(PolicyevalError):
    """A file the user gave is missing, malformed or of the wrong shape."""

    def __init__(self, path: object, message: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        self.message = message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")
