"""The ``migration_run`` table: every run, its report, gate, confirmations and applied statements.

Defined once with SQLAlchemy Core, in a dedicated schema (default ``erd_preflight``), created idempotently.
The table's comment carries the store version, so a later release can migrate it. Every status change is a
transaction of its own, checked against the state machine in the same UPDATE, so a crash leaves the row
saying where it stopped.
"""

from __future__ import annotations

import datetime as dt
import getpass
import re
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa
from psycopg import sql as psycopg_sql
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.dialects.postgresql import JSONB

from ..errors import RunStateError, StoreError, StoreMissing

if TYPE_CHECKING:
    import pandas as pd

    from ..db import Database

STORE_VERSION = 2  # 2: remediation_rows, the rows remediations deleted or overwrote
DEFAULT_STORE_SCHEMA = "erd_preflight"
_COMMENT = "erd_preflight migration runs: plans, preflight reports, gate decisions, applied SQL. store version {}"

RunStatus = Literal["draft", "blocked", "clear", "stale", "applying", "applied", "failed"]

# Which status may follow which. A failed run may be preflighted again only if nothing of it was applied.
TRANSITIONS: dict[str, frozenset[str]] = {
    "draft": frozenset({"blocked", "clear"}),
    "blocked": frozenset({"blocked", "clear"}),
    "clear": frozenset({"blocked", "clear", "stale", "applying"}),
    "stale": frozenset({"blocked", "clear"}),
    "applying": frozenset({"applied", "failed"}),
    "failed": frozenset({"blocked", "clear"}),
    "applied": frozenset(),
}

_metadata: dict[str, sa.Table] = {}


