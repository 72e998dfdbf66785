"""What to do about a blocking finding: the query that lists every violating row, and the SQL that fixes it.

Remediations are data (pydantic models holding SQL text); they are shown, and run only by an explicit call
(``MigrationRun.remediate``). What runs is always the psycopg ``sql`` object built here, never the text:
a value a user supplies (a backfill value) travels as the parameter ``$1``, and an expression is parsed by
pglast into exactly one expression and re-rendered before it is composed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal

from psycopg import sql
from pydantic import BaseModel, ConfigDict, PrivateAttr

from . import (
    FK_VIOLATIONS_PRECHECK,
    INVALID_INDEX_PRECHECK,
    NON_CONCURRENT_INDEX_WARNING,
    NOT_NULL_PRECHECK,
    REHEARSAL_PRECHECK,
    UNIQUE_PRECHECK,
    Check,
    DuplicatesProbe,
    OrphansProbe,
    RowsProbe,
)
from ..report.contract import PreflightCheckResult, TargetRef
from ..plan import AddUnique, CreateIndex, MigrationPlan, Step, display_name, drop_index_concurrently

RemediationKind = Literal[
    "open_violations", "backfill", "dedupe", "delete_orphans", "null_orphans", "insert_parents",
    "use_concurrently", "drop_invalid_index", "preflight_again", "edit_plan",
]


@dataclass(frozen=True)
class RowChange:
    """What a remediation does to rows, as parts the run composes: delete (``sets`` None) or update the rows of
    ``relation`` (named ``alias``) where ``where`` holds. The run keeps those rows in the same statement
    (``DELETE ... RETURNING`` inside a data-modifying WITH), previews them, and puts them back. A dedupe's WHERE
    depends on which row of each group survives: ``where`` then takes the window's ORDER BY."""

    schema: str | None
    table: str
    relation: sql.Composable
    alias: str
    where: sql.Composable | Callable[[sql.Composable], sql.Composable]
    sets: sql.Composable | Callable[[sql.Composable], sql.Composable] | None = None
    columns: tuple[str, ...] = ()  # the columns an update sets
    partition: tuple[sql.Composable, sql.Composable] | None = None  # a dedupe's group keys and WHERE (over erd_g)

    def condition(self, order: sql.Composable | None = None) -> sql.Composable:
        if callable(self.where):
            return self.where(order if order is not None else first_stored("erd_g"))
        return self.where

    def assignments(self, value: sql.Composable | None = None) -> sql.Composable:
        assert self.sets is not None
        if callable(self.sets):
            return self.sets(value if value is not None else sql.SQL("$1"))
        return self.sets

    def statement(self, value: sql.Composable | None = None, order: sql.Composable | None = None) -> sql.Composable:
        """The remediation as it reads, without keeping anything."""
        if self.sets is None:
            return sql.SQL("DELETE FROM {} AS {} WHERE {}").format(self.relation, sql.Identifier(self.alias),
                                                                   self.condition(order))
        return sql.SQL("UPDATE {} AS {} SET {} WHERE {}").format(
            self.relation, sql.Identifier(self.alias), self.assignments(value), self.condition(order))


def first_stored(alias: str) -> sql.Composable:
    """A dedupe's default survivor: the first row of each group as stored (lowest ctid)."""
    return sql.SQL("{}.tableoid, {}.ctid").format(sql.Identifier(alias), sql.Identifier(alias))


class Remediation(BaseModel):
    """One way out of a blocking finding (or an unconfirmed large-table index). ``sql`` is what would run;
    ``runnable`` remediations run only through ``MigrationRun.remediate(...)``; ``needs_value`` ones ask
    for a value, passed as a query parameter."""

    model_config = ConfigDict(frozen=True)

    kind: RemediationKind
    finding: int | None = None  # index in the report's results
    check_id: str
    title: str
    sql: str | None = None
    runnable: bool = False
    needs_value: bool = False
    transactional: bool = True
    target: TargetRef | None = None

    # The statement as psycopg sql objects; for a backfill, a function of the value's SQL (``$1`` or an
    # expression). Never serialised: a remediation read back from JSON runs only through the run's own copy.
    _statement: sql.Composable | None = PrivateAttr(default=None)
    _backfill: Any = PrivateAttr(default=None)
    _change: RowChange | None = PrivateAttr(default=None)

    @property
    def change(self) -> RowChange | None:
        """What it does to rows (deletes or updates), for the run to keep, preview and restore; None: it changes
        no row (an index dropped) or only adds rows."""
        return self._change

    def statement(self, value: sql.Composable | None = None) -> sql.Composable:
        """What runs: the composed statement (a backfill's with ``value``, by default the parameter ``$1``)."""
        if self._change is not None:
            return self._change.statement(value)
        if self._backfill is not None:
            return self._backfill(value if value is not None else sql.SQL("$1"))
        if self._statement is None:
            raise ValueError(f"remediation {self.kind!r} has no statement to run")
        return self._statement


