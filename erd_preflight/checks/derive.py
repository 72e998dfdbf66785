"""The checks of a plan, step by step, in a fixed order."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from psycopg import sql

from ..catalog import Catalog
from ..plan import (
    AddCheck,
    AddColumn,
    AddForeignKey,
    AddUnique,
    AddUniqueUsingIndex,
    AlterColumnType,
    CreateIndex,
    CreateTable,
    MigrationPlan,
    RawSQL,
    SetNotNull,
    Step,
    TableStep,
    ValidateConstraint,
    display_name,
)
from ..shadow_catalog import Rehearsal
from .data import (
    cast_check,
    check_constraint_check,
    fk_check,
    not_null_check,
    unique_check,
    using_index_checks,
    validate_checks,
)
from .expressions import cast_to, is_constant, is_null_constant
from .model import (
    NOT_NULL_PRECHECK,
    UNMODELLED_SQL_WARNING,
    Check,
    PreflightOptions,
    RowsProbe,
    Verdict,
    primary_check_id,
    verdict,
)
from .state import PlanContext, TableState, added_value, calls_nextval
from .structure import (
    created_index_name,
    destructive_warning,
    invalid_index_checks,
    large_table_checks,
    missing_objects,
)


def reads_rows(step: Step) -> bool:
    """Whether the step's check reads the rows of its table (so needs to know them)."""
    if isinstance(step, (AddForeignKey, AddCheck)):
        return not step.not_valid
    if isinstance(step, CreateIndex):
        return step.unique
    if isinstance(step, AddColumn):
        return step.not_null
    return isinstance(step, (SetNotNull, AlterColumnType, AddUnique, ValidateConstraint, AddUniqueUsingIndex))


def checks_for(index: int, step: Step, context: PlanContext) -> list[Check]:
    """The checks of one step (1-based ``index``), in a fixed order: warnings from the catalog first,
    then the data checks. The context must already hold the effects of the steps before it."""
    if isinstance(step, RawSQL):
        return [verdict(UNMODELLED_SQL_WARNING, index, step, "warning",
                         f"step {index} is not modelled ({step.reason}); it is applied as written and nothing "
                         "about its data is prechecked. Split it into supported statements to get prechecks.")]
    checks: list[Check] = []
    destructive = destructive_warning(index, step, context)
    if destructive:
        checks.append(destructive)
    # An INVALID index first: a leftover under the very name the step creates would otherwise read as
    # "already exists", when what clears it is its DROP INDEX CONCURRENTLY.
    invalid = invalid_index_checks(index, step, context)
    # Where PostgreSQL ran the step in the rehearsal, its objects exist as it needs them: no model's guess.
    rehearsed = context.rehearsal is not None and context.rehearsal.passed(index)
    missing = None if rehearsed else missing_objects(index, step, context)
    if missing is not None:
        own = created_index_name(step)
        named = [c for c in invalid if own is not None and c.target is not None and c.target.name == own]
        return checks + invalid + ([] if named else [missing])
    checks.extend(invalid)
    checks.extend(large_table_checks(index, step, context))
    if not isinstance(step, TableStep) or isinstance(step, CreateTable):
        return checks
    state = context.state(step.schema_, step.table)
    if state is None:  # rehearsed: a DROP ... IF EXISTS of nothing
        return checks
    parent = context.state(step.ref_schema, step.ref_table) if isinstance(step, AddForeignKey) else None
    unknown = state.unknown or (parent.unknown if parent is not None else None)
    if parent is not None and parent.added_by and reads_rows(step):
        unknown = unknown or (f"step {', '.join(map(str, parent.added_by))} inserts rows into {parent.label}, which "
                              "preflight does not read, and they may be the parents a foreign key needs")
    if unknown and reads_rows(step):
        checks.append(verdict(primary_check_id(step), index, step, "warning",
                               f"cannot verify step {index} before apply: {unknown}. PostgreSQL checks the rows "
                               "at apply; acknowledge this step, or split the plan so its rows exist first."))
        return checks
    first_data = len(checks)
    own = DATA_CHECKS[step.kind]  # a kind missing from the registry fails here, loudly
    if own is not None:
        checks.extend(own(index, step, state, parent, context))
    if state.added_by:
        added = ", ".join(map(str, state.added_by))
        unsure = (f"cannot verify step {index} before apply: none of the rows of {state.label} there now breaks it, "
                  f"but step {added} inserts rows preflight does not read. PostgreSQL checks them at apply; "
                  "acknowledge this step, or apply the earlier steps first and preflight again.")
        checks[first_data:] = [dataclasses.replace(c, unsure_pass=unsure) for c in checks[first_data:]]
    return checks


def _add_column(index: int, step: AddColumn, state: TableState, parent: TableState | None,
                context: PlanContext) -> list[Check]:
    """A NOT NULL column: every row there gets its DEFAULT (or what PostgreSQL fills in); none may be NULL."""
    if not step.not_null or step.column in state.columns:
        return []
    checks: list[Check] = []
    added = context.added_column(index, step)  # what PostgreSQL made of it, when rehearsed
    numbered = added is not None and (bool(added.identity) or calls_nextval(added.default or ""))
    default = step.default if added is None else added.default
    generated = added is not None and bool(added.generated)
    if numbered:
        pass  # an identity or a serial: every row gets the next number, never NULL
    elif is_null_constant(default) and not generated:
        # Every existing row would get NULL: all of them violate, so the check is a row count.
        checks.append(Check(
            check_id=NOT_NULL_PRECHECK, step=index, step_summary=step.summary(),
            target=step.target(), probe=RowsProbe(source=state.source(), predicate=sql.SQL("true"))
            if state.info else Verdict("pass", f"{state.label} is created by step {state.created_step} "
                                               "and is empty here."),
            fail=f"{state.label} has {{totalRows}} rows and the new column {display_name(step.column)} is "
            "NOT NULL without a DEFAULT, so every row would violate it. Add a DEFAULT, or add the column "
            "nullable, backfill, then SET NOT NULL.",
            ok=f"{state.label} is empty, so a NOT NULL column without a default can be added.",
            notes=state.history_notes(),
        ))
    elif (generated or not is_constant(default)) and state.info is not None:
        value = added_value(added) if added is not None else cast_to(sql.SQL(step.default or "NULL"), step.type)
        checks.append(not_null_check(index, step, state, step.column, context,
                                      predicate=sql.SQL("{} IS NULL").format(value)))
    return checks


