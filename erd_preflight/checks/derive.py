"""The checks of a plan, step by step, in a fixed order."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pglast
from pglast import ast, enums
from pglast.stream import RawStream
from psycopg import sql

from ..catalog import Catalog
from ..report.contract import TargetRef
from ..plan import (
    AddColumn,
    AddForeignKey,
    AddUnique,
    CreateTable,
    display_name,
    MigrationPlan,
    RawSQL,
    Step,
    TableStep,
)
from ..rehearse.shadow_catalog import Rehearsal
from .expressions import cast_to
from .model import (
    CAST_PRECHECK,
    OBJECT_PRECHECK,
    UNMODELLED_SQL_WARNING,
    DATA_CHECKS,
    Check,
    PreflightOptions,
    RowsProbe,
    Source,
    Verdict,
    verdict,
)
from . import data as _registered  # noqa: F401 (importing it registers each step kind's data checks
from .dml import delete_checks, insert_checks, type_change_checks, update_checks
from .domains import domain_checks
from .extensions import extension_checks
from .partitions import partition_checks
from .raw_index import index_statement, raw_index_checks
from .state import PlanContext, TableState, query_rows
from .structure import (
    created_index_name,
    destructive_warning,
    invalid_index_checks,
    large_table_checks,
    missing_objects,
)


def reads_rows(step: Step) -> bool:
    """Whether the step's check reads the rows of its table (so needs to know them)."""
    return DATA_CHECKS[step.kind].reads_rows(step)


def raw_checks(index: int, step: RawSQL, context: PlanContext) -> list[Check]:
    """A statement the plan does not model: one that changes the catalog only is PostgreSQL's to judge in the
    rehearsal, whatever the rows; one that can fail on rows is named, and needs a person's acknowledgement."""
    typed = _foreign_key_to_primary_key(step, context)
    if typed is not None:
        return checks_for(index, typed, context)
    pieces = _add_column_pieces(step, context)
    if pieces is not None:
        return _add_column_checks(index, step, context, *pieces)
    bound = partition_checks(index, step, context)
    if bound is not None:
        return bound
    domain = domain_checks(index, step, context)
    if domain is not None:
        return domain
    extension = extension_checks(index, step, context)
    if extension is not None:
        return extension
    filled = _query_checks(index, step, context)
    if filled is not None:
        return filled
    why = step.data_dependence
    statement = index_statement(step)
    if statement is not None:
        found = raw_index_checks(index, step, statement, context)
        if found is not None:
            return found
    if why is None:
        rehearsed = context.rehearsal is not None and context.rehearsal.passed(index)
        return [verdict(OBJECT_PRECHECK, index, step, "pass",
                        f"step {index} changes the catalog only, so no row can make it fail"
                        + ("; PostgreSQL ran it on a copy of the schema." if rehearsed else "."))]
    return [verdict(UNMODELLED_SQL_WARNING, index, step, "warning",
                    f"cannot verify step {index} before apply: {why}, and preflight does not model it "
                    f"({step.reason}). It is applied as written and PostgreSQL checks it then; acknowledge this "
                    "step, or split it into statements preflight models.", acknowledge=True)]


def _foreign_key_to_primary_key(step: RawSQL, context: PlanContext) -> Step | None:
    """``ADD FOREIGN KEY (c) REFERENCES p`` without a column list references p's primary key: the same step with
    those columns written out (from the catalog, or from the primary key an earlier step adds), so it is checked
    like any foreign key. None for anything else, or when the primary key is not known."""
    if len(step.parsed) != 1 or not isinstance(step.parsed[0], ast.AlterTableStmt):
        return None
    cmds = step.parsed[0].cmds or ()
    if len(cmds) != 1 or cmds[0].subtype != enums.AlterTableType.AT_AddConstraint:
        return None
    constraint = cmds[0].def_
    if constraint.contype != enums.ConstrType.CONSTR_FOREIGN or constraint.pk_attrs or constraint.pktable is None:
        return None
    parent = context.state(constraint.pktable.schemaname, constraint.pktable.relname)
    if parent is None:
        return None
    planned = [s.columns for s in parent.enforced if isinstance(s, AddUnique) and s.primary_key]
    existing = [c.columns for c in parent.info.constraints.values() if c.type == "p"] if parent.info else []
    key = (planned or existing or [None])[-1]
    if not key:
        return None
    (raw,) = pglast.parse_sql(step.statement)  # a copy of its own: the step's parse stays as it is
    raw.stmt.cmds[0].def_.pk_attrs = tuple(ast.String(sval=c) for c in key)
    steps = MigrationPlan.from_sql(RawStream()(raw.stmt)).steps
    return steps[0] if len(steps) == 1 and isinstance(steps[0], AddForeignKey) else None


