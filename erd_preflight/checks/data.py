"""Checks that read rows: NULLs, duplicates, orphans, failed casts and CHECKs."""

from __future__ import annotations

import math

import pglast
from pglast import ast
from pglast.stream import RawStream
from psycopg import sql

from ..report.contract import TargetRef
from ..plan import (
    AddCheck,
    AddColumn,
    AddExclude,
    AddForeignKey,
    AddUnique,
    AddUniqueUsingIndex,
    AlterColumnType,
    CreateIndex,
    SetNotNull,
    Step,
    ValidateConstraint,
    display_name,
)
from .expressions import all_not_null, any_null, cast_to, is_constant, is_null_constant, maybe_domain, serial_type, too_long
from .model import (
    CAST_PRECHECK,
    CHECK_CONSTRAINT_PRECHECK,
    EXCLUSION_PRECHECK,
    FK_VIOLATIONS_PRECHECK,
    NOT_NULL_PRECHECK,
    OBJECT_PRECHECK,
    UNIQUE_PRECHECK,
    CastProbe,
    Check,
    DuplicatesProbe,
    OrphansProbe,
    RowsProbe,
    Source,
    WIDE_KEY,
    Verdict,
    data_checks,
    no_data_checks,
    null_datum,
    verdict,
)
from .state import PlanContext, TableState, added_value, calls_nextval, nextval_sequence
from ..rehearse.shadow_catalog import ColumnSnapshot


def created_in_plan(index: int, step: Step, state: TableState, check_id: str, what: str) -> Check:
    if state.inserted_by:
        steps = ", ".join(str(s) for s in state.inserted_by)
        return verdict(check_id, index, step, "warning",
                        f"{state.label} is created by step {state.created_step} and filled by step {steps} "
                        f"(raw SQL), which preflight cannot read before apply: {what} is checked by "
                        "PostgreSQL at apply time only; acknowledge this step.", acknowledge=True)
    return verdict(check_id, index, step, "pass",
                    f"{state.label} is created by step {state.created_step} and is empty here: {what} holds.")


def not_null_check(index: int, step: Step, state: TableState, column: str, ctx: PlanContext,
                    predicate: sql.Composable | None = None) -> Check:
    label = state.column_label(column)
    if state.info is None:
        return created_in_plan(index, step, state, NOT_NULL_PRECHECK, f"NOT NULL on {label}")
    if predicate is None and column in state.no_nulls_because:
        return verdict(NOT_NULL_PRECHECK, index, step, "pass",
                        f"{label} has no NULLs: {state.no_nulls_because[column]}.")
    if predicate is None and column in state.not_null and not state.layers:
        return verdict(NOT_NULL_PRECHECK, index, step, "pass", f"{label} is already NOT NULL.")
    return Check(
        check_id=NOT_NULL_PRECHECK,
        step=index,
        step_summary=step.summary(),
        target=TargetRef(kind="column", schema=state.schema, table=state.name, columns=(column,)),
        probe=RowsProbe(source=state.source(), predicate=predicate or null_datum(sql.Identifier(column))),
        fail=f"{{violations}} of {{totalRows}} rows of {state.label} have NULL in {display_name(column)}; "
        f"{step.summary()} would fail. Backfill them (UPDATE … SET {display_name(column)} = … WHERE "
        f"{display_name(column)} IS NULL) or delete them first.",
        ok=f"no NULLs in {label} ({{totalRows}} rows).",
        notes=state.history_notes(),
    )


def primary_key_nulls(index: int, step_summary: str, state: TableState, columns: tuple[str, ...]) -> list[Check]:
    """A primary key makes its columns NOT NULL: rows with a NULL in any of them fail the step."""
    nullable = tuple(c for c in columns if c not in state.not_null or state.layers)
    if not nullable:
        return []
    cols = ", ".join(display_name(c) for c in columns)
    return [Check(
        check_id=NOT_NULL_PRECHECK, step=index, step_summary=step_summary,
        target=TargetRef(kind="column", schema=state.schema, table=state.name, columns=columns),
        probe=RowsProbe(source=state.source(), predicate=any_null(nullable)),
        fail=f"{{violations}} of {{totalRows}} rows of {state.label} have NULL in ({cols}); a primary "
        "key makes its columns NOT NULL, so the step would fail. Backfill or delete those rows.",
        ok=f"no NULLs in the primary key columns ({cols}) of {state.label} ({{totalRows}} rows).",
        notes=state.history_notes(),
    )]


