"""Checks on structure, from the catalog: missing objects, INVALID indexes, large tables, destructive steps."""

from __future__ import annotations

from ..report.contract import TargetRef
from ..plan import (
    AddCheck,
    AddColumn,
    AddForeignKey,
    AddUnique,
    AddUniqueUsingIndex,
    AlterColumnType,
    CreateIndex,
    CreateTable,
    DropColumn,
    DropConstraint,
    DropIndex,
    DropNotNull,
    DropTable,
    SetNotNull,
    Step,
    TableStep,
    display_name,
    drop_index_concurrently,
    index_name,
)
from .model import (
    DESTRUCTIVE_CHANGE_WARNING,
    INVALID_INDEX_PRECHECK,
    LARGE_TABLE_WARNING,
    NON_CONCURRENT_INDEX_WARNING,
    Check,
    human_bytes,
    human_rows,
    lock_of,
    verdict,
)
from .state import PlanContext


def missing_objects(index: int, step: Step, ctx: PlanContext) -> Check | None:
    """The table or column a step needs is missing (or one it creates exists): a clear blocking result."""
    if not isinstance(step, TableStep):
        return None
    check_id = step.primary_check()
    if isinstance(step, CreateTable):
        if ctx.state(step.schema_, step.table) is not None and not step.if_not_exists:
            return verdict(check_id, index, step, "blocking",
                            f"table {display_name(step.schema_, step.table)} already exists; CREATE TABLE would "
                            "fail. Drop the step, use IF NOT EXISTS, or pick another name.")
        return None
    state = ctx.state(step.schema_, step.table)
    shown = display_name(step.schema_, step.table)
    if state is None or state.dropped_step is not None:
        if isinstance(step, (DropTable,)) and step.if_exists:
            return None
        why = f"is dropped by step {state.dropped_step}" if state else "does not exist"
        return verdict(check_id, index, step, "blocking",
                        f"table {shown} {why}; this step would fail. Check the table name and schema "
                        "(search_path) or the order of the steps.")
    needed: tuple[str, ...] = ()
    if isinstance(step, (SetNotNull, DropNotNull, AlterColumnType)) or (
        isinstance(step, DropColumn) and not step.if_exists
    ):
        needed = (step.column,)
    elif isinstance(step, (AddUnique, CreateIndex, AddForeignKey)):
        needed = step.columns
    missing = [c for c in needed if c not in state.columns]
    if missing:
        cols = ", ".join(display_name(c) for c in missing)
        return verdict(check_id, index, step, "blocking",
                        f"column {cols} does not exist in {state.label}; this step would fail. "
                        f"Its columns are: {', '.join(display_name(c) for c in state.columns) or '(none)'}.")
    if isinstance(step, AddColumn) and step.column in state.columns and not step.if_not_exists:
        return verdict(check_id, index, step, "blocking",
                        f"column {state.column_label(step.column)} already exists; ADD COLUMN would fail. "
                        "Use ADD COLUMN IF NOT EXISTS or another name.")
    name = getattr(step, "name", None)
    if isinstance(step, AddUniqueUsingIndex):
        name = step.constraint_name
    if isinstance(step, CreateIndex) and step.concurrently:
        name = index_name(step)  # apply names the index it builds concurrently explicitly
    if isinstance(step, AddUniqueUsingIndex) and step.primary_key and state.has_primary_key:
        return verdict(check_id, index, step, "blocking",
                        f"{state.label} already has a primary key and a table can have only one; the step would "
                        "fail. Drop the old primary key first, or add a UNIQUE constraint instead.")
    if isinstance(step, (AddUnique, AddForeignKey, AddCheck, AddUniqueUsingIndex)) and name and \
            name in state.constraint_names:
        return verdict(check_id, index, step, "blocking",
                        f"constraint {display_name(name)} already exists on {state.label}; the step would fail. "
                        "Pick another name or drop the old constraint first.")
    index_like = isinstance(step, AddUnique) or (isinstance(step, CreateIndex) and not step.if_not_exists)
    if index_like and name and ctx.relation_exists(state.schema, name):
        return verdict(check_id, index, step, "blocking",
                        f"a relation named {display_name(state.schema, name)} already exists, so the index "
                        f"{display_name(name)} cannot be created. Pick another name.")
    if isinstance(step, AddUnique) and step.primary_key and state.has_primary_key:
        return verdict(check_id, index, step, "blocking",
                        f"{state.label} already has a primary key and a table can have only one; the step would "
                        "fail. Add a UNIQUE constraint instead, or drop the old primary key first.")
    if isinstance(step, AddForeignKey):
        parent = ctx.state(step.ref_schema, step.ref_table)
        if parent is None or parent.dropped_step is not None:
            return verdict(check_id, index, step, "blocking",
                            f"referenced table {display_name(step.ref_schema, step.ref_table)} does not exist; "
                            "the foreign key cannot be added.")
        missing = [c for c in step.ref_columns if c not in parent.columns]
        if missing:
            return verdict(check_id, index, step, "blocking",
                            f"referenced column {', '.join(display_name(c) for c in missing)} does not exist "
                            f"in {parent.label}.")
        if frozenset(step.ref_columns) not in parent.unique_keys or len(set(step.ref_columns)) != len(
            step.ref_columns
        ):
            return verdict(check_id, index, step, "blocking",
                            f"{parent.label}({', '.join(display_name(c) for c in step.ref_columns)}) has no "
                            "primary key or unique constraint on exactly these columns, so PostgreSQL refuses "
                            "the foreign key. Add a UNIQUE constraint (or unique index) on them first.")
    return None