_CT = enums.ConstrType
_KEPT = {_CT.CONSTR_NULL, _CT.CONSTR_NOTNULL, _CT.CONSTR_DEFAULT}
_SPLIT = {_CT.CONSTR_UNIQUE, _CT.CONSTR_PRIMARY, _CT.CONSTR_CHECK, _CT.CONSTR_FOREIGN}


def enforced_by_raw(step: Step, context: PlanContext) -> list[Step]:
    """The constraints a statement preflight reads as typed steps adds to its table (a foreign key without a column
    list, the constraints of ADD COLUMN): a later UPDATE, INSERT or DELETE is checked against them too."""
    if not isinstance(step, RawSQL):
        return []
    typed = _foreign_key_to_primary_key(step, context)
    if typed is not None:
        return [typed]
    pieces = _add_column_pieces(step, context)
    if pieces is None:
        return []
    # REFERENCES p without a column list is a piece preflight reads as raw SQL first
    return [found for piece in pieces[2] for found in (enforced_by_raw(piece, context)
                                                       if isinstance(piece, RawSQL) else [piece])]


def _add_column_pieces(step: RawSQL, context: PlanContext) -> tuple[Step, str | None, list[Step]] | None:
    """``ADD COLUMN c type ... UNIQUE | PRIMARY KEY | CHECK | REFERENCES | GENERATED ALWAYS AS (e) STORED`` as
    what PostgreSQL does: the column (a generated one holds its expression in every row), then each constraint
    as its table form on that column. IF NOT EXISTS where the rehearsal saw PostgreSQL add the column is the same
    statement without it (where it saw PostgreSQL skip it, the step needs no check at all). None for anything
    else (IF NOT EXISTS unrehearsed, identity, deferrable constraints)."""
    if len(step.parsed) != 1 or not isinstance(step.parsed[0], ast.AlterTableStmt):
        return None
    (raw,) = pglast.parse_sql(step.statement)  # a copy of its own: the step's parse stays as it is
    stmt = raw.stmt
    if len(stmt.cmds or ()) != 1 or stmt.cmds[0].subtype != enums.AlterTableType.AT_AddColumn:
        return None
    if stmt.cmds[0].missing_ok:
        rehearsal = context.rehearsal
        if rehearsal is None or not rehearsal.passed(context.step) or context.step in rehearsal.skipped:
            return None
        stmt.cmds[0].missing_ok = False  # PostgreSQL added the column: the statement is the plain ADD COLUMN
    column = stmt.cmds[0].def_
    constraints = list(column.constraints or ())
    generated = [c for c in constraints if c.contype == _CT.CONSTR_GENERATED]
    split = [c for c in constraints if c.contype in _SPLIT]
    if (not split and not generated) or any(c.contype not in _KEPT | _SPLIT | {_CT.CONSTR_GENERATED}
                                             or c.deferrable or c.initdeferred for c in constraints):
        return None
    if generated and (generated[0].generated_when != "a" or getattr(generated[0], "generated_kind", "s") == "v"):
        return None
    expression = RawStream()(generated[0].raw_expr) if generated else None
    kept = [c for c in constraints if c.contype in _KEPT]
    if expression is not None:  # every row holds the expression's value, as a DEFAULT would give it
        kept.append(ast.Constraint(contype=_CT.CONSTR_DEFAULT, raw_expr=generated[0].raw_expr))
    column.constraints = tuple(kept) or None
    pieces = [RawStream()(stmt)]
    for constraint in split:
        if constraint.contype == _CT.CONSTR_FOREIGN:
            constraint.fk_attrs = (ast.String(sval=column.colname),)
        elif constraint.contype != _CT.CONSTR_CHECK:
            constraint.keys = (ast.String(sval=column.colname),)
        cmd = ast.AlterTableCmd(subtype=enums.AlterTableType.AT_AddConstraint, def_=constraint)
        pieces.append(RawStream()(ast.AlterTableStmt(relation=stmt.relation, objtype=stmt.objtype, cmds=(cmd,),
                                                     missing_ok=stmt.missing_ok)))
    steps = [s for text in pieces for s in MigrationPlan.from_sql(text).steps]
    return steps[0], expression, steps[1:]


