"""The checks' data: ids, options, probes, a check, the lock each step kind takes, and verdicts."""

from __future__ import annotations

import string

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from psycopg import sql
from pydantic import BaseModel, ConfigDict, Field

from ..report.contract import (  # noqa: F401 (the check ids are re-exported: checks is their home for callers)
    CAST_PRECHECK,
    CHECK_CONSTRAINT_PRECHECK,
    DEFAULT_SAMPLE_CAP,
    DESTRUCTIVE_CHANGE_WARNING,
    EXCLUSION_PRECHECK,
    FK_VIOLATIONS_PRECHECK,
    INVALID_INDEX_PRECHECK,
    LARGE_TABLE_WARNING,
    NON_CONCURRENT_INDEX_WARNING,
    NOT_NULL_PRECHECK,
    OBJECT_PRECHECK,
    REHEARSAL_PRECHECK,
    REHEARSAL_UNAVAILABLE_WARNING,
    UNIQUE_PRECHECK,
    UNMODELLED_SQL_WARNING,
    Outcome,
    TargetRef,
)
from ..plan import (
    Step,
)



class PreflightOptions(BaseModel):
    """The caps and thresholds of a preflight. Every field can also be passed to ``run_preflight``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sample_cap: int = Field(default=DEFAULT_SAMPLE_CAP, ge=0, le=10_000, description="sample rows kept per finding")
    scan_chunk_rows: int = Field(default=2_000_000, ge=1_000, description="a table over this many rows (by the "
                                 "catalog's estimate) is scanned in block ranges of about this many rows, and a "
                                 "partitioned table partition by partition: progress, an early answer, cancel")
    scan_workers: int | None = Field(default=None, ge=1, le=64, description="connections that scan block ranges "
                                     "and partitions at once; None: as many as the server gives one parallel query "
                                     "(max_parallel_workers_per_gather + 1, within max_parallel_workers, at most 8)")
    counts: Literal["exact", "early"] = Field(default="exact", description="'exact': a blocking check counts every "
                                              "violating row; 'early': a chunked scan stops at the first chunk with "
                                              "a violation and the report says how many rows it counted "
                                              "(stats.countedRows)")
    check_timeout: float = Field(default=60.0, gt=0, description="seconds one check may run before it blocks")
    all_or_nothing: bool = Field(default=False, description="judge the plan as applied in one phase A transaction "
                                 "(ApplyOptions.all_or_nothing), not migration by migration")
    online: bool = Field(default=True, description="judge the plan as apply runs it by default: a step that would "
                         "scan a large table under a write-blocking lock in its online form (phases.online_steps), "
                         "proven equivalent in the rehearsal")
    rehearse: bool = Field(default=True, description="run the plan first on an empty copy of the schema in the "
                           "embedded PostgreSQL, so PostgreSQL itself says which statement it refuses")
    rehearse_data: bool = Field(default=False, description="where a step cannot be verified read-only, run the "
                                "plan on a copy of the rows of the tables it reads, when each is under "
                                "rehearse_data_rows: PostgreSQL's own verdict instead of an acknowledgement. Off by "
                                "default, because it copies rows out of the database (into the embedded PostgreSQL, "
                                "dropped afterwards)")
    rehearse_data_rows: int = Field(default=100_000, ge=0, description="the most rows a table may hold (by the "
                                    "catalog's estimate) for rehearse_data to copy it")
    rehearse_on_timeout: float = Field(default=1800.0, gt=0, description="seconds one statement may run on the "
                                       "rehearse_on copy (a statement that runs longer there leaves its step for "
                                       "a person)")
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
    # (schema, name) when the rows are exactly those of one table (with its partitions or children, no layer):
    # a long scan of it can then be split into block ranges and partitions
    table: tuple[str, str] | None = None

    def from_item(self) -> sql.Composed:
        return sql.SQL("{} AS {}").format(self.relation, sql.Identifier(self.alias))


@dataclass(frozen=True)
class Verdict:
    """A result known without reading data: from the catalog, or from what the plan does."""

    outcome: Outcome
    message: str
    stats: dict[str, int | float] = field(default_factory=dict)
    acknowledge: bool = False  # a warning about what cannot be verified: the gate needs a person to acknowledge it


def null_datum(value: sql.Composable) -> sql.Composed:
    """``value`` is NULL as NOT NULL, UNIQUE and foreign keys see it: the datum itself. (``IS NULL`` is a row test
    too: ROW(NULL, NULL) IS NULL is true, yet it is a value a NOT NULL column takes and a unique index compares.)"""
    return sql.SQL("{} IS NOT DISTINCT FROM NULL").format(value)


def non_null_datum(value: sql.Composable) -> sql.Composed:
    return sql.SQL("{} IS DISTINCT FROM NULL").format(value)


def all_not_null(columns: tuple[str, ...], qualifier: str | None = None) -> sql.Composed:
    return sql.SQL(" AND ").join(
        non_null_datum(sql.Identifier(*([qualifier] if qualifier else []), c)) for c in columns
    )


# Each probe's violation is written once, here: the executor counts and samples with it, the violation pages and
# the remediations select and delete with it.


@dataclass(frozen=True)
class RowsProbe:
    """Violations are the rows of ``source`` for which ``predicate`` is true. Shares scans by source key."""

    source: Source
    predicate: sql.Composable

    def violations(self) -> sql.Composed:
        return sql.SQL("SELECT * FROM {} WHERE {}").format(self.source.from_item(), self.predicate)


# A btree index row holds at most 2,704 bytes (after compression; SQLSTATE 54000 past it). A key whose stored size
# (pg_column_size, compressed as the table holds it) is over this is named for a person: how the index compresses a
# key is close to, not exactly, how the table did.
WIDE_KEY = 2000


@dataclass(frozen=True)
class DuplicatesProbe:
    """Violations are the rows in key groups of more than one row, among rows with ``where`` true; a key with a
    NULL is in no group unless NULLS NOT DISTINCT."""

    source: Source
    columns: tuple[str, ...]
    nulls_not_distinct: bool
    where: sql.Composable | None = None
    # a btree key near the index row limit (a row predicate): without duplicates, the step is left for a person
    wide: sql.Composable | None = None

    @property
    def keys(self) -> sql.Composed:
        return sql.SQL(", ").join(sql.Identifier(c) for c in self.columns)

    def grouped(self) -> sql.Composable:
        """The rows that count: WHERE ``where`` and, unless NULLS NOT DISTINCT, no NULL in the key."""
        conditions = [c for c in [self.where, None if self.nulls_not_distinct else all_not_null(self.columns)]
                      if c is not None]
        return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("")

    def distinct_hashes(self) -> sql.Composed:
        """The number of distinct 8-byte hashes of the keys that count. Equal keys hash equal (the type's hash
        function agrees with its equality, collation included, or PostgreSQL raises 42883), so as many hashes as
        keys proves the keys distinct; fewer means a duplicate or a collision, for the exact grouping to tell."""
        return self._distinct(sql.SQL("hash_record_extended(ROW({}), 0)").format(self.keys))

    def distinct_text_hashes(self) -> sql.Composed:
        """``distinct_hashes`` for one key of type text or varchar: hashtextextended, under the column's collation
        (as the record hash would call it), without a record formed per row. Only where a NULL key does not count
        (hashtextextended(NULL) is NULL, which count(DISTINCT) would not count; a record of NULLs hashes to a
        value)."""
        assert len(self.columns) == 1 and not self.nulls_not_distinct
        return self._distinct(sql.SQL("hashtextextended({}, 0)").format(self.keys))

    def key_types(self) -> sql.Composed:
        """No rows: the result's column types are the keys'."""
        return sql.SQL("SELECT {keys} FROM {src} LIMIT 0").format(keys=self.keys, src=self.source.from_item())

    def _distinct(self, hashed: sql.Composable) -> sql.Composed:
        # count(DISTINCT) of the hashes in order: PostgreSQL 16+ counts the sorted stream as it arrives (workers sort,
        # the leader merges), without a Unique node; 15 sorts it again, which is cheap on sorted input. 0.85x the
        # time of SELECT DISTINCT at 1M keys on both. The hash is never NULL (see distinct_text_hashes).
        return sql.SQL("SELECT count(DISTINCT h) FROM (SELECT {hashed} AS h FROM {src}{where} ORDER BY 1) AS d").format(
            hashed=hashed, src=self.source.from_item(), where=self.grouped())

    def keyed_and_wide(self) -> tuple[sql.Composable, sql.Composable]:
        """Row predicates: the key counts (no NULL in it, unless NULLS NOT DISTINCT), and it is near btree's row
        limit."""
        keyed = sql.SQL("true") if self.nulls_not_distinct else all_not_null(self.columns)
        return keyed, self.wide if self.wide is not None else sql.SQL("false")

    def counted(self) -> sql.Composed:
        """All rows (with ``where``), the rows whose key counts, and the keys near btree's row limit."""
        keyed, wide = self.keyed_and_wide()
        return sql.SQL("SELECT count(*), count(*) FILTER (WHERE {keyed}), count(*) FILTER (WHERE {wide}) "
                       "FROM {src}{where}").format(
            keyed=keyed, wide=wide, src=self.source.from_item(),
            where=sql.SQL(" WHERE {}").format(self.where) if self.where is not None else sql.SQL(""))

    def violations(self, count_name: str = "duplicate_rows") -> sql.Composed:
        """Every duplicate group: its key and its number of rows."""
        return sql.SQL("SELECT {keys}, count(*) AS {n} FROM {src}{where} GROUP BY {keys} HAVING count(*) > 1").format(
            keys=self.keys, n=sql.Identifier(count_name), src=self.source.from_item(), where=self.grouped())