def unique_check(index: int, step: AddUnique | CreateIndex, state: TableState,
                  summary: str | None = None) -> list[Check]:
    step_summary = summary or step.summary()
    cols = ", ".join(display_name(c) for c in step.columns)
    target = TargetRef(kind="column", schema=state.schema, table=state.name, columns=step.columns)
    if state.info is None:
        return [created_in_plan(index, step, state, UNIQUE_PRECHECK, f"uniqueness of ({cols})")]
    checks = []
    source = state.source(own_rows=True)
    if isinstance(step, AddUnique) and step.primary_key:
        checks.extend(primary_key_nulls(index, step_summary, state, step.columns))
    where = sql.SQL(step.where) if isinstance(step, CreateIndex) and step.where else None
    nnd = step.nulls_not_distinct or (isinstance(step, AddUnique) and step.primary_key)
    null_rule = "" if nnd else " (rows with a NULL in the key are not compared, as PostgreSQL does)"
    checks.append(Check(
        check_id=UNIQUE_PRECHECK, step=index, step_summary=step_summary, target=target,
        probe=DuplicatesProbe(source=source, columns=step.columns, nulls_not_distinct=nnd, where=where,
                              wide=wide_key(state, step.columns)
                              if isinstance(step, AddUnique) or step.method == "btree" else None),
        fail=f"{{duplicateGroups:value|values}} of ({cols}) {{duplicateGroups:~occurs|occur}} more than once in {state.label}, in "
        f"{{violations:row|rows}}{null_rule}; {step_summary} would fail. Dedupe those rows first.",
        ok=f"({cols}) is unique in {state.label} ({{totalRows}} rows){null_rule}.",
        notes=state.history_notes(),
    ))
    return checks


def fk_check(index: int, step: Step, state: TableState, parent: TableState, columns: tuple[str, ...],
              ref_columns: tuple[str, ...], match_full: bool) -> Check:
    cols = ", ".join(display_name(c) for c in columns)
    refs = ", ".join(display_name(c) for c in ref_columns)
    target = TargetRef(kind="relationship", schema=state.schema, table=state.name, columns=columns,
                       ref_schema=parent.schema, ref_table=parent.name, ref_columns=ref_columns)
    if state.info is None:
        return created_in_plan(index, step, state, FK_VIOLATIONS_PRECHECK, "the foreign key")
    rule = ("MATCH FULL: a key that is partly NULL is a violation too" if match_full
            else "rows with a NULL in the key are not checked (MATCH SIMPLE)")
    common = dict(
        check_id=FK_VIOLATIONS_PRECHECK, step=index, step_summary=step.summary(), target=target,
        fail=f"{{violations}} of {{totalRows}} rows of {state.label} have a ({cols}) with no matching "
        f"{parent.label}({refs}); {rule}. Fix the orphans (delete them, set the key to NULL, or insert the "
        "missing parents) before adding the foreign key.",
        ok=f"every ({cols}) of {state.label} has a matching {parent.label}({refs}) ({{totalRows}} rows; {rule}).",
        notes=state.history_notes() + parent.history_notes(),
    )
    if parent.info is None and not parent.inserted_by:
        # The referenced table is new and empty: every fully non-NULL key is an orphan.
        keyed = all_not_null(columns)
        if match_full:
            keyed = sql.SQL("({}) OR NOT ({})").format(keyed, sql.SQL(" AND ").join(
                null_datum(sql.Identifier(c)) for c in columns))
        return Check(probe=RowsProbe(source=state.source(own_rows=True), predicate=keyed), **common)  # type: ignore[arg-type]
    if parent.info is None:
        return created_in_plan(index, step, parent, FK_VIOLATIONS_PRECHECK, "the foreign key")
    return Check(  # type: ignore[arg-type]
        probe=OrphansProbe(child=state.source(own_rows=True), columns=columns, parent=parent.source(own_rows=True),
                           ref_columns=ref_columns, match_full=match_full),
        **common,
    )