def _add_column_checks(index: int, step: RawSQL, context: PlanContext, column: Step, expression: str | None,
                       constraints: list[Step]) -> list[Check]:
    """The checks of the column, then of each of its constraints on the table with that column."""
    checks: list[Check] = []
    if expression is not None and isinstance(column, AddColumn):
        state = context.state(column.schema_, column.table)
        if state is not None and state.info is not None and not state.unknown:
            # each row computes the expression when the column is added: one that raises fails the step
            value = cast_to(sql.SQL(expression), column.type)
            checks.append(Check(
                check_id=CAST_PRECHECK, step=index, step_summary=step.summary(), target=column.target(),
                probe=RowsProbe(source=state.source(), predicate=sql.SQL("num_nulls({}) < 0").format(value)),
                fail=f"the generated column {display_name(column.column)} could not be computed for the rows of "
                f"{state.label}", ok=f"the generated column {display_name(column.column)} computes without error "
                f"for every row of {state.label} ({{totalRows}} rows).", notes=state.history_notes()))
    checks += checks_for(index, column, context)
    if isinstance(column, AddColumn):
        context.absorb_added_column(index, column)
        added = context.state(column.schema_, column.table)
        if expression is not None and added is not None:
            added.generated[column.column] = expression  # an UPDATE computes it again
    else:
        context.absorb(index, column)
    for piece in constraints:
        checks += checks_for(index, piece, context)
        context.absorb(index, piece)
    return checks


def _query_checks(index: int, step: RawSQL, context: PlanContext) -> list[Check] | None:
    """``CREATE TABLE / MATERIALIZED VIEW ... AS query``: the query runs on the rows when the step does, so every
    column of every row it gives is computed here (an expression that raises fails the step); later steps read the
    new relation as that query's rows. None when the query reads what the plan has changed, or without the
    rehearsal's catalog."""
    query = context.filled_by_query(step, index)
    after = context.rehearsal.after.get(index) if context.rehearsal else None
    if query is None or after is None:
        return None
    into = step.parsed[0].into.rel
    made = after.resolve(into.schemaname, into.relname)
    if made is None or not made.columns:
        return None
    names = [c.name for c in made.columns]
    source = Source(key=f"{made.schema}.{made.name}@query{index}", relation=sql.SQL(query_rows(query, names)),
                    alias=made.name, columns=tuple((c.name, c.type) for c in made.columns), derived=True,
                    expressions=(query,))
    label = display_name(made.schema, made.name)
    return [Check(check_id=CAST_PRECHECK, step=index, step_summary=step.summary(),
                  target=TargetRef(kind="table", schema=made.schema, table=made.name),
                  probe=RowsProbe(source=source, predicate=sql.SQL("num_nulls({}) < 0").format(
                      sql.SQL(", ").join(sql.Identifier(n) for n in names))),
                  fail=f"step {index} could not compute the rows of {label}",
                  ok=f"the query of step {index} computes every row of {label} without error ({{totalRows}} rows).")]


def _cannot_verify(index: int, step: Step, why: str) -> Check:
    """The step's rows are not known before apply (``why``): a person acknowledges it."""
    return verdict(step.primary_check(), index, step, "warning",
                   f"cannot verify step {index} before apply: {why}. PostgreSQL checks the rows at apply; acknowledge "
                   "this step, or split the plan so its rows exist first.", acknowledge=True)