def _remediation(statement: sql.Composable | None = None, backfill: Any = None, change: RowChange | None = None,
                 **fields: Any) -> Remediation:
    shown = change.statement() if change is not None else backfill(sql.SQL("$1")) if backfill is not None \
        else statement
    remediation = Remediation(**fields, sql=shown.as_string() if shown is not None else None)
    remediation._statement = statement
    remediation._backfill = backfill
    remediation._change = change
    return remediation


def _table_of(check: Check) -> sql.Composable | None:
    probe = check.probe
    source = getattr(probe, "source", None) or getattr(probe, "child", None)
    if source is None or source.derived:
        return None
    return source.relation


def violations_query(check: Check) -> sql.Composable | None:
    """Every violating row of a data check (duplicates: every duplicate group with its count), no limit."""
    probe = check.probe
    if isinstance(probe, (RowsProbe, DuplicatesProbe, OrphansProbe)):
        return probe.violations()
    return None  # a failing conversion raises; preflight counts those rows one by one (CastProbe)


def order_for(check: Check) -> sql.Composable:
    """A stable order for paging violations."""
    probe = check.probe
    if isinstance(probe, DuplicatesProbe):
        keys = sql.SQL(", ").join(sql.Identifier(c) for c in probe.columns)
        return sql.SQL(" ORDER BY count(*) DESC, {}").format(keys)
    source = getattr(probe, "source", None) or getattr(probe, "child", None)
    if isinstance(probe, OrphansProbe):
        return sql.SQL(" ORDER BY c.ctid")
    if source is not None and not source.derived:
        return sql.SQL(" ORDER BY {}.ctid").format(sql.Identifier(source.alias))
    return sql.SQL("")