def check_constraint_check(index: int, step: Step, state: TableState, expression: str,
                            name: str | None) -> Check:
    shown = f"CHECK ({expression})" + (f" ({display_name(name)})" if name else "")
    if state.info is None:
        return created_in_plan(index, step, state, CHECK_CONSTRAINT_PRECHECK, shown)
    return Check(
        check_id=CHECK_CONSTRAINT_PRECHECK, step=index, step_summary=step.summary(),
        target=TargetRef(kind="constraint", schema=state.schema, table=state.name, name=name),
        # A CHECK passes when its expression is true or NULL: only FALSE violates it.
        probe=RowsProbe(source=state.source(), predicate=sql.SQL("({}) IS FALSE").format(sql.SQL(expression))),
        fail=f"{{violations}} of {{totalRows}} rows of {state.label} violate {shown}; the step would fail. "
        "Correct or delete those rows, or add the constraint NOT VALID and validate it after cleanup.",
        ok=f"every row of {state.label} satisfies {shown} ({{totalRows}} rows).",
        notes=state.history_notes(),
    )


def cast_check(index: int, step: AlterColumnType, state: TableState, ctx: PlanContext) -> Check:
    label = state.column_label(step.column)
    if state.info is None:
        return created_in_plan(index, step, state, CAST_PRECHECK, f"the conversion of {label}")
    base = state.info.columns.get(step.column)
    rehearsed = ctx.rehearsal is not None and ctx.rehearsal.passed(index)  # then PostgreSQL accepted the conversion
    if step.using is None and base is not None and not state.layers and not rehearsed:
        if not ctx.catalog.assignment_cast_exists(base.type_oid, step.type):
            return verdict(CAST_PRECHECK, index, step, "blocking",
                            f"{label} ({base.type}) cannot be converted to {step.type} automatically; PostgreSQL "
                            f"would refuse the step. Add USING, e.g. USING {display_name(step.column)}::{step.type}.")
    expression = sql.SQL(step.using) if step.using else sql.Identifier(step.column)
    # A domain's values are assigned to its base type first: a length limit there refuses (where CAST cuts)
    domain = ctx.catalog.domain_of(step.type) if maybe_domain(step.type) else None
    limit_type = domain.base if domain is not None and domain.known else step.type
    return Check(
        check_id=CAST_PRECHECK, step=index, step_summary=step.summary(),
        target=TargetRef(kind="column", schema=state.schema, table=state.name, columns=(step.column,)),
        probe=CastProbe(source=state.source(), column=step.column, expression=expression, type=step.type,
                        not_null=step.column in state.not_null, too_long=too_long(expression, limit_type),
                        input_text=sql.Identifier(step.column) if _input_conversion(step, state) else None),
        fail=f"{{violations}} of {{totalRows}} rows of {state.label} cannot be converted to {step.type}"
        f"{' with USING ' + step.using if step.using else ''}{{firstError}}; the step would fail. "
        "Fix those values or change the USING expression.",
        ok=f"every value of {label} converts to {step.type} ({{totalRows}} rows).",
        notes=state.history_notes(),
    )


_STRING_TYPES = ("text", "character varying", "character", "varchar", "bpchar", "char")


def _input_conversion(step: AlterColumnType, state: TableState) -> bool:
    """Whether the conversion is the new type's input function reading the column's text: a string column, and no
    USING, or a USING that only casts the column to the new type."""
    current = state.columns.get(step.column, "")
    if not current.startswith(_STRING_TYPES) or current.endswith("]"):
        return False
    if step.using is None:
        return True
    node = pglast.parse_sql(f"SELECT {step.using}")[0].stmt.targetList[0].val
    if not isinstance(node, ast.TypeCast) or not isinstance(node.arg, ast.ColumnRef):
        return False
    fields = node.arg.fields
    return (isinstance(fields[-1], ast.String) and fields[-1].sval == step.column
            and RawStream()(node.typeName) == RawStream()(pglast.parse_sql(f"SELECT NULL::{step.type}")[0]
                                                        .stmt.targetList[0].val.typeName))