def _unsure_pass(index: int, state: TableState) -> str:
    """What a check without violations says when an earlier step inserts rows preflight does not read."""
    return (f"cannot verify step {index} before apply: none of the rows of {state.label} there now breaks it, but "
            f"step {', '.join(map(str, state.added_by))} inserts rows preflight does not read. PostgreSQL checks them "
            "at apply; acknowledge this step, or apply the earlier steps first and preflight again.")


def checks_for(index: int, step: Step, context: PlanContext) -> list[Check]:
    """The checks of one step (1-based ``index``), in a fixed order: warnings from the catalog first,
    then the data checks. The context must already hold the effects of the steps before it."""
    if isinstance(step, RawSQL):
        return raw_checks(index, step, context)
    if isinstance(step, TableStep) and step.table_if_exists:
        existing = context.state(step.schema_, step.table)
        if existing is None or existing.dropped_step is not None:
            return [verdict(step.primary_check(), index, step, "pass",
                            f"table {display_name(step.schema_, step.table)} does not exist here, so ALTER TABLE IF "
                            "EXISTS does nothing.")]
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
    if step.only and state.info is not None and (state.info.inherited_by or state.info.kind == "p"):
        unknown = unknown or (f"ALTER TABLE ONLY leaves out the tables that inherit from {state.label} (or its "
                              "partitions), and preflight does not model what that does to their rows")
    if parent is not None and parent.added_by and reads_rows(step):
        unknown = unknown or (f"step {', '.join(map(str, parent.added_by))} inserts rows into {parent.label}, which "
                              "preflight does not read, and they may be the parents a foreign key needs")
    if unknown and reads_rows(step):
        checks.append(_cannot_verify(index, step, unknown))
        return checks
    first_data = len(checks)
    own = DATA_CHECKS[step.kind].checks  # a kind missing from the registry fails here, loudly
    if own is not None:
        checks.extend(own(index, step, state, parent, context))
    if state.added_by:
        unsure = _unsure_pass(index, state)
        checks[first_data:] = [dataclasses.replace(c, unsure_pass=unsure) for c in checks[first_data:]]
    return checks


def derive_checks(plan: MigrationPlan, catalog: Catalog, options: PreflightOptions | None = None,
                  rehearsal: Rehearsal | None = None, order: Sequence[int] | None = None) -> list[Check]:
    """All checks of a plan, listed in step order. The same plan on the same catalog gives the same checks.

    Each step is judged on the tables as the steps apply runs before it leave them: ``order`` is apply's order of
    the steps (phase A, then B, then C), plan order by default. With a ``rehearsal`` (run in that same order),
    each step is judged on the catalog PostgreSQL had when the rehearsal ran it."""
    context = PlanContext(catalog=catalog, options=options or PreflightOptions(), rehearsal=rehearsal)
    context.online = _online(plan, catalog, context.options)
    context.created_domains = {stmt.domainname[-1].sval for step in plan.steps if isinstance(step, RawSQL)
                               for stmt in step.parsed if isinstance(stmt, ast.CreateDomainStmt)}
    steps = list(dict.fromkeys(order or ()))
    steps += [i for i in range(1, len(plan.steps) + 1) if i not in steps]
    by_step: dict[int, list[Check]] = {}
    enum_added = False  # an earlier step (in apply's order) creates an enum or adds enum values
    for index in steps:
        step = plan.steps[index - 1]
        context.step = index
        if rehearsal is not None and index in rehearsal.skipped:
            # PostgreSQL skipped the whole step in the rehearsal (IF NOT EXISTS of an object that exists): at apply
            # it does the same, whatever the rows, so no data check. Nothing to absorb: the catalog is as before.
            by_step.setdefault(index, []).append(dataclasses.replace(verdict(
                step.primary_check(), index, step, "pass", f"PostgreSQL skips step {index} on this catalog "
                f"({rehearsal.skipped[index]}): it changes nothing, whatever the rows."), rehearsed=True))
            context.follow_rehearsal(index, step)
            continue
        own = checks_for(index, step, context)
        if rehearsal is not None and rehearsal.passed(index):
            own = [dataclasses.replace(c, rehearsed=True) for c in own]
        by_step.setdefault(index, []).extend(own)
        enforced = enforced_by_raw(step, context)
        context.absorb(index, step)
        for typed in enforced:
            context.absorb(index, typed)  # a constraint step: recorded for the data statements after it
        context.follow_rehearsal(index, step)
        data = rechecks(context, index, step)
        if rehearsal is not None and rehearsal.passed(index):
            data = [dataclasses.replace(c, rehearsed=True) for c in data]
        if isinstance(step, RawSQL) and any(index in state.updates or index in state.deletes or index in state.inserts
                                            for state in context.states()):
            # a data statement preflight simulates: its checks say what it does to the rows, not "unmodelled"
            by_step[index] = [c for c in by_step[index] if c.check_id != UNMODELLED_SQL_WARNING]
        by_step[index].extend(data)
        if rehearsal is not None and index in rehearsal.exact and rehearsal.passed(index):
            by_step[index] = exact_by_construction(index, step, by_step[index], rehearsal.exact[index])
        if enum_added:
            by_step[index] = [dataclasses.replace(c, enum_values_added=True) for c in by_step[index]]
        # an enum the plan creates (perhaps under the name of one it renamed away) or gives new values
        enum_added = enum_added or (isinstance(step, RawSQL) and any(
            isinstance(n, (ast.AlterEnumStmt, ast.CreateEnumStmt)) for n in step.parsed))
    return [check for index in sorted(by_step) for check in by_step[index]]


