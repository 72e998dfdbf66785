"""The checks' data: ids, options, probes, a check, the lock each step kind takes, and verdicts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from psycopg import sql
from pydantic import BaseModel, ConfigDict, Field

from ..contract import DEFAULT_SAMPLE_CAP, Outcome, TargetRef
from ..plan import (
    AddCheck,
    AddColumn,
    AddForeignKey,
    AddUnique,
    AlterColumnType,
    CreateIndex,
    DropIndex,
    SetNotNull,
    Step,
)

NOT_NULL_PRECHECK = "NOT_NULL_PRECHECK"
UNIQUE_PRECHECK = "UNIQUE_PRECHECK"
FK_VIOLATIONS_PRECHECK = "FK_VIOLATIONS_PRECHECK"
CAST_PRECHECK = "CAST_PRECHECK"
CHECK_CONSTRAINT_PRECHECK = "CHECK_CONSTRAINT_PRECHECK"
OBJECT_PRECHECK = "OBJECT_PRECHECK"
INVALID_INDEX_PRECHECK = "INVALID_INDEX_PRECHECK"
LARGE_TABLE_WARNING = "LARGE_TABLE_WARNING"
NON_CONCURRENT_INDEX_WARNING = "NON_CONCURRENT_INDEX_WARNING"
DESTRUCTIVE_CHANGE_WARNING = "DESTRUCTIVE_CHANGE_WARNING"
UNMODELLED_SQL_WARNING = "UNMODELLED_SQL_WARNING"
REHEARSAL_PRECHECK = "REHEARSAL_PRECHECK"  # PostgreSQL refused a statement on an empty copy of the schema
REHEARSAL_UNAVAILABLE_WARNING = "REHEARSAL_UNAVAILABLE_WARNING"


class PreflightOptions(BaseModel):
    """The caps and thresholds of a preflight. Every field can also be passed to ``run_preflight``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sample_cap: int = Field(default=DEFAULT_SAMPLE_CAP, ge=0, le=10_000, description="sample rows kept per finding")
    check_timeout: float = Field(default=60.0, gt=0, description="seconds one check may run before it blocks")
    rehearse: bool = Field(default=True, description="run the plan first on an empty copy of the schema in the "
                           "embedded PostgreSQL, so PostgreSQL itself says which statement it refuses")
    large_table_rows: int = Field(default=1_000_000, ge=0, description="estimated rows that make a table large")
    large_table_bytes: int = Field(default=1 << 30, ge=0, description="total bytes that make a table large")


# ---------------------------------------------------------------------------------------------------------
# What a check runs: a probe. Probes are data; preflight renders and executes them.


@dataclass(frozen=True)
class Source:
    """A table as it is at one step of the plan: the base table, or a derived relation over it."""

    key: str  # equal keys read the same rows: their checks may share one scan
    relation: sql.Composable
    alias: str
    columns: tuple[tuple[str, str], ...]  # (name, type) at this step
    derived: bool
    expressions: tuple[str, ...] = ()  # the plan's expressions each derived layer evaluates, as SELECT lists

    def from_item(self) -> sql.Composed:
        return sql.SQL("{} AS {}").format(self.relation, sql.Identifier(self.alias))


@dataclass(frozen=True)
class Verdict:
    """A result known without reading data: from the catalog, or from what the plan does."""

    outcome: Outcome
    message: str
    stats: dict[str, int | float] = field(default_factory=dict)


@dataclass(frozen=True)
class RowsProbe:
    """Violations are the rows of ``source`` for which ``predicate`` is true. Shares scans by source key."""

    source: Source
    predicate: sql.Composable


@dataclass(frozen=True)
class DuplicatesProbe:
    source: Source
    columns: tuple[str, ...]
    nulls_not_distinct: bool
    where: sql.Composable | None = None


@dataclass(frozen=True)
class OrphansProbe:
    child: Source
    columns: tuple[str, ...]
    parent: Source
    ref_columns: tuple[str, ...]
    match_full: bool


@dataclass(frozen=True)
class CastProbe:
    """Rows whose new value cannot be produced: the USING expression or the cast fails, or a NOT NULL
    column would get NULL. ``length_limit`` covers varchar(n)/char(n), which assignment enforces."""

    source: Source
    column: str
    expression: sql.Composable
    type: str
    not_null: bool
    length_limit: int | None


Probe = Verdict | RowsProbe | DuplicatesProbe | OrphansProbe | CastProbe


@dataclass(frozen=True)
class Check:
    """One check of one step. ``fail``/``ok`` are message templates filled with the measured stats."""

    check_id: str
    step: int
    step_summary: str
    target: TargetRef | None
    probe: Probe
    fail: str = ""
    ok: str = ""
    notes: tuple[str, ...] = ()
    failure: Literal["warning", "blocking"] = "blocking"
    rehearsed: bool = False  # PostgreSQL ran the step in the rehearsal: every object it names exists by then
    unsure_pass: str | None = None  # what a run without violations says instead of a pass (rows not read)

    def message(self, text: str, stats: dict[str, Any]) -> str:
        body = text.format(**{k: (f"{v:,}" if isinstance(v, int) else v) for k, v in stats.items()})
        return " ".join([body, *self.notes])

    def describe(self) -> dict[str, Any]:
        """What a notebook shows of a check before it runs."""
        return {
            "checkId": self.check_id,
            "step": self.step,
            "stepSummary": self.step_summary,
            "target": self.target.label() if self.target else "",
            "probe": type(self.probe).__name__,
            "source": getattr(getattr(self.probe, "source", None), "key", None)
            or getattr(getattr(self.probe, "child", None), "key", None),
        }