def validate_checks(index: int, step: ValidateConstraint, state: TableState, ctx: PlanContext) -> list[Check]:
    planned = state.plan_constraints.get(step.name)
    if isinstance(planned, AddForeignKey):
        parent = ctx.state(planned.ref_schema, planned.ref_table)
        if parent is not None:
            return [fk_check(index, step, state, parent, planned.columns, planned.ref_columns, planned.match_full)]
    if isinstance(planned, AddCheck):
        return [check_constraint_check(index, step, state, planned.expression, planned.name)]
    info = state.info.constraints.get(step.name) if state.info else None
    if info is None:
        return [verdict(OBJECT_PRECHECK, index, step, "blocking",
                         f"constraint {display_name(step.name)} does not exist on {state.label}; VALIDATE would "
                         "fail. Check its name in \\d of the table.")]
    if info.validated:
        return [verdict(OBJECT_PRECHECK, index, step, "pass",
                         f"constraint {display_name(step.name)} is already valid; VALIDATE does nothing.")]
    if info.type == "f" and info.ref_table:
        parent = ctx.state(info.ref_schema, info.ref_table)
        if parent is not None:
            return [fk_check(index, step, state, parent, info.columns, info.ref_columns, info.match_full)]
    if info.type == "c" and info.check_expression:
        return [check_constraint_check(index, step, state, info.check_expression, info.name)]
    if info.type == "n" and info.columns:
        return [not_null_check(index, step, state, info.columns[0], ctx,
                                predicate=null_datum(sql.Identifier(info.columns[0])))]
    return [verdict(OBJECT_PRECHECK, index, step, "warning",
                     f"constraint {display_name(step.name)} ({info.definition}) is of a kind preflight does not "
                     "precheck; PostgreSQL validates it at apply.")]


def using_index_checks(index: int, step: AddUniqueUsingIndex, state: TableState, ctx: PlanContext) -> list[Check]:
    planned = ctx.plan_indexes.get((state.schema, step.index))
    existing = state.info.indexes.get(step.index) if state.info else None
    what = f"index {display_name(state.schema, step.index)}"
    if planned is not None:
        ok = planned.unique and not planned.where and planned.method == "btree"
        columns = planned.columns
    elif existing is not None:
        if not existing.valid:
            return []  # reported by the INVALID index check
        ok = existing.unique and not existing.partial and not existing.expressions
        columns = existing.columns
    else:
        return [verdict(OBJECT_PRECHECK, index, step, "blocking",
                         f"{what} does not exist on {state.label}; build it first (CREATE UNIQUE INDEX "
                         "CONCURRENTLY), then add the constraint USING INDEX.")]
    if not ok:
        return [verdict(OBJECT_PRECHECK, index, step, "blocking",
                         f"{what} is not a plain unique btree index on columns (it is partial, on expressions, "
                         "or not unique), so PostgreSQL refuses to turn it into a constraint.")]
    checks = [verdict(OBJECT_PRECHECK, index, step, "pass",
                       f"{what} is a unique index on ({', '.join(display_name(c) for c in columns)}): the "
                       "constraint needs no scan for duplicates.")]
    if step.primary_key and state.info is not None:
        checks.extend(primary_key_nulls(index, step.summary(), state, columns))
    return checks


# ---------------------------------------------------------------------------------------------------------
# Each step kind's data checks, registered once.

@data_checks("add_column", reads_rows=lambda step: step.not_null or maybe_domain(step.type))
def _add_column(index: int, step: AddColumn, state: TableState, parent: TableState | None,
                context: PlanContext) -> list[Check]:
    """A NOT NULL column: every row there gets its DEFAULT (or what PostgreSQL fills in); none may be NULL. A
    column of a domain with NOT NULL or CHECK: the value every row gets must pass them."""
    if step.column in state.columns:
        return []
    added = context.added_column(index, step)  # what PostgreSQL made of it, when rehearsed
    checks = _domain_column(index, step, state, context, added) if maybe_domain(step.type) else []
    checks += _numbering(index, step, state, context, added)
    if not step.not_null:
        return checks
    numbered = (added is not None and (bool(added.identity) or calls_nextval(added.default or ""))) or (
        added is None and serial_type(step.type) is not None)
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
                                      predicate=null_datum(value)))
    return checks


