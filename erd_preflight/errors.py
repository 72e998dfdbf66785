"""The error hierarchy: one base class, a few subclasses, each message naming the object and the next step."""

from __future__ import annotations

from typing import Literal


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


class StoreMissing(StoreError):
    """No ``migration_run`` table yet on this database: there is no record to read."""


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


class PreflightCancelled(PreflightError):
    """The user stopped the preflight (Ctrl-C, a Cancel button, ``Cancel.cancel()``): its queries were cancelled on
    the server, and there is no report."""


class ReplicaError(PreflightError):
    """``read_from`` does not name a hot standby of the database, or the standby cannot serve the checks."""


class CopyRefused(PreflightError):
    """``rehearse_on`` does not name a disposable copy of the target: the target itself, a standby, another
    schema, or a server that cannot be reached."""


class CheckTimeout(PreflightError):
    """Reading what preflight needs (the catalog, a lock) took longer than ``check_timeout``."""


# ---------------------------------------------------------------------------------------------------------
# What went wrong, from PostgreSQL's SQLSTATE: classified once here, and every caller uses this.

ErrorKind = Literal["data", "privilege", "connection", "limit", "timeout", "lock", "other"]


def classify(exc: BaseException) -> ErrorKind:
    """- class 22/23: ``data`` (the rows break the rule: a finding);
    - 42501: ``privilege`` (a finding with the GRANT that lifts it);
    - class 08, 57P01-57P03, or a connection psycopg reports lost: ``connection`` (``ConnectionFailed``);
    - class 53, 54: ``limit`` (out of memory or disk, a value over a size limit);
    - 57014: ``timeout`` (statement_timeout, or a cancel); 55P03: ``lock`` (lock_timeout)."""
    state = getattr(exc, "sqlstate", None) or ""
    if state[:2] in ("22", "23"):
        return "data"
    if state == "42501":
        return "privilege"
    if state[:2] == "08" or state in ("57P01", "57P02", "57P03"):
        return "connection"
    if state[:2] in ("53", "54"):
        return "limit"
    if state == "57014":
        return "timeout"
    if state == "55P03":
        return "lock"
    # No SQLSTATE at all: libpq lost the connection (server gone, socket closed, backend killed).
    if not state and type(exc).__name__ in ("OperationalError", "InterfaceError"):
        return "connection"
    return "other"


def server_went_away(exc: BaseException, doing: str) -> ConnectionFailed:
    """The error for a connection lost in the middle of something: it names what was going on."""
    diag = getattr(exc, "diag", None)
    reason = (getattr(diag, "message_primary", None) if diag else None) or str(exc).strip() or type(exc).__name__
    reason = " ".join(reason.split())
    return ConnectionFailed(f"the connection to PostgreSQL was lost while {doing} ({reason}): the server went away "
                            "or ended the session (a restart, pg_terminate_backend, the network). Nothing was "
                            "changed by preflight; run it again when the server answers.")
