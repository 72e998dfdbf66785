"""A partition's bound, checked on the rows: ``ALTER TABLE parent ATTACH PARTITION t FOR VALUES ...`` and
``CREATE TABLE t PARTITION OF parent FOR VALUES ...``.

PostgreSQL says what the bound means: the rehearsal leaves the partition attached in the shadow, and
``pg_get_partition_constraintdef`` gives the constraint each of its rows must satisfy (NULLs included, as the
bound allows them or not). On the target, read-only:

- ATTACH: every row of the table attached satisfies it (a row outside the bound fails the step), and the keys of
  each unique index of the parent are unique among those rows (PostgreSQL builds or attaches the index there);
- ATTACH or CREATE ... PARTITION OF with a DEFAULT partition: no row of the default partition satisfies it (that
  row would belong to the new partition, and the step fails).

Hash bounds (the constraint names the parent by the shadow's OID), a parent with foreign keys, and a table that
is partitioned itself are left for a person.
"""

from __future__ import annotations

from pglast import ast, enums
from psycopg import sql

from ..report.contract import TargetRef
from ..errors import PlanError
from ..plan import RawSQL, display_name
from ..sqlparse import normalize_expression
from .model import CHECK_CONSTRAINT_PRECHECK, UNIQUE_PRECHECK, Check, DuplicatesProbe, RowsProbe
from .state import PlanContext


def bound_statement(step: RawSQL) -> tuple[ast.RangeVar, ast.RangeVar, bool] | None:
    """(parent, partition, whether the step creates it) for an ATTACH PARTITION or a CREATE TABLE ... PARTITION
    OF of one statement; None for anything else."""
    if len(step.parsed) != 1:
        return None
    stmt = step.parsed[0]
    if isinstance(stmt, ast.AlterTableStmt) and len(stmt.cmds or ()) == 1 \
            and stmt.cmds[0].subtype == enums.AlterTableType.AT_AttachPartition:
        return stmt.relation, stmt.cmds[0].def_.name, False
    if isinstance(stmt, ast.CreateStmt) and stmt.partbound is not None and stmt.inhRelations:
        return stmt.inhRelations[0], stmt.relation, True
    return None


def partition_checks(index: int, step: RawSQL, context: PlanContext) -> list[Check] | None:
    """The checks of a partition's bound on the rows; None when preflight cannot read them (then the step is left
    for a person, as any unmodelled statement that reads rows)."""
    found = bound_statement(step)
    after = context.rehearsal.after.get(index) if context.rehearsal else None
    if found is None or after is None:
        return None
    parent_rv, child_rv, creates = found
    snapshot = after.resolve(child_rv.schemaname, child_rv.relname)
    parent = context.state(parent_rv.schemaname, parent_rv.relname)
    if snapshot is None or not snapshot.partition_constraint or parent is None or parent.info is None \
            or parent.unknown or "satisfies_hash_partition" in snapshot.partition_constraint:
        return None
    try:  # PostgreSQL's own text, parsed into one expression and rendered again like every fragment that is run
        bound = sql.SQL(normalize_expression(snapshot.partition_constraint))
    except PlanError:
        return None
    shown = display_name(snapshot.schema, snapshot.name)
    checks: list[Check] = []
    if not creates:
        child = context.state(child_rv.schemaname, child_rv.relname)
        if child is None or child.info is None or child.unknown or child.info.kind != "r" \
                or any(c.type == "f" for c in parent.info.constraints.values()):
            return None
        checks.append(Check(
            check_id=CHECK_CONSTRAINT_PRECHECK, step=index, step_summary=step.summary(),
            target=TargetRef(kind="table", schema=child.schema, table=child.name),
            probe=RowsProbe(source=child.source(own_rows=True), predicate=sql.SQL("({}) IS FALSE").format(bound)),
            fail=f"{{violations}} of {{totalRows}} rows of {child.label} are outside the partition's bound "
            f"({snapshot.partition_constraint}); attaching it would fail. Move or delete those rows first.",
            ok=f"every row of {child.label} is within the partition's bound ({{totalRows}} rows).",
            notes=child.history_notes()))
        for ix in parent.info.indexes.values():
            if ix.unique and ix.valid and not ix.partial and not ix.expressions:
                cols = ", ".join(display_name(c) for c in ix.columns)
                checks.append(Check(
                    check_id=UNIQUE_PRECHECK, step=index, step_summary=step.summary(),
                    target=TargetRef(kind="column", schema=child.schema, table=child.name, columns=ix.columns),
                    probe=DuplicatesProbe(source=child.source(own_rows=True), columns=ix.columns,
                                          nulls_not_distinct=ix.nulls_not_distinct),
                    fail=f"{{duplicateGroups:value|values}} of ({cols}) {{duplicateGroups:~occurs|occur}} more than once in {child.label}, in "
                    f"{{violations:row|rows}}; attaching it under {parent.label}'s unique index "
                    f"{display_name(ix.name)} would fail. Dedupe those rows first.",
                    ok=f"({cols}) is unique in {child.label} ({{totalRows}} rows), as {parent.label}'s unique index "
                    f"{display_name(ix.name)} needs.", notes=child.history_notes()))
    default = context.catalog.default_partition(parent.info.oid)
    if default is not None and (default[0], default[1]) != (snapshot.schema, snapshot.name):
        holder = context.state(*default)
        if holder is None or holder.info is None or holder.unknown:
            return None
        checks.append(Check(
            check_id=CHECK_CONSTRAINT_PRECHECK, step=index, step_summary=step.summary(),
            target=TargetRef(kind="table", schema=holder.schema, table=holder.name),
            probe=RowsProbe(source=holder.source(), predicate=sql.SQL("({}) IS TRUE").format(bound)),
            fail=f"{{violations}} of {{totalRows}} rows of the default partition {holder.label} belong in the new "
            f"partition {shown} ({snapshot.partition_constraint}); the step would fail. Move them out of the default "
            "partition first.",
            ok=f"no row of the default partition {holder.label} belongs in {shown} ({{totalRows}} rows).",
            notes=holder.history_notes()))
    return checks