# ---------------------------------------------------------------------------------------------------------
# What each DDL takes and does, for the scheduling hint (PostgreSQL's documented lock levels).

LOCKS: dict[str, tuple[str, str]] = {
    "add_column": ("ACCESS EXCLUSIVE", "no rewrite for a constant or non-volatile default (PostgreSQL 11+); "
                   "a volatile default rewrites the table; NOT NULL without a default scans it"),
    "set_not_null": ("ACCESS EXCLUSIVE", "a full scan to verify no NULLs, blocking reads and writes meanwhile"),
    "drop_not_null": ("ACCESS EXCLUSIVE", "a catalog change only, but it waits for and blocks all traffic"),
    "alter_column_type": ("ACCESS EXCLUSIVE", "a rewrite of the table and its indexes unless the types are "
                          "binary coercible"),
    "add_unique": ("ACCESS EXCLUSIVE", "a full scan and sort to build the unique index"),
    "create_index": ("SHARE", "a full scan and sort; writes wait until it ends"),
    "create_index_concurrently": ("SHARE UPDATE EXCLUSIVE", "two scans; reads and writes go on"),
    "add_foreign_key": ("SHARE ROW EXCLUSIVE on both tables", "a full scan of the referencing table"),
    "add_foreign_key_not_valid": ("SHARE ROW EXCLUSIVE on both tables", "no scan (NOT VALID)"),
    "add_check": ("ACCESS EXCLUSIVE", "a full scan to verify the expression"),
    "add_check_not_valid": ("ACCESS EXCLUSIVE", "no scan (NOT VALID)"),
    "add_unique_using_index": ("ACCESS EXCLUSIVE", "a brief catalog change: the index already exists"),
    "validate_constraint": ("SHARE UPDATE EXCLUSIVE", "a full scan; reads and writes go on"),
    "drop_column": ("ACCESS EXCLUSIVE", "a catalog change; the space is reclaimed by later rewrites"),
    "drop_table": ("ACCESS EXCLUSIVE", "the table and its data are removed"),
    "drop_constraint": ("ACCESS EXCLUSIVE", "a catalog change"),
    "drop_index": ("ACCESS EXCLUSIVE on its table", "a catalog change, but it waits for and blocks all traffic on "
                   "the table; DROP INDEX CONCURRENTLY does not"),
    "drop_index_concurrently": ("SHARE UPDATE EXCLUSIVE", "waits for transactions using the index; reads and "
                                "writes go on"),
    "create_table": ("none on existing tables", "a new, empty table; a REFERENCES clause takes SHARE ROW EXCLUSIVE "
                     "on the table it references"),
    "raw": ("unknown", "an unmodelled statement"),
}


def lock_of(step: Step) -> tuple[str, str]:
    """The lock a step takes and what it does meanwhile. Every step kind has an entry: a missing one fails."""
    return LOCKS[lock_key(step)]


def lock_key(step: Step) -> str:
    if isinstance(step, (CreateIndex, DropIndex)) and step.concurrently:
        return f"{step.kind}_concurrently"
    if isinstance(step, (AddForeignKey, AddCheck)) and step.not_valid:
        return f"{step.kind}_not_valid"
    return step.kind


def human_rows(n: int) -> str:
    return f"{n:,}"


def human_bytes(n: int) -> str:
    """A size for people: 812 B, 3.4 MiB, 1.2 GiB."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def verdict(check_id: str, index: int, step: Step, outcome: Outcome, message: str,
             target: TargetRef | None = None, **stats: int | float) -> Check:
    return Check(
        check_id=check_id,
        step=index,
        step_summary=step.summary(),
        target=target or step.target(),
        probe=Verdict(outcome=outcome, message=message, stats=dict(stats)),
        failure="warning" if outcome == "warning" else "blocking",
    )


def primary_check_id(step: Step) -> str:
    if isinstance(step, SetNotNull):
        return NOT_NULL_PRECHECK
    if isinstance(step, AddColumn):
        return NOT_NULL_PRECHECK if step.not_null else OBJECT_PRECHECK
    if isinstance(step, AddUnique) or (isinstance(step, CreateIndex) and step.unique):
        return UNIQUE_PRECHECK
    if isinstance(step, AddForeignKey):
        return FK_VIOLATIONS_PRECHECK
    if isinstance(step, AlterColumnType):
        return CAST_PRECHECK
    if isinstance(step, AddCheck):
        return CHECK_CONSTRAINT_PRECHECK
    return OBJECT_PRECHECK