_TYPE_MAX = {"smallint": 32767, "integer": 2147483647}


def _numbering(index: int, step: AddColumn, state: TableState, context: PlanContext,
               added: ColumnSnapshot | None) -> list[Check]:
    """A column numbered from a sequence (serial, identity, DEFAULT nextval(...)): each row already there draws
    the next number, and a sequence past its MAXVALUE (MINVALUE going down) fails the step."""
    if added is None or state.info is None:
        return []
    sequence = nextval_sequence(added.default) if added.default and calls_nextval(added.default) else None
    if not added.identity and sequence is None:
        return []
    capacity: int | None
    known = context.catalog.sequence_capacity(sequence) if sequence is not None else None
    if known is not None:
        capacity, what = known
    elif added.identity and "IDENTITY (" in " ".join(step.sql().upper().split()):
        capacity, what = None, "an identity column with sequence options"
    elif sequence is not None and context.catalog.relation_exists(*_split_name(sequence, context.current_schema)):
        capacity, what = None, f"sequence {sequence}, which this role may not read"
    elif added.type in _TYPE_MAX:  # the step makes the sequence: from 1, up to the column type's largest value
        capacity, what = _TYPE_MAX[added.type], f"the new sequence of {display_name(step.column)} ({added.type})"
    elif added.type == "bigint":
        return []
    else:
        capacity, what = None, f"sequence {sequence or 'of the column'}, which an earlier step of the plan makes"
    if capacity is None:
        return [verdict(CAST_PRECHECK, index, step, "warning",
                        f"cannot verify step {index} before apply: every row of {state.label} draws a number from "
                        f"{what}, whose numbers left preflight cannot tell. PostgreSQL fails the step if it runs "
                        "out; acknowledge this step once you have checked the sequence.", acknowledge=True)]
    if capacity is math.inf:
        return []
    base = state.source()
    numbered = Source(
        key=f"{base.key}@numbered{index}", alias=base.alias, columns=(("erd_number", "bigint"),), derived=True,
        relation=sql.SQL("(SELECT row_number() OVER () AS erd_number FROM {} AS erd_rows)").format(base.relation),
        expressions=base.expressions)
    return [Check(
        check_id=CAST_PRECHECK, step=index, step_summary=step.summary(), target=step.target(),
        probe=RowsProbe(source=numbered, predicate=sql.SQL("erd_number > {}").format(sql.Literal(int(capacity)))),
        fail=f"{{violations}} of the {{totalRows}} rows of {state.label} would draw a number past the end of {what}, "
        f"which has {int(capacity):,} left; the step would fail. Raise the sequence's MAXVALUE (or use a wider "
        "type) first.",
        ok=f"{what} has numbers for all {{totalRows}} rows of {state.label} ({int(capacity):,} left).",
        notes=state.history_notes(),
    )]


def _split_name(name: str, default_schema: str) -> tuple[str, str]:
    schema, _, relation = name.rpartition(".")
    return (schema or default_schema, relation)


def _domain_column(index: int, step: AddColumn, state: TableState, context: PlanContext,
                   added: ColumnSnapshot | None) -> list[Check]:
    """Every row already there gets the column's value (its DEFAULT, else NULL), converted to the domain: a NOT
    NULL or a CHECK of the domain that refuses it fails the step, with PostgreSQL's own error."""
    domain = context.catalog.domain_of(step.type)
    if domain is None or not domain.constrained or state.info is None:
        return []
    if not domain.known and not context.plan_creates_domain(step.type):
        return []  # a type the plan makes that is no domain (an enum, a composite)
    if added is not None and (added.identity or added.generated):
        return []  # numbers, or the generation expression: PostgreSQL's own check of those is the NOT NULL one
    value = added_value(added) if added is not None else cast_to(sql.SQL(step.default or "NULL"), step.type)
    return [Check(
        check_id=CAST_PRECHECK, step=index, step_summary=step.summary(), target=step.target(),
        probe=RowsProbe(source=state.source(), predicate=sql.SQL("num_nulls({}) < 0").format(value)),
        fail=f"the value the rows of {state.label} would get in {display_name(step.column)} cannot be "
        f"converted to {step.type}",
        ok=f"the value every row of {state.label} gets in {display_name(step.column)} passes the constraints of "
        f"domain {step.type} ({{totalRows}} rows).",
        notes=state.history_notes(),
    )]