@dataclass(frozen=True)
class OrphansProbe:
    """Violations are the child rows whose full key has no parent row (MATCH SIMPLE: a key with a NULL is
    not checked; MATCH FULL: a key partly NULL violates)."""

    child: Source
    columns: tuple[str, ...]
    parent: Source
    ref_columns: tuple[str, ...]
    match_full: bool

    def matches(self, alias: str = "c") -> sql.Composed:
        """The join of a child row (``alias``) with its parent row (``p``)."""
        return sql.SQL(" AND ").join(sql.SQL("{} = {}").format(sql.Identifier("p", r), sql.Identifier(alias, c))
                                     for c, r in zip(self.columns, self.ref_columns))

    def partial(self, alias: str = "c") -> sql.Composable:
        """MATCH FULL only: a key neither all NULL nor all set."""
        if not self.match_full:
            return sql.SQL("false")
        all_null = sql.SQL(" AND ").join(null_datum(sql.Identifier(alias, c)) for c in self.columns)
        return sql.SQL("(NOT ({}) AND NOT ({}))").format(all_not_null(self.columns, alias), all_null)

    def condition(self, alias: str = "c") -> sql.Composed:
        """A child row (``alias``) violates."""
        missing = sql.SQL("({} AND NOT EXISTS (SELECT 1 FROM {} AS p WHERE {}))").format(
            all_not_null(self.columns, alias), self.parent.relation, self.matches(alias))
        return sql.SQL("({} OR {})").format(missing, self.partial(alias)) if self.match_full else missing

    def violations(self) -> sql.Composed:
        return sql.SQL("SELECT c.* FROM {} AS c WHERE {}").format(self.child.relation, self.condition())


