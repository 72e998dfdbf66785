"""What to do about a blocking finding: the query that lists every violating row, and the SQL that fixes it.

Remediations are data (pydantic models holding SQL text); they are shown, and run only by an explicit call
(``MigrationRun.remediate``). What runs is always the psycopg ``sql`` object built here, never the text:
a value a user supplies (a backfill value) travels as the parameter ``$1``, and an expression is parsed by
pglast into exactly one expression and re-rendered before it is composed in.
"""

from __future__ import annotations

from typing import Any, Literal

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

    def statement(self, value: sql.Composable | None = None) -> sql.Composable:
        """What runs: the composed statement (a backfill's with ``value``, by default the parameter ``$1``)."""
        if self._backfill is not None:
            return self._backfill(value if value is not None else sql.SQL("$1"))
        if self._statement is None:
            raise ValueError(f"remediation {self.kind!r} has no statement to run")
        return self._statement


def _remediation(statement: sql.Composable | None = None, backfill: Any = None, **fields: Any) -> Remediation:
    shown = backfill(sql.SQL("$1")) if backfill is not None else statement
    remediation = Remediation(**fields, sql=shown.as_string() if shown is not None else None)
    remediation._statement = statement
    remediation._backfill = backfill
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
        column = sql.Identifier(target.columns[0])
        relation = table

        def backfill(value: sql.Composable) -> sql.Composable:
            return sql.SQL("UPDATE {} SET {} = {} WHERE {} IS NOT DISTINCT FROM NULL").format(
                relation, column, value, column)

        out.append(_remediation(
            kind="backfill", title=f"Backfill the NULLs of {display_name(target.columns[0])} with a value you choose",
            backfill=backfill, runnable=True, needs_value=True, **common))
    if finding.check_id == UNIQUE_PRECHECK and isinstance(probe, DuplicatesProbe) and table is not None:
        out.append(_remediation(
            kind="dedupe", title="Delete the duplicates, keeping the first row (lowest ctid) of each group",
            statement=dedupe_sql(table, probe), runnable=True, **common))
    if finding.check_id == FK_VIOLATIONS_PRECHECK and isinstance(probe, OrphansProbe) and not probe.child.derived \
            and not probe.parent.derived:
        child = probe.child.relation
        cond = probe.condition()
        out.append(_remediation(kind="delete_orphans", title="Delete the orphan rows", runnable=True,
                                statement=sql.SQL("DELETE FROM {} AS c WHERE {}").format(child, cond), **common))
        sets = sql.SQL(", ").join(sql.SQL("{} = NULL").format(sql.Identifier(c)) for c in probe.columns)
        out.append(_remediation(kind="null_orphans", title="Set the orphans' key to NULL", runnable=True,
                                statement=sql.SQL("UPDATE {} AS c SET {} WHERE {}").format(child, sets, cond),
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


def dedupe_sql(table: sql.Composable, probe: DuplicatesProbe) -> sql.Composed:
    keys, where = probe.keys, probe.grouped()
    # ctid identifies a row without relying on a primary key the table may not have.
    return sql.SQL(
        "DELETE FROM {table} WHERE ctid IN (SELECT ctid FROM (SELECT ctid, row_number() OVER "
        "(PARTITION BY {keys} ORDER BY ctid) AS n FROM {table}{where}) AS d WHERE d.n > 1)"
    ).format(table=table, keys=keys, where=where)


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