def remediations_for(finding: PreflightCheckResult, index: int, check: Check | None,
                     plan: MigrationPlan) -> list[Remediation]:
    """The remediations of one finding. ``check`` is the check that produced it, re-derived from the plan."""
    out: list[Remediation] = []
    common: dict[str, Any] = {"finding": index, "check_id": finding.check_id, "target": finding.target_ref}
    if finding.check_id == NON_CONCURRENT_INDEX_WARNING:
        step = plan.steps[check.step - 1] if check else None
        alternative = concurrent_alternative(step) if step is not None else None
        out.append(Remediation(
            kind="use_concurrently", title="Build the index CONCURRENTLY instead (reads and writes go on)",
            sql=alternative, **common))
        return out
    if finding.severity != "blocking":
        return out
    if finding.check_id == INVALID_INDEX_PRECHECK and finding.target_ref and finding.target_ref.name:
        ref = finding.target_ref
        out.append(_remediation(
            kind="drop_invalid_index", title=f"Drop the INVALID index {display_name(ref.schema_, ref.name)}",
            statement=drop_index_concurrently(ref.schema_, ref.name), runnable=True, transactional=False, **common))
        return out
    if finding.check_id == REHEARSAL_PRECHECK:
        out.append(Remediation(kind="edit_plan", title="Change the step PostgreSQL refuses (its error says why), then "
                               "run the preflight again", **common))
        return out
    if check is None or (finding.stats or {}).get("timedOut"):
        out.append(Remediation(kind="preflight_again", title="Run the preflight again (a larger check_timeout, "
                               "or when the table is quieter)", **common))
        return out
    query = violations_query(check)
    if query is not None:
        out.append(Remediation(kind="open_violations", title="Open every violating row (paged DataFrame)",
                               sql=query.as_string(), **common))
    probe = check.probe
    table = _table_of(check)
    target = finding.target_ref
    if finding.check_id == NOT_NULL_PRECHECK and isinstance(probe, RowsProbe) and table is not None and target \
            and target.columns and len(target.columns) == 1:
        column = target.columns[0]
        change = RowChange(
            schema=target.schema_, table=target.table or "", relation=table, alias="c", columns=(column,),
            where=sql.SQL("{} IS NOT DISTINCT FROM NULL").format(sql.Identifier("c", column)),
            sets=lambda value: sql.SQL("{} = {}").format(sql.Identifier(column), value))
        out.append(_remediation(
            kind="backfill", title=f"Backfill the NULLs of {display_name(column)} with a value you choose",
            change=change, runnable=True, needs_value=True, **common))
    if finding.check_id == UNIQUE_PRECHECK and isinstance(probe, DuplicatesProbe) and table is not None:
        out.append(_remediation(
            kind="dedupe", title="Delete the duplicates, keeping one row of each group (the first stored, or by a "
            "rule you choose)", change=dedupe_change(table, probe, target), runnable=True, **common))
    if finding.check_id == FK_VIOLATIONS_PRECHECK and isinstance(probe, OrphansProbe) and not probe.child.derived \
            and not probe.parent.derived:
        child = probe.child.relation
        cond = probe.condition()
        assert target is not None
        orphans = RowChange(schema=target.schema_, table=target.table or "", relation=child, alias="c", where=cond)
        out.append(_remediation(kind="delete_orphans", title="Delete the orphan rows", runnable=True,
                                change=orphans, **common))
        sets = sql.SQL(", ").join(sql.SQL("{} = NULL").format(sql.Identifier(c)) for c in probe.columns)
        out.append(_remediation(kind="null_orphans", title="Set the orphans' key to NULL", runnable=True,
                                change=RowChange(schema=target.schema_, table=target.table or "", relation=child,
                                                 alias="c", where=cond, sets=sets, columns=probe.columns),
                                **common))
        parent_cols = sql.SQL(", ").join(sql.Identifier(c) for c in probe.ref_columns)
        child_cols = sql.SQL(", ").join(sql.Identifier("c", c) for c in probe.columns)
        out.append(_remediation(
            kind="insert_parents",
            title="Insert the missing parents (only the key columns: other NOT NULL columns of the parent need "
                  "values, so edit before running)",
            statement=sql.SQL("INSERT INTO {} ({}) SELECT DISTINCT {} FROM {} AS c WHERE {}").format(
                probe.parent.relation, parent_cols, child_cols, child, cond),
            runnable=True, **common))
    if not out or all(r.kind == "open_violations" for r in out):
        out.append(Remediation(kind="edit_plan", title="Change the plan (or the data) and run the preflight again",
                               **common))
    return out


def dedupe_change(table: sql.Composable, probe: DuplicatesProbe, target: TargetRef | None) -> RowChange:
    """Delete every row of a duplicate group but one: the first by the window's ORDER BY (over the rows, named
    ``erd_g``). (tableoid, ctid) identifies a row without a primary key the table may not have, partitions too."""
    keys, grouped = probe.keys, probe.grouped()

    def where(order: sql.Composable) -> sql.Composable:
        return sql.SQL(
            "(d.tableoid, d.ctid) IN (SELECT erd_d.tableoid, erd_d.ctid FROM (SELECT erd_g.tableoid, erd_g.ctid, "
            "row_number() OVER (PARTITION BY {keys} ORDER BY {order}) AS erd_n FROM {table} AS erd_g{where}) AS erd_d "
            "WHERE erd_d.erd_n > 1)").format(keys=keys, order=order, table=table, where=grouped)

    return RowChange(schema=target.schema_ if target else None, table=(target.table if target else None) or "",
                     relation=table, alias="d", where=lambda order: where(order), partition=(keys, grouped))


def concurrent_alternative(step: Step) -> str | None:
    """The SQL that builds the same index without blocking writes."""
    if isinstance(step, CreateIndex):
        return step.model_copy(update={"concurrently": True}).sql() + ";"
    if isinstance(step, AddUnique):
        index = (step.name or f"{step.table}_{'_'.join(step.columns)}_key")[:63]
        build = CreateIndex(schema=step.schema_, table=step.table, columns=step.columns, name=index, unique=True,
                            concurrently=True, nulls_not_distinct=step.nulls_not_distinct)
        what = "PRIMARY KEY" if step.primary_key else "UNIQUE"
        attach = sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {} USING INDEX {}").format(
            step.relation, sql.Identifier(index), sql.SQL(what), sql.Identifier(index))
        return build.sql() + ";\n" + attach.as_string() + ";"
    return None