@dataclass(frozen=True)
class CastProbe:
    """Rows whose new value cannot be produced: the USING expression or the cast fails, or a NOT NULL
    column would get NULL. ``too_long`` is where assignment refuses a value an explicit cast would cut (varchar(n),
    char(n), bit(n), varbit(n), arrays of them: ``expressions.too_long``)."""

    source: Source
    column: str
    expression: sql.Composable
    type: str
    not_null: bool
    too_long: sql.Composable | None = None
    # the text whose conversion is all the step does (a string column, no USING or just a cast of it): on
    # PostgreSQL 16+ pg_input_is_valid() then counts the failing rows exactly, without raising
    input_text: sql.Composable | None = None

    def converted(self) -> sql.Composed:
        return sql.SQL("CAST(({}) AS {})").format(self.expression, sql.SQL(self.type))

    def violation(self) -> sql.Composable:
        """A row whose value converts but breaks the column: NULL into NOT NULL, too long for varchar(n)."""
        parts: list[sql.Composable] = []
        if self.not_null:
            parts.append(null_datum(self.converted()))
        if self.too_long is not None:
            parts.append(self.too_long)
        return sql.SQL("coalesce(({}), false)").format(sql.SQL(" OR ").join(parts)) if parts else sql.SQL("false")


Probe = Verdict | RowsProbe | DuplicatesProbe | OrphansProbe | CastProbe


class _MessageFormatter(string.Formatter):
    """A check's message from its stats: numbers with thousands separators, and ``{n:row|rows}`` for "1 row",
    "2 rows" (``{n:~is|are}``: the word alone, agreeing with n). A count given as text ("at least 5") takes the
    plural."""

    def format_field(self, value: Any, format_spec: str) -> str:
        if "|" in format_spec:
            bare = format_spec.startswith("~")
            one, many = format_spec.removeprefix("~").split("|", 1)
            word = one if isinstance(value, int) and not isinstance(value, bool) and value == 1 else many
            if bare:
                return word
            return f"{value:,} {word}" if isinstance(value, int) else f"{value} {word}"
        if isinstance(value, int) and not isinstance(value, bool) and not format_spec:
            return f"{value:,}"
        return super().format_field(value, format_spec)