def exact_by_construction(index: int, step: Step, checks: list[Check], read: tuple[str, ...]) -> list[Check]:
    """A step the rehearsal ran on rows the plan itself makes (``shadow_exact``): what it read there is what it
    reads at apply, so PostgreSQL's run of it is the verdict. A person is not asked about its rows; every other
    finding (a destructive change, a lock) stays."""
    kept = [dataclasses.replace(c, unsure_pass=None) for c in checks
            if not (isinstance(c.probe, Verdict) and c.probe.acknowledge
                    and c.check_id in (UNMODELLED_SQL_WARNING, step.primary_check()))]
    if len(kept) == len(checks) and all(c.unsure_pass is None for c in checks):
        return checks  # nothing was left for a person: its own checks say it all
    what = f"the rows of {', '.join(read)}, which the plan itself makes" if read else "no table's rows"
    return kept + [dataclasses.replace(verdict(
        step.primary_check() if not isinstance(step, RawSQL) else OBJECT_PRECHECK, index, step, "pass",
        f"step {index} reads and writes only {what}, exactly the rows it meets at apply: PostgreSQL ran it on them "
        "in the rehearsal, and it succeeds."), rehearsed=True)]


def _online(plan: MigrationPlan, catalog: Catalog, options: PreflightOptions) -> frozenset[int]:
    """The steps apply runs in their online form: their scans and index builds let writes go on."""
    from ..errors import PlanError
    from ..plan.phases import online_steps

    if not options.online:
        return frozenset()
    try:
        return online_steps(plan, catalog, True)
    except PlanError:
        return frozenset()


def rechecks(context: PlanContext, index: int, step: Step) -> list[Check]:
    """After a simulated UPDATE or DELETE: every constraint its table has at that point (there before the plan, or
    added by it) is checked on the rows the statement writes or removes; after a type change, the constraints
    PostgreSQL checks again on the converted values (``dml``). Rows preflight cannot know (an earlier statement it
    does not simulate) make them a "cannot verify", never a guess; rows an earlier step inserts make a pass unsure."""
    checks: list[Check] = []
    for state in context.states():
        if state.info is None:
            continue
        found: list[Check] = []
        if index in state.updates:
            found += update_checks(context, index, step, state)
        if index in state.deletes:
            found += delete_checks(context, index, step, state)
        if index in state.inserts:
            found += insert_checks(context, index, step, state)
        if index in state.retyped:
            found += type_change_checks(context, index, step, state)
        if found and state.unknown:
            found = [_cannot_verify(index, step, state.unknown)]
        elif found and state.added_by:
            unsure = _unsure_pass(index, state)
            found = [dataclasses.replace(c, unsure_pass=unsure) if not isinstance(c.probe, Verdict) else c
                     for c in found]
        checks += found
    return checks