def migration_run_table(schema: str = DEFAULT_STORE_SCHEMA) -> sa.Table:
    """The SQLAlchemy Core definition of ``<schema>.migration_run``."""
    if schema not in _metadata:
        metadata = sa.MetaData(schema=schema)
        _metadata[schema] = sa.Table(
            "migration_run",
            metadata,
            sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
            sa.Column("name", sa.Text),
            sa.Column("plan", JSONB, nullable=False),
            sa.Column("plan_fingerprint", sa.Text, nullable=False),
            sa.Column("status", sa.Text, nullable=False, server_default="draft"),
            # Exactly the contract JSON of the latest report; the fingerprint of the plan it was made for.
            sa.Column("preflight_report", JSONB),
            sa.Column("preflight_fingerprint", sa.Text),
            sa.Column("gate", JSONB),
            sa.Column("confirmations", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
            sa.Column("applied_sql", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
            sa.Column("status_history", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
            sa.Column("error", sa.Text),
            sa.Column("db_user", sa.Text),
            sa.Column("os_user", sa.Text),
            sa.Column("server_version", sa.Text),
            sa.Column("tool_version", sa.Text),
            sa.CheckConstraint(
                "status IN ('draft', 'blocked', 'clear', 'stale', 'applying', 'applied', 'failed')",
                name="migration_run_status_check",
            ),
            sa.Index("migration_run_fingerprint_idx", "plan_fingerprint"),
            comment=_COMMENT.format(STORE_VERSION),
        )
        sa.Table(
            "remediation_rows",
            metadata,
            sa.Column("id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
            sa.Column("run_id", sa.BigInteger, sa.ForeignKey("migration_run.id", ondelete="CASCADE"), nullable=False),
            sa.Column("position", sa.Integer, nullable=False),  # the remediation's entry in applied_sql
            sa.Column("table_name", sa.Text, nullable=False),
            # 0: the remediation's own table; n: rows a foreign key's ON DELETE action reached n tables away
            sa.Column("depth", sa.SmallInteger, nullable=False, server_default="0"),
            sa.Column("action", sa.Text, nullable=False),
            sa.Column("row_key", JSONB),  # the primary key's values, or the whole row where there is none
            sa.Column("old_row", JSONB, nullable=False),  # the row as it was, for people and queries
            sa.Column("old_text", sa.Text, nullable=False),  # the same, as PostgreSQL's exact text: what restore reads
            sa.Column("new_text", sa.Text),  # an updated row as the remediation left it: restore checks it is still so
            sa.Column("row_tid", sa.Text),  # tableoid and ctid when kept: a row two actions reach is kept once
            sa.Column("restored_at", sa.DateTime(timezone=True)),
            sa.CheckConstraint("action IN ('deleted', 'updated')", name="remediation_rows_action_check"),
            sa.Index("remediation_rows_run_idx", "run_id", "position"),
            comment="erd_preflight: the rows each remediation deleted or overwrote, kept for restore",
        )
    return _metadata[schema]


def remediation_rows_table(schema: str = DEFAULT_STORE_SCHEMA) -> sa.Table:
    """The SQLAlchemy Core definition of ``<schema>.remediation_rows``."""
    return migration_run_table(schema).metadata.tables[f"{schema}.remediation_rows"]


_ensured: set[tuple[str, str]] = set()


def ensure_store(db: Database, schema: str = DEFAULT_STORE_SCHEMA, *, create: bool = True) -> sa.Table:
    """Create the schema and table when missing (idempotent, safe to race), and check the store version.

    With ``create=False`` nothing is ever written (a read-only role may list runs): a missing store raises
    ``StoreMissing``."""
    table = migration_run_table(schema)
    key = (db.url, schema)
    if key in _ensured:
        return table
    name = f"{_quote(schema)}.migration_run"
    try:
        if create:
            with db.begin() as conn:
                # Two first runs at once would race on CREATE SCHEMA/TABLE: serialise them.
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('erd_preflight.store'))"))
                conn.execute(sa.schema.CreateSchema(schema, if_not_exists=True))
                table.metadata.create_all(conn, checkfirst=True)
                comment = conn.execute(sa.text("SELECT obj_description(to_regclass(:name), 'pg_class')"),
                                       {"name": name}).scalar()
                if (_version(comment) or STORE_VERSION) < STORE_VERSION:
                    # an older store: create_all added what it lacked (new tables only); say it is current now
                    conn.execute(sa.schema.SetTableComment(table))
                    comment = table.comment
        else:
            with db.sa_connection() as conn:
                exists, comment = conn.execute(sa.text(
                    "SELECT to_regclass(:name) IS NOT NULL, obj_description(to_regclass(:name), 'pg_class')"),
                    {"name": name}).one()
                conn.rollback()
            if not exists:
                raise StoreMissing(f"there is no record yet: {schema}.migration_run does not exist on this database "
                                   "(MigrationRun.start or erd-preflight apply creates it with the first run)")
    except sa.exc.ProgrammingError as exc:
        raise StoreError(
            f"cannot create the run store {schema}.migration_run: {exc.orig}. Ask for CREATE on the database "
            "(or create the schema for this role), or pass store_schema= a schema you may write to."
        ) from exc
    found = _version(comment)
    if found is None:
        raise StoreError(f"{schema}.migration_run exists but was not created by erd_preflight (its comment is "
                         f"{comment!r}); pass store_schema= another schema.")
    if found > STORE_VERSION:
        raise StoreError(f"{schema}.migration_run is store version {found}, newer than this erd_preflight "
                         f"understands ({STORE_VERSION}); upgrade erd_preflight.")
    _ensured.add(key)
    return table


def _version(comment: str | None) -> int | None:
    match = re.search(r"store version (\d+)$", comment or "")
    return int(match.group(1)) if match else None


def _quote(name: str) -> str:
    """A schema name quoted as PostgreSQL quotes it, for to_regclass (a parameter, never SQL text)."""
    return psycopg_sql.Identifier(name).as_string()


class AppliedStatement(BaseModel):
    """One entry of ``applied_sql``: a statement apply (or a remediation) ran, and what became of it."""

    model_config = ConfigDict(extra="allow")

    phase: str  # A, B, C, cleanup, remediation
    step: int | None = None
    sql: str
    attempt: int = 1
    started: str
    finished: str | None = None
    # running: started, no answer yet (a crash leaves it so); done: ran inside a transaction not yet committed;
    # applied: committed (or ran outside a transaction); rolled_back; failed; lock_timeout
    outcome: Literal["running", "done", "applied", "rolled_back", "failed", "lock_timeout"] = "running"
    error: str | None = None
    rows: int | None = None


class _Stored(BaseModel):
    """A JSON object stored in a ``migration_run`` column, typed. ``entry["field"]`` and ``entry.get("field")``
    still read it, as they did when these were plain dicts."""

    model_config = ConfigDict(frozen=True, extra="allow")

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)


class StatusChange(_Stored):
    """One entry of ``status_history``: the status a run moved to, when, and why."""

    status: RunStatus
    at: str
    note: str | None = None


class Confirmation(_Stored):
    """A stored confirmation of a non-concurrent index build on a large table: who, when, what, and the estimate
    they saw."""

    table: str
    step: int
    what: str
    estimated_rows: int
    total_bytes: int
    confirmed_by: str | None
    db_user: str | None
    confirmed_at: str
    report_created_at: str | None
    hold_seconds: float | None = None  # a lock held longer than the budget: the estimated hold that was shown


class Acknowledgement(_Stored):
    """A stored acknowledgement of a step preflight cannot verify: who accepted it, when, what they were told,
    for which report. Kept with the confirmations (``kind`` tells them apart)."""

    kind: Literal["acknowledgement"] = "acknowledgement"
    step: int
    what: str  # the step's summary
    finding: str  # the message of the finding that named it
    acknowledged_by: str | None
    db_user: str | None
    acknowledged_at: str
    report_created_at: str | None


class RunRecord(BaseModel):
    """A ``migration_run`` row as stored."""

    model_config = ConfigDict(frozen=True)

    id: int
    created_at: dt.datetime
    updated_at: dt.datetime
    name: str | None
    plan: list[dict[str, Any]]
    plan_fingerprint: str
    status: RunStatus
    preflight_report: dict[str, Any] | None
    preflight_fingerprint: str | None
    gate: dict[str, Any] | None
    # large-table confirmations and step acknowledgements, in the order people gave them
    confirmations: list[Acknowledgement | Confirmation] = Field(default_factory=list)
    applied_sql: list[AppliedStatement] = Field(default_factory=list)
    status_history: list[StatusChange] = Field(default_factory=list)
    error: str | None
    db_user: str | None
    os_user: str | None
    server_version: str | None
    tool_version: str | None

    @property
    def acknowledgements(self) -> list[Acknowledgement]:
        return [c for c in self.confirmations if isinstance(c, Acknowledgement)]

    @property
    def nothing_applied(self) -> bool:
        return not any(s.outcome == "applied" and s.phase in ("A", "B", "C") for s in self.applied_sql)

    def statements_frame(self) -> pd.DataFrame:
        """Every statement recorded in ``applied_sql`` (remediations, phases A/B/C, cleanup), as a table."""
        from ..notebook.display import statements_frame

        return statements_frame(self)

    def _repr_html_(self) -> str:
        from ..notebook.display import run_html

        return run_html(self)

    def where_it_stopped(self) -> str | None:
        """For a run whose last statement never finished: which one it was."""
        for entry in reversed(self.applied_sql):
            if entry.outcome in ("running", "done"):
                return f"phase {entry.phase}, step {entry.step}: {entry.sql}"
        return None


def now_text() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class RunStore:
    """Reads and writes ``migration_run`` rows. Each method is one short transaction of its own."""

    def __init__(self, db: Database, schema: str = DEFAULT_STORE_SCHEMA, *, create: bool = True) -> None:
        self.db = db
        self.schema = schema
        self.table = ensure_store(db, schema, create=create)

    def create(self, *, plan: list[dict[str, Any]], fingerprint: str, name: str | None, tool_version: str,
               note: str = "run created") -> int:
        t = self.table
        with self.db.begin() as conn:
            info = conn.execute(sa.text("SELECT current_user, current_setting('server_version')")).one()
            return int(conn.execute(
                sa.insert(t).values(
                    plan=plan, plan_fingerprint=fingerprint, name=name, status="draft",
                    db_user=info[0], os_user=_os_user(), server_version=info[1], tool_version=tool_version,
                    status_history=[StatusChange(status="draft", at=now_text(), note=note).model_dump(mode="json")],
                ).returning(t.c.id)
            ).scalar_one())

    def get(self, run_id: int) -> RunRecord:
        with self.db.begin() as conn:
            row = conn.execute(sa.select(self.table).where(self.table.c.id == run_id)).mappings().first()
        if row is None:
            raise RunStateError(f"there is no migration run {run_id} in {self.schema}.migration_run")
        return RunRecord(**row)

    def update(self, run_id: int, **values: Any) -> None:
        t = self.table
        with self.db.begin() as conn:
            conn.execute(sa.update(t).where(t.c.id == run_id).values(updated_at=sa.func.now(), **values))

    def transition(self, run_id: int, to: RunStatus, *, note: str, **values: Any) -> RunRecord:
        """Move the run to ``to`` if the state machine allows it from its current status, atomically."""
        t = self.table
        allowed_from = [s for s, targets in TRANSITIONS.items() if to in targets]
        entry = StatusChange(status=to, at=now_text(), note=note).model_dump(mode="json")
        with self.db.begin() as conn:
            row = conn.execute(
                sa.update(t)
                .where(t.c.id == run_id, t.c.status.in_(allowed_from))
                .values(status=to, updated_at=sa.func.now(),
                        status_history=t.c.status_history.op("||")(sa.cast([entry], JSONB)), **values)
                .returning(t.c.id)
            ).first()
            if row is None:
                current = conn.execute(sa.select(t.c.status).where(t.c.id == run_id)).scalar()
        if row is None:
            if current is None:
                raise RunStateError(f"there is no migration run {run_id} in {self.schema}.migration_run")
            raise RunStateError(
                f"run {run_id} is {current}; it cannot become {to}. Allowed next: "
                f"{', '.join(sorted(TRANSITIONS[current])) or 'nothing (the run is finished)'}."
                + (" Start a new run with MigrationRun.start(plan, db)." if current in ("applied", "applying") else "")
            )
        return self.get(run_id)

    def append_statement(self, run_id: int, entry: AppliedStatement) -> int:
        """Add an ``applied_sql`` entry and commit it; returns its position for later updates."""
        t = self.table
        with self.db.begin() as conn:
            length = conn.execute(
                sa.update(t).where(t.c.id == run_id)
                .values(applied_sql=t.c.applied_sql.op("||")(sa.cast([entry.model_dump(exclude_none=True)], JSONB)),
                        updated_at=sa.func.now())
                .returning(sa.func.jsonb_array_length(t.c.applied_sql))
            ).scalar_one()
        return int(length) - 1

    def update_statement(self, run_id: int, position: int, **fields: Any) -> None:
        t = self.table
        with self.db.begin() as conn:
            conn.execute(
                sa.update(t).where(t.c.id == run_id).values(
                    applied_sql=sa.func.jsonb_set(
                        t.c.applied_sql, sa.cast([str(position)], sa.ARRAY(sa.Text)),
                        t.c.applied_sql[position].op("||")(sa.cast({k: v for k, v in fields.items()}, JSONB)),
                    ),
                    updated_at=sa.func.now(),
                )
            )

    def mark_applied(self, positions: list[int], run_id: int) -> psycopg_sql.Composed:
        """An UPDATE marking ``applied_sql`` entries applied, to run inside the transaction that applies them."""
        return psycopg_sql.SQL(
            "UPDATE {} SET updated_at = now(), applied_sql = (SELECT jsonb_agg(CASE WHEN x.n - 1 = ANY({}) "
            "THEN x.e || '{{\"outcome\": \"applied\"}}'::jsonb ELSE x.e END ORDER BY x.n) "
            "FROM jsonb_array_elements(applied_sql) WITH ORDINALITY AS x(e, n)) WHERE id = {}"
        ).format(psycopg_sql.Identifier(self.schema, "migration_run"), psycopg_sql.Literal(positions),
                 psycopg_sql.Literal(run_id))

    def runs(self, fingerprint: str | None = None, limit: int | None = None) -> list[RunRecord]:
        t = self.table
        query = sa.select(t).order_by(t.c.id.desc())
        if fingerprint is not None:
            query = query.where(t.c.plan_fingerprint == fingerprint)
        if limit is not None:
            query = query.limit(limit)
        with self.db.begin() as conn:
            return [RunRecord(**row) for row in conn.execute(query).mappings()]

    def applying(self) -> list[RunRecord]:
        t = self.table
        with self.db.begin() as conn:
            rows = conn.execute(sa.select(t).where(t.c.status == "applying").order_by(t.c.id)).mappings()
            return [RunRecord(**row) for row in rows]


def _os_user() -> str | None:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return None


def runs(db: Any = None, *, store_schema: str = DEFAULT_STORE_SCHEMA, limit: int = 100) -> pd.DataFrame:
    """The audit trail: past migration runs, newest first, one row each. Read-only: on a database with no
    store yet it is empty, and ``frame.attrs["note"]`` says there is no record yet."""
    import pandas as pd

    from ..db import connect

    if limit < 0:
        raise ValueError(f"limit must be 0 or more, not {limit}")
    try:
        records = RunStore(connect(db), store_schema, create=False).runs(limit=limit)
        note = None
    except StoreMissing as missing:
        records, note = [], str(missing)
    rows = []
    for r in records:
        report = r.preflight_report or {}
        results = report.get("results", [])
        rows.append({
            "id": r.id,
            "created_at": r.created_at,
            "updated_at": r.updated_at,
            "name": r.name,
            "status": r.status,
            "steps": len(r.plan),
            "blocking": sum(1 for x in results if x.get("severity") == "blocking") if report else pd.NA,
            "warnings": sum(1 for x in results if x.get("severity") == "warning") if report else pd.NA,
            "applied_statements": sum(1 for s in r.applied_sql if s.outcome == "applied"),
            "error": r.error,
            "db_user": r.db_user,
            "plan_fingerprint": r.plan_fingerprint[:12],
        })
    columns = ["id", "created_at", "updated_at", "name", "status", "steps", "blocking", "warnings",
               "applied_statements", "error", "db_user", "plan_fingerprint"]
    frame = pd.DataFrame(rows, columns=columns)
    for col in ("blocking", "warnings", "applied_statements", "steps", "id"):
        frame[col] = frame[col].astype("Int64")
    frame = frame.set_index("id")
    if note:
        frame.attrs["note"] = note
    return frame
