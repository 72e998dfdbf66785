"""The error hierarchy: one base class, a few subclasses, each message naming the object and the next step."""

from __future__ import annotations


class PreflightError(Exception):
    """Base class of every error erd_preflight raises on purpose."""


class PlanError(PreflightError, ValueError):
    """A migration plan cannot be built: bad SQL, a bad step, an unknown object.

    ``line`` and ``column`` (1-based) point into the SQL text when the error comes from parsing it.
    """

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None) -> None:
        self.line = line
        self.column = column
        where = f" (line {line}, column {column})" if line is not None else ""
        super().__init__(f"{message}{where}")


class ConnectionFailed(PreflightError):
    """The database cannot be reached or the embedded server cannot start."""