@data_checks("set_not_null")
def _set_not_null(index: int, step: SetNotNull, state: TableState, parent: TableState | None,
                  context: PlanContext) -> list[Check]:
    return [not_null_check(index, step, state, step.column, context)]


@data_checks("alter_column_type")
def _alter_column_type(index: int, step: AlterColumnType, state: TableState, parent: TableState | None,
                       context: PlanContext) -> list[Check]:
    return [cast_check(index, step, state, context)]


@data_checks("add_unique")
@data_checks("create_index", reads_rows=lambda step: step.unique or step.method == "btree")
def _unique(index: int, step: AddUnique | CreateIndex, state: TableState, parent: TableState | None,
            context: PlanContext) -> list[Check]:
    if isinstance(step, AddUnique) or step.unique:
        return unique_check(index, step, state)  # its grouping names keys near btree's limit too
    return wide_key_check(index, step, state) if state.info is not None and step.method == "btree" else []


# Types whose values are never near that size.
_NARROW = ("smallint", "integer", "bigint", "boolean", "date", "real", "double precision", "uuid", "oid", "money",
           "time", "timestamp", "interval", "inet", "cidr", "macaddr", "\"char\"", "regclass", "smallserial",
           "serial", "bigserial", "int", "int2", "int4", "int8", "bool", "float4", "float8", "timestamptz")


def may_be_wide(type_text: str) -> bool:
    """Whether values of ``type_text`` can come near btree's index row limit (a text, a varchar(n) of a large n, a
    bytea, a jsonb...), rather than being small by their type."""
    kind = type_text.strip().lower()
    if kind.endswith("[]"):
        return True
    if kind.startswith(_NARROW):
        return False
    for prefix in ("character varying(", "varchar(", "character(", "char(", "bpchar(", "numeric(", "bit("):
        if kind.startswith(prefix):
            digits = kind[len(prefix):].split(")")[0].split(",")[0]
            return not digits.strip().isdigit() or int(digits) * 4 > WIDE_KEY
    return True


def wide_key(state: TableState, columns: tuple[str, ...]) -> sql.Composable | None:
    """A row whose btree key (``columns``) is near the index row limit as the table stores it; None when the
    columns' types keep every key small."""
    if not any(may_be_wide(state.columns.get(c, "text")) for c in columns):
        return None
    keys = sql.SQL(" + ").join(sql.SQL("coalesce(pg_column_size({}), 0)").format(sql.Identifier(c)) for c in columns)
    return sql.SQL("{} > {}").format(keys, sql.Literal(WIDE_KEY))


def wide_key_check(index: int, step: CreateIndex, state: TableState) -> list[Check]:
    """Rows whose btree key would be near the index row limit: named for a person, never passed over."""
    predicate = wide_key(state, step.columns)
    if predicate is None:
        return []
    cols = ", ".join(display_name(c) for c in step.columns)
    if isinstance(step, CreateIndex) and step.where:
        predicate = sql.SQL("({}) IS TRUE AND {}").format(sql.SQL(step.where), predicate)
    return [Check(
        check_id=OBJECT_PRECHECK, step=index, step_summary=step.summary(), target=step.target(),
        probe=RowsProbe(source=state.source(own_rows=True), predicate=predicate), failure="warning",
        acknowledge=True,
        fail=f"cannot verify step {index} before apply: {{violations:row|rows}} of {state.label} {{violations:~has|have}} a key ({cols}) of "
        f"more than {WIDE_KEY:,} bytes as stored, near btree's index row limit (2,704 bytes after compression; "
        "SQLSTATE 54000). Acknowledge this step, or index a hash of the value.",
        ok=f"no key ({cols}) of {state.label} is near btree's index row limit ({{totalRows}} rows).",
        notes=state.history_notes())]