def created_index_name(step: Step) -> str | None:
    """The name of the index a step builds, when the step names it."""
    if isinstance(step, CreateIndex):
        return step.name
    if isinstance(step, AddUnique):
        return step.name
    return None


def invalid_index_checks(index: int, step: Step, ctx: PlanContext) -> list[Check]:
    """An INVALID index (left by a failed CREATE INDEX CONCURRENTLY) on a table the plan touches, or under a
    name the plan creates, must never pass for done: it is a blocker whose fix is a concurrent drop."""
    checks: list[Check] = []
    own = created_index_name(step)
    if own is not None and isinstance(step, TableStep):
        state = ctx.state(step.schema_, step.table)
        schema = state.schema if state else (step.schema_ or ctx.current_schema)
        fresh = (schema, own) in ctx.relations or (schema, own) in ctx.dropped_indexes
        found = None if fresh else ctx.catalog.index_by_name(schema, own)
        if found is not None and not found.valid:
            ctx.invalid_checked.add((found.table_schema, found.table))
            drop = drop_index_concurrently(schema, own)
            what = ("IF NOT EXISTS would silently skip the build, leaving an index PostgreSQL never uses"
                    if isinstance(step, CreateIndex) and step.if_not_exists
                    else "the step would fail with \"already exists\"")
            checks.append(verdict(
                INVALID_INDEX_PRECHECK, index, step, "blocking",
                f"index {display_name(schema, own)} exists but is INVALID (a CREATE INDEX CONCURRENTLY that "
                f"failed or was cancelled left it behind), and {what}. Drop it first: {drop.as_string()}",
                target=TargetRef(kind="index", schema=found.table_schema, table=found.table, name=own),
            ))
    tables = [] if isinstance(step, CreateTable) else [ctx.state(s, t) for s, t in step.tables()]
    for state in tables:
        if state is None or state.info is None or (state.schema, state.name) in ctx.invalid_checked:
            continue
        ctx.invalid_checked.add((state.schema, state.name))
        for ix in state.info.indexes.values():
            if ix.valid or (state.schema, ix.name) in ctx.dropped_indexes:
                continue
            drop = drop_index_concurrently(state.schema, ix.name)
            checks.append(verdict(
                INVALID_INDEX_PRECHECK, index, step, "blocking",
                f"index {display_name(state.schema, ix.name)} on {state.label} is INVALID: a CREATE INDEX "
                "CONCURRENTLY failed or was cancelled and left it behind. PostgreSQL does not use it for queries "
                "but still maintains it on every write, and a rebuild under the same name would be skipped. "
                f"Drop it first: {drop.as_string()}",
                target=TargetRef(kind="index", schema=state.schema, table=state.name, name=ix.name),
            ))
    return checks


