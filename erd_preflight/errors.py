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


class PhaseOrderError(PlanError):
    """The plan cannot be split into apply phases without changing what it does (a step that must come
    after a CONCURRENTLY index or a foreign key would run before it)."""


class StoreError(PreflightError):
    """The ``migration_run`` table cannot be created, read or migrated."""


class RunStateError(PreflightError):
    """The run is not in a state that allows this action (e.g. applying a run that is already applied)."""


class ApplyBlocked(PreflightError):
    """The gate is closed: ``decision`` lists each reason and what to do about it. Nothing was changed."""

    def __init__(self, decision: object, message: str) -> None:
        self.decision = decision
        super().__init__(message)


class ConcurrentApply(PreflightError):
    """Another apply holds the database's apply lock. ``run_id`` names it when it is known."""

    def __init__(self, message: str, *, run_id: int | None = None, pid: int | None = None) -> None:
        self.run_id = run_id
        self.pid = pid
        super().__init__(message)


class ApplyFailed(PreflightError):
    """Apply started and did not finish. The message says what was applied and what was not; the run is
    stored with status ``failed`` and every statement's outcome."""

    def __init__(self, message: str, *, run_id: int, phase: str | None = None) -> None:
        self.run_id = run_id
        self.phase = phase
        super().__init__(message)