@data_checks("add_foreign_key", reads_rows=lambda step: not step.not_valid)
def _foreign_key(index: int, step: AddForeignKey, state: TableState, parent: TableState | None,
                 context: PlanContext) -> list[Check]:
    if step.not_valid:
        return []
    assert parent is not None
    return [fk_check(index, step, state, parent, step.columns, step.ref_columns, step.match_full)]


@data_checks("add_check", reads_rows=lambda step: not step.not_valid)
def _check(index: int, step: AddCheck, state: TableState, parent: TableState | None,
           context: PlanContext) -> list[Check]:
    return [] if step.not_valid else [check_constraint_check(index, step, state, step.expression, step.name)]


@data_checks("validate_constraint")
def _validate(index: int, step: ValidateConstraint, state: TableState, parent: TableState | None,
              context: PlanContext) -> list[Check]:
    return validate_checks(index, step, state, context)


@data_checks("add_unique_using_index")
def _using_index(index: int, step: AddUniqueUsingIndex, state: TableState, parent: TableState | None,
                 context: PlanContext) -> list[Check]:
    return using_index_checks(index, step, state, context)


no_data_checks("create_table", "drop_not_null", "drop_column", "drop_table", "drop_constraint", "drop_index")
no_data_checks("raw")  # not modelled: its own warning says so


@data_checks("add_exclude")
def _exclude(index: int, step: AddExclude, state: TableState, parent: TableState | None,
             context: PlanContext) -> list[Check]:
    """No two rows may have every element's operator true between them (PostgreSQL requires the operators to
    be commutative, and a NULL comparison is no conflict); rows outside the WHERE predicate are left out. A
    violating row is one that conflicts with another: both rows of a pair are counted."""
    shown = ", ".join(f"{display_name(e.column)} WITH {e.operator}" for e in step.elements)
    if state.info is None:
        return [created_in_plan(index, step, state, EXCLUSION_PRECHECK, f"EXCLUDE ({shown})")]
    if state.layers:
        return [verdict(EXCLUSION_PRECHECK, index, step, "warning",
                        f"cannot verify step {index} before apply: an earlier step of the plan changes rows of "
                        f"{state.label}, and the exclusion check compares rows of the table as stored. PostgreSQL "
                        "checks it at apply; acknowledge this step, or apply the earlier steps first.",
                        acknowledge=True)]
    source = state.source(own_rows=True)
    outer = sql.Identifier(source.alias)
    other = sql.Identifier("erd_other")
    conflict = sql.SQL(" AND ").join(
        sql.SQL("{}.{} {} {}.{}").format(other, sql.Identifier(e.column), sql.SQL(e.operator), outer,
                                         sql.Identifier(e.column))
        for e in step.elements)
    where = sql.SQL(" WHERE ({}) IS TRUE").format(sql.SQL(step.where)) if step.where else sql.SQL("")
    predicate = sql.SQL("EXISTS (SELECT 1 FROM (SELECT ctid AS erd_ctid, * FROM {rel}{where}) AS {other} "
                        "WHERE {other}.erd_ctid <> {outer}.ctid AND {conflict})").format(
        rel=source.relation, where=where, other=other, outer=outer, conflict=conflict)
    if step.where:
        predicate = sql.SQL("({}) IS TRUE AND {}").format(sql.SQL(step.where), predicate)
    return [Check(
        check_id=EXCLUSION_PRECHECK, step=index, step_summary=step.summary(), target=step.target(),
        probe=RowsProbe(source=source, predicate=predicate),
        fail=f"{{violations}} of {{totalRows}} rows of {state.label} conflict with another row under EXCLUDE "
        f"({shown}); the step would fail. Correct or delete the conflicting rows first.",
        ok=f"no two rows of {state.label} conflict under EXCLUDE ({shown}) ({{totalRows}} rows).",
        notes=state.history_notes(),
    )]