def large_table_checks(index: int, step: Step, ctx: PlanContext) -> list[Check]:
    if not isinstance(step, TableStep) or isinstance(step, CreateTable):
        return []
    checks: list[Check] = []
    tables = [ctx.state(s, t) for s, t in step.tables()]
    lock, work = lock_of(step)
    online = index in ctx.online
    if online:
        lock, work = ("brief ACCESS EXCLUSIVE", "apply runs it in its online form: its scan or index build runs under "
                      "SHARE UPDATE EXCLUSIVE, so reads and writes go on")
    for state in tables:
        if state is None or state.info is None or not ctx.is_large(state):
            continue
        info = state.info
        estimate = "estimated from its size (never analyzed)" if info.rows_estimated_from_size else "estimated"
        stats = {"estimatedRows": info.estimated_rows, "totalBytes": info.total_bytes}
        checks.append(verdict(
            LARGE_TABLE_WARNING, index, step, "warning",
            f"{state.label} is large: ~{human_rows(info.estimated_rows)} rows ({estimate}), "
            f"{human_bytes(info.total_bytes)}. This step takes a {lock} lock; {work}. "
            "Schedule it off-peak, with a lock_timeout.",
            target=TargetRef(kind="table", schema=state.schema, table=state.name), **stats,
        ))
        if not online and (isinstance(step, CreateIndex) and not step.concurrently or isinstance(step, AddUnique)):
            alternative = (
                "build it with CREATE INDEX CONCURRENTLY instead"
                if isinstance(step, CreateIndex)
                else "build a unique index CONCURRENTLY first, then ADD CONSTRAINT … UNIQUE USING INDEX"
            )
            checks.append(verdict(
                NON_CONCURRENT_INDEX_WARNING, index, step, "warning",
                f"builds an index on large table {state.label} without CONCURRENTLY, blocking writes "
                f"({lock}) for the whole build. Apply will require an explicit confirmation naming "
                f"{state.label}; or {alternative}.",
                target=TargetRef(kind="table", schema=state.schema, table=state.name), **stats,
            ))
    return checks


def destructive_warning(index: int, step: Step, ctx: PlanContext) -> Check | None:
    if isinstance(step, DropTable):
        state = ctx.state(step.schema_, step.table)
        rows = state.info.estimated_rows if state and state.info else 0
        return verdict(DESTRUCTIVE_CHANGE_WARNING, index, step, "warning",
                        f"drops table {display_name(step.schema_, step.table)} (~{human_rows(rows)} rows) and its "
                        "data; it cannot be undone without a backup." + (" CASCADE also drops dependent objects."
                                                                          if step.cascade else ""),
                        estimatedRows=rows)
    if isinstance(step, DropColumn):
        state = ctx.state(step.schema_, step.table)
        rows = state.info.estimated_rows if state and state.info else 0
        return verdict(DESTRUCTIVE_CHANGE_WARNING, index, step, "warning",
                        f"drops column {display_name(step.schema_, step.table, step.column)} and its values in "
                        f"~{human_rows(rows)} rows; code that still reads it will fail.", estimatedRows=rows)
    if isinstance(step, DropConstraint):
        return verdict(DESTRUCTIVE_CHANGE_WARNING, index, step, "warning",
                        f"drops constraint {display_name(step.name)} on {display_name(step.schema_, step.table)}: "
                        "the data is no longer guaranteed to satisfy it.")
    if isinstance(step, DropIndex):
        how = "" if step.concurrently else " It takes an ACCESS EXCLUSIVE lock on the table; DROP INDEX " \
            "CONCURRENTLY does not block traffic."
        return verdict(DESTRUCTIVE_CHANGE_WARNING, index, step, "warning",
                        f"drops index {display_name(step.schema_, step.name)}: queries that use it slow down, and a "
                        f"unique index stops enforcing uniqueness.{how}")
    return None