def _set_not_null(index: int, step: SetNotNull, state: TableState, parent: TableState | None,
                  context: PlanContext) -> list[Check]:
    return [not_null_check(index, step, state, step.column, context)]


def _alter_column_type(index: int, step: AlterColumnType, state: TableState, parent: TableState | None,
                       context: PlanContext) -> list[Check]:
    return [cast_check(index, step, state, context)]


def _unique(index: int, step: AddUnique | CreateIndex, state: TableState, parent: TableState | None,
            context: PlanContext) -> list[Check]:
    return unique_check(index, step, state) if isinstance(step, AddUnique) or step.unique else []


def _foreign_key(index: int, step: AddForeignKey, state: TableState, parent: TableState | None,
                 context: PlanContext) -> list[Check]:
    if step.not_valid:
        return []
    assert parent is not None
    return [fk_check(index, step, state, parent, step.columns, step.ref_columns, step.match_full)]


def _check(index: int, step: AddCheck, state: TableState, parent: TableState | None,
           context: PlanContext) -> list[Check]:
    return [] if step.not_valid else [check_constraint_check(index, step, state, step.expression, step.name)]


def _validate(index: int, step: ValidateConstraint, state: TableState, parent: TableState | None,
              context: PlanContext) -> list[Check]:
    return validate_checks(index, step, state, context)


def _using_index(index: int, step: AddUniqueUsingIndex, state: TableState, parent: TableState | None,
                 context: PlanContext) -> list[Check]:
    return using_index_checks(index, step, state, context)


DataChecks = Callable[[int, Any, TableState, "TableState | None", PlanContext], list[Check]]

# Each step kind's data checks, registered once: None says, on purpose, that the kind reads no rows. A kind
# missing here fails in checks_for (and in the test that every member of the step union is registered).
DATA_CHECKS: dict[str, DataChecks | None] = {
    "set_not_null": _set_not_null,
    "add_column": _add_column,
    "alter_column_type": _alter_column_type,
    "add_unique": _unique,
    "create_index": _unique,
    "add_foreign_key": _foreign_key,
    "add_check": _check,
    "validate_constraint": _validate,
    "add_unique_using_index": _using_index,
    "create_table": None,  # a new table is empty
    "drop_not_null": None,
    "drop_column": None,
    "drop_table": None,
    "drop_constraint": None,
    "drop_index": None,
    "raw": None,  # not modelled: its own warning says so
}


def derive_checks(plan: MigrationPlan, catalog: Catalog, options: PreflightOptions | None = None,
                  rehearsal: Rehearsal | None = None, order: Sequence[int] | None = None) -> list[Check]:
    """All checks of a plan, listed in step order. The same plan on the same catalog gives the same checks.

    Each step is judged on the tables as the steps apply runs before it leave them: ``order`` is apply's order of
    the steps (phase A, then B, then C), plan order by default. With a ``rehearsal`` (run in that same order),
    each step is judged on the catalog PostgreSQL had when the rehearsal ran it."""
    context = PlanContext(catalog=catalog, options=options or PreflightOptions(), rehearsal=rehearsal)
    steps = list(dict.fromkeys(order or ()))
    steps += [i for i in range(1, len(plan.steps) + 1) if i not in steps]
    by_step: dict[int, list[Check]] = {}
    for index in steps:
        step = plan.steps[index - 1]
        context.step = index
        own = checks_for(index, step, context)
        if rehearsal is not None and rehearsal.passed(index):
            own = [dataclasses.replace(c, rehearsed=True) for c in own]
        by_step.setdefault(index, []).extend(own)
        context.absorb(index, step)
        context.follow_rehearsal(index, step)
        by_step[index].extend(rechecks(context, index, step))
    return [check for index in sorted(by_step) for check in by_step[index]]


def rechecks(context: PlanContext, index: int, step: Step) -> list[Check]:
    """After a simulated UPDATE: the constraints the plan already added to that table are enforced on
    the updated rows, so their checks run again on the rows as the UPDATE leaves them."""
    checks: list[Check] = []
    for state in context.states():
        if index not in state.updated_at or state.info is None:
            continue
        for added in state.enforced:
            if isinstance(added, SetNotNull):
                checks.append(not_null_check(index, step, state, added.column, context,
                                              predicate=sql.SQL("{} IS NULL").format(
                                                  sql.Identifier(added.column))))
            elif isinstance(added, (AddUnique, CreateIndex)):
                checks.extend(unique_check(index, added, state, summary=step.summary()))
            elif isinstance(added, AddForeignKey):
                parent = context.state(added.ref_schema, added.ref_table)
                if parent is not None:
                    checks.append(fk_check(index, step, state, parent, added.columns, added.ref_columns,
                                            added.match_full))
            elif isinstance(added, AddCheck):
                checks.append(check_constraint_check(index, step, state, added.expression, added.name))
    return checks