_MESSAGES = _MessageFormatter()


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
    acknowledge: bool = False  # a "warning" failure is about what cannot be verified: a person acknowledges the step
    enum_values_added: bool = False  # an earlier step creates an enum or adds values the database lacks yet

    def message(self, text: str, stats: dict[str, Any]) -> str:
        body = _MESSAGES.vformat(text, (), stats)
        return " ".join([body, *self.notes])

    def early_message(self, counted: dict[str, int]) -> str:
        """A blocking answer before a long scan ends: violating rows so far, in how many rows read."""
        shown = {"violations": f"at least {counted['violations']:,}",
                 "totalRows": f"the first {counted['countedRows']:,} (of about {counted['totalRows']:,})"}
        return self.message(self.fail, shown)

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


def lock_of(step: Step) -> tuple[str, str]:
    """The lock a step takes and what it does meanwhile (PostgreSQL's documented lock levels): each step kind
    declares it next to its SQL (``Step.LOCK``, ``Step.lock()``)."""
    return step.lock()


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
             target: TargetRef | None = None, acknowledge: bool = False, **stats: int | float) -> Check:
    return Check(
        check_id=check_id,
        step=index,
        step_summary=step.summary(),
        target=target or step.target(),
        probe=Verdict(outcome=outcome, message=message, stats=dict(stats), acknowledge=acknowledge),
        failure="warning" if outcome == "warning" else "blocking",
    )


# ---------------------------------------------------------------------------------------------------------
# Each step kind's data checks, registered once (in ``data``): ``checks`` is None when the kind reads no
# rows, on purpose. A kind missing here fails in checks_for, and in the registry test.

DataChecks = Callable[..., "list[Check]"]  # (index, step, state, parent, context) -> checks


@dataclass(frozen=True)
class DataCheckRule:
    checks: DataChecks | None
    reads_rows: Callable[[Any], bool]  # whether the checks read the rows of the step's table (for this step)


DATA_CHECKS: dict[str, DataCheckRule] = {}


def data_checks(*kinds: str, reads_rows: Callable[[Any], bool] = lambda step: True
                ) -> Callable[[DataChecks], DataChecks]:
    """Register the data checks of step ``kinds``; a kind registered twice fails at import."""

    def register(rule: DataChecks) -> DataChecks:
        for kind in kinds:
            if kind in DATA_CHECKS:
                raise RuntimeError(f"two data check rules for step kind {kind!r}")
            DATA_CHECKS[kind] = DataCheckRule(rule, reads_rows)
        return rule

    return register


def no_data_checks(*kinds: str) -> None:
    """Say, on purpose, that step ``kinds`` read no rows."""
    for kind in kinds:
        if kind in DATA_CHECKS:
            raise RuntimeError(f"two data check rules for step kind {kind!r}")
        DATA_CHECKS[kind] = DataCheckRule(None, lambda step: False)


def evaluated_sql(probe: Any) -> list[str]:
    """The SQL a data probe evaluates on real rows, in parts: the plan's expressions of each derived layer it
    reads, then its own (a predicate, a USING). Parts repeat from check to check and are screened once."""
    sources = [getattr(probe, n, None) for n in ("source", "child", "parent")]
    parts = [e for source in sources if source is not None for e in source.expressions]
    own: sql.Composable | None = None
    if isinstance(probe, RowsProbe):
        own = probe.predicate
    elif isinstance(probe, DuplicatesProbe):
        own = probe.where
    elif isinstance(probe, CastProbe):
        own = probe.converted()
    if own is not None:
        parts.append(sql.SQL("SELECT {}").format(own).as_string())
    return parts


def unsafe_message(check: Check, calls: list[str]) -> str:
    return (f"cannot verify step {check.step} before apply: it evaluates {', '.join(calls)}, which PostgreSQL marks "
            "volatile: it may act on the database (take a lock, write through dblink, signal a backend), and READ "
            "ONLY does not stop all of that, so preflight does not run it. Replace the call with an immutable or "
            "stable one, or review the step and the function yourself and acknowledge the step.")
