"""Data statements of the plan, and type changes, checked against every constraint the table has at that point.

A single-table ``UPDATE t SET col = expr [WHERE cond]`` is simulated (``PlanContext``): its rows become a derived
relation. PostgreSQL checks every constraint of the table on the rows it changes, the ones that were there before
the plan as well as the ones the plan added, so the same is asked here, of the same rows:

- NOT NULL, CHECK (NOT VALID ones too: PostgreSQL enforces them on new row versions) and the table's foreign keys
  on the rows the UPDATE changes (a relation of just those rows, so the cost follows the rows changed when the
  WHERE can use an index);
- a varchar(n) / char(n) value longer than n (assignment fails where an explicit cast would truncate);
- UNIQUE and PRIMARY KEY on the table as the UPDATE leaves it;
- the foreign keys of other tables that reference a key the UPDATE changes: NO ACTION after the statement,
  RESTRICT for every changed key that is still referenced.

A single-table ``DELETE FROM t [WHERE cond]`` is simulated too (the rows kept are those cond is not true for); the
foreign keys that reference the table are checked on the rows it removes (NO ACTION / RESTRICT: still referenced;
SET NULL into a NOT NULL column).

An ``ALTER COLUMN TYPE`` rebuilds the indexes and re-adds the validated constraints that use the column, on the
converted values: unique keys, CHECKs and foreign keys (both ways) are checked again on them (``round(price)`` can
make duplicates, ``pid + 1000`` orphans).

What preflight cannot run is named for a person to acknowledge: triggers and rules the UPDATE fires, a partial
or expression unique index, an exclusion constraint, a foreign key that sets the referencing rows to NULL or
their default.
"""

from __future__ import annotations

from psycopg import sql

from ..report.contract import TargetRef
from ..plan import Step, display_name
from .expressions import cast_to, mentions, too_long
from .model import (
    CAST_PRECHECK,
    CHECK_CONSTRAINT_PRECHECK,
    FK_VIOLATIONS_PRECHECK,
    NOT_NULL_PRECHECK,
    UNMODELLED_SQL_WARNING,
    Check,
    DuplicatesProbe,
    RowsProbe,
    Source,
    null_datum,
)
from .row_rules import (
    touched, unverifiable, checks_of, foreign_keys_of, orphans_after, referenced_key, row_rules, unique_checks,
)
from .state import InsertLayer, PlanContext, TableState, UpdateLayer


def _changed_rows(state: TableState, index: int, layer: UpdateLayer) -> Source:
    """The rows the UPDATE of step ``index`` changes, with their new values (and no other row)."""
    items = [sql.SQL("{} AS {}").format(cast_to(sql.SQL(layer.values[name]), kind), sql.Identifier(name))
             if name in layer.values else sql.Identifier(layer.alias, name)
             for name, kind in layer.types.items()]
    where = sql.SQL(" WHERE ({})").format(sql.SQL(layer.where)) if layer.where else sql.SQL("")
    relation: sql.Composable = sql.SQL("(SELECT {} FROM {} AS {}{})").format(
        sql.SQL(", ").join(items), layer.before.relation, sql.Identifier(layer.alias), where)
    if layer.regenerated:  # stored generated columns, computed again from the row as written
        again = dict(layer.regenerated)
        relation = sql.SQL("(SELECT {} FROM {} AS erd_written)").format(sql.SQL(", ").join(
            sql.SQL("{} AS {}").format(sql.SQL(again[name]), sql.Identifier(name)) if name in again
            else sql.Identifier(name) for name in layer.types), relation)
    screened = [f"SELECT {value}" for value in layer.values.values()] + ([f"SELECT {layer.where}"] if layer.where else [])
    screened += [f"SELECT {value}" for _, value in layer.regenerated]
    return Source(key=f"{state.schema}.{state.name}@update{index}", relation=relation, alias=state.name,
                  columns=tuple(layer.types.items()), derived=True,
                  expressions=(*layer.before.expressions, *screened))


def _set_off(context: PlanContext, index: int, step: Step, state: TableState, verb: str) -> list[Check]:
    """The triggers and rules a data statement sets off on the table: preflight does not run them, a person
    reviews them."""
    assert state.info is not None
    # as the rehearsal's catalog has the table when the step runs: with the triggers and rules the plan made on it
    snapshot = context.rehearsal.before.get(index) if context.rehearsal else None
    relation = snapshot.resolve(state.schema, state.name) if snapshot is not None else None
    if relation is not None:
        actions = list(relation.acting)
    elif not state.info.oid or context.makes_actions_before(index):
        where = "the rehearsal did not reach this step" if context.rehearsal else "without the rehearsal"
        return [unverifiable(index, step, state, f"the {verb} may set off triggers or rules the plan makes before "
                              f"it, which preflight cannot see ({where})")]
    else:
        actions = context.catalog.actions(state.info.oid)
    return [unverifiable(index, step, state, f"the {verb} sets off {', '.join(actions)}, which preflight does not "
                          "run")] if actions else []


def update_checks(context: PlanContext, index: int, step: Step, state: TableState) -> list[Check]:
    """Every constraint of the table, checked on what the simulated UPDATE of step ``index`` writes."""
    layer = state.updates[index]
    assert state.info is not None
    assigned = set(layer.values)
    changed = _changed_rows(state, index, layer)
    summary = step.summary()
    checks: list[Check] = []
    checks += _set_off(context, index, step, state, "UPDATE")

    def rows(check_id: str, predicate: sql.Composable, target: TargetRef, fail: str, ok: str,
             source: Source = changed) -> None:
        checks.append(Check(check_id=check_id, step=index, step_summary=summary, target=target,
                            probe=RowsProbe(source=source, predicate=predicate), fail=fail, ok=ok,
                            notes=state.history_notes()))

    for column in sorted(assigned):
        kind = layer.types[column]
        target = TargetRef(kind="column", schema=state.schema, table=state.name, columns=(column,))
        refused = too_long(sql.Identifier(layer.alias, f"erd_written_{column}"), kind)
        if refused is not None:
            # Assignment refuses a value longer than n (trailing spaces aside), where CAST would cut it.
            rows(CAST_PRECHECK, refused, target,
                f"{{violations}} of the {{totalRows}} rows step {index} changes would get a value longer than {kind} allows in "
                f"{state.column_label(column)}; the UPDATE would fail (value too long). Shorten the values first.",
                f"every value step {index} writes fits {kind} in {state.column_label(column)} ({{totalRows}} rows).",
                source=touched(layer, state, index))
        if column in state.not_null:
            rows(NOT_NULL_PRECHECK, null_datum(sql.Identifier(column)), target,
                 f"{{violations}} of the {{totalRows}} rows step {index} changes would get NULL in NOT NULL column "
                 f"{state.column_label(column)}; the UPDATE would fail. Change the expression or its WHERE.",
                 f"no row step {index} changes gets NULL in {state.column_label(column)} ({{totalRows}} rows).")

    if assigned:
        # Each value is computed and converted to its column's type on every row changed: an expression that
        # raises there (invalid JSON, a division by zero) fails the UPDATE, and this check with PostgreSQL's error.
        rows(CAST_PRECHECK, sql.SQL("num_nulls({}) < 0").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in sorted(assigned))),
            TargetRef(kind="column", schema=state.schema, table=state.name, columns=tuple(sorted(assigned))),
            f"step {index} could not compute the values it writes", f"every value step {index} writes is computed "
            "and converted to its column's type without error ({totalRows} rows).")

    for column in layer.recomputed:  # a stored generated column computed again may become NULL
        if column in state.not_null:
            rows(NOT_NULL_PRECHECK, null_datum(sql.Identifier(column)),
                 TargetRef(kind="column", schema=state.schema, table=state.name, columns=(column,)),
                 f"{{violations}} of the {{totalRows}} rows step {index} changes would compute NULL in the generated "
                 f"NOT NULL column {state.column_label(column)}; the UPDATE would fail.",
                 f"no row step {index} changes computes NULL in {state.column_label(column)} ({{totalRows}} rows).",
                 source=state.source())
    if layer.recomputed:
        # the generated columns PostgreSQL computes again, on the rows as the UPDATE leaves them
        rows(CAST_PRECHECK, sql.SQL("num_nulls({}) < 0").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in layer.recomputed)),
            TargetRef(kind="column", schema=state.schema, table=state.name, columns=layer.recomputed),
            f"step {index} could not compute the generated columns again",
            f"the generated columns step {index} changes are computed again without error ({{totalRows}} rows).",
            source=state.source())

    # what the UPDATE writes: the columns it sets, and the stored generated columns computed again from them
    written = assigned | set(layer.recomputed)
    checks += row_rules(context, index, step, state, changed, writes=written, verb="changes",
                         fails="the UPDATE would fail. Change the expression or its WHERE",
                         fk_fails="the UPDATE would fail on the foreign key")

    if layer.joined is not None:
        checks.append(Check(
            check_id=UNMODELLED_SQL_WARNING, step=index, step_summary=summary,
            target=TargetRef(kind="table", schema=state.schema, table=state.name),
            probe=RowsProbe(source=touched(layer, state, index), predicate=sql.SQL(layer.joined)),
            failure="warning", acknowledge=True,
            fail=f"{{violations}} of the {{totalRows}} rows of {state.label} that step {index} updates match more than "
            "one row of its FROM items; PostgreSQL updates each with one of them, and which one it does not say, so "
            "the values checked here may not be the ones written. Acknowledge this step once you have reviewed it, "
            "or make the join match one row.",
            ok=f"each row step {index} updates matches one row of its FROM items ({{totalRows}} rows).",
            notes=state.history_notes()))
    checks.extend(unique_checks(context, index, step, state, written, f"the UPDATE of step {index}",
                                 "the UPDATE would fail on the unique key", layer=layer))
    for key in context.references_to(state, index):
        if written & set(key.ref_columns):
            checks.extend(referenced_key(context, index, step, state, layer, key))
    return checks


def type_change_checks(context: PlanContext, index: int, step: Step, state: TableState) -> list[Check]:
    """The constraints PostgreSQL checks again after ``ALTER COLUMN ... TYPE`` converted a column's values."""
    assert state.info is not None
    column = state.retyped[index]
    label = state.column_label(column)
    checks: list[Check] = []
    source = state.source()
    summary = step.summary()
    checks += unique_checks(context, index, step, state, {column}, f"the type change of {label}",
                             "rebuilding the unique index fails. Change the USING expression, or dedupe first")
    # PostgreSQL re-adds (and checks) the constraints that use the column, and rebuilds its indexes
    for name, expression in [(n, e) for n, e in checks_of(state, validated_only=True) if mentions(e, column)]:
        shown = f"CHECK ({expression})" + (f" ({display_name(name)})" if name else "")
        checks.append(Check(
            check_id=CHECK_CONSTRAINT_PRECHECK, step=index, step_summary=summary,
            target=TargetRef(kind="constraint", schema=state.schema, table=state.name, name=name),
            probe=RowsProbe(source=source, predicate=sql.SQL("({}) IS FALSE").format(sql.SQL(expression))),
            fail=f"after the type change of {label}, {{violations}} of {{totalRows}} rows break {shown}; the step "
            "would fail when PostgreSQL checks it again.",
            ok=f"every row satisfies {shown} after the type change of {label} ({{totalRows}} rows).",
            notes=state.history_notes()))
    for columns, ref_schema, ref_table, ref_columns, match_full in foreign_keys_of(state, validated_only=True):
        if column not in columns:
            continue
        parent = context.state(ref_schema, ref_table)
        if parent is None or parent.info is None:
            continue
        checks.append(orphans_after(index, summary, label, state, state.source(own_rows=True), columns, parent,
                                     parent.source(own_rows=True), ref_columns, match_full))
    for key in context.catalog.referencing(state.info.oid):
        if column in key.ref_columns:
            child = state if (key.schema, key.table) == (state.schema, state.name) \
                else context.state(key.schema, key.table)
            if child is not None and child.info is not None:
                checks.append(orphans_after(index, summary, label, child, child.source(own_rows=True), key.columns,
                                             state, state.source(own_rows=True), key.ref_columns, key.match_full))
    return checks


def delete_checks(context: PlanContext, index: int, step: Step, state: TableState) -> list[Check]:
    """The foreign keys that reference the table, checked on the rows the simulated DELETE of step ``index``
    removes; what the DELETE sets off is named."""
    assert state.info is not None
    layer = state.deletes[index]
    checks: list[Check] = []
    checks += _set_off(context, index, step, state, "DELETE")
    removed = touched(layer, state, index)
    for key in context.references_to(state, index):
        child = state if (key.schema, key.table) == (state.schema, state.name) else context.state(key.schema, key.table)
        shown = f"{display_name(key.schema, key.table)}.{display_name(key.name)}"
        if child is None or (child.info is None and child.inserted_by):
            checks.append(unverifiable(index, step, state, f"the DELETE removes rows that foreign key {shown} may "
                                        "reference, in rows preflight cannot read"))
            continue
        if child.info is None:
            continue  # a table the plan creates, empty: nothing references the removed rows
        if key.on_delete == "c":
            if index in child.deletes and child is not state:
                continue  # simulated as a DELETE of its own at this step (PlanContext._cascade), checked alike
            further = [k for k in context.references_to(child, index) if k.on_delete != "c"]
            if further:
                checks.append(unverifiable(index, step, state, f"the DELETE cascades through {shown} to rows that "
                                            f"{', '.join(k.name for k in further)} may reference"))
            continue
        if key.on_delete == "d" or (key.on_delete == "r" and child is state):
            checks.append(unverifiable(index, step, state, f"the DELETE removes rows that foreign key {shown} "
                                        "references (ON DELETE SET DEFAULT, or RESTRICT on the table itself)"))
            continue
        if key.on_delete == "n" and not set(key.columns) & child.not_null:
            continue  # SET NULL into nullable columns always works
        # NO ACTION (checked when the statement ends: the rows kept are what may still reference), RESTRICT, or
        # SET NULL into a NOT NULL column: a removed row that a referencing row points to fails the DELETE.
        referencing = (child if child is not state or key.on_delete == "r" else state).source(own_rows=True).relation
        match = sql.SQL(" AND ").join(sql.SQL("{} = {}").format(sql.Identifier("erd_child", c),
                                                                sql.Identifier(layer.alias, r))
                                      for c, r in zip(key.columns, key.ref_columns))
        predicate = sql.SQL("EXISTS (SELECT 1 FROM {} AS erd_child WHERE {})").format(referencing, match)
        action = {"a": "NO ACTION", "r": "RESTRICT", "n": "SET NULL into a NOT NULL column"}[key.on_delete]
        checks.append(Check(
            check_id=FK_VIOLATIONS_PRECHECK, step=index, step_summary=step.summary(),
            target=TargetRef(kind="relationship", schema=key.schema, table=key.table, columns=key.columns,
                             ref_schema=state.schema, ref_table=state.name, ref_columns=key.ref_columns),
            probe=RowsProbe(source=removed, predicate=predicate),
            fail=f"{{violations}} of the {{totalRows}} rows step {index} deletes from {state.label} are still referenced by rows of "
            f"{child.label} ({shown}, ON DELETE {action}); the DELETE would fail. Delete or re-point those rows "
            "first.",
            ok=f"none of the {{totalRows}} rows step {index} deletes from {state.label} is referenced by {child.label}.",
            notes=state.history_notes()))
    return checks


def insert_checks(context: PlanContext, index: int, step: Step, state: TableState) -> list[Check]:
    """Every constraint of the table, checked on the rows the simulated INSERT of step ``index`` adds: each value
    converts to its column (and fits its length), NOT NULL, CHECK (NOT VALID too) and the foreign keys on the new
    rows; UNIQUE and PRIMARY KEY on the table with them."""
    layer = state.inserts[index]
    assert state.info is not None
    summary = step.summary()
    checks: list[Check] = []
    checks += _set_off(context, index, step, state, "INSERT")

    def rows(check_id: str, source: Source, predicate: sql.Composable, target: TargetRef, fail: str, ok: str) -> None:
        checks.append(Check(check_id=check_id, step=index, step_summary=summary, target=target,
                            probe=RowsProbe(source=source, predicate=predicate), fail=fail, ok=ok,
                            notes=state.history_notes()))

    table = TargetRef(kind="table", schema=state.schema, table=state.name)
    rows(CAST_PRECHECK, layer.stored, sql.SQL("num_nulls({}) < 0").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in layer.types)), table,
        f"step {index} could not compute the rows it inserts",
        f"every row step {index} inserts is computed and converted to the table's types without error "
        "({totalRows} rows).")
    for written, _ in layer.written.columns:
        column = written.removeprefix("erd_written_")
        kind = layer.types[column]
        refused = too_long(sql.Identifier(written), kind)
        if refused is not None:
            rows(CAST_PRECHECK, layer.written, refused,
                 TargetRef(kind="column", schema=state.schema, table=state.name, columns=(column,)),
                 f"{{violations}} of the {{totalRows}} rows step {index} inserts have a value longer than {kind} "
                 f"allows in {state.column_label(column)}; the INSERT would fail (value too long).",
                 f"every value step {index} inserts fits {kind} in {state.column_label(column)} ({{totalRows}} rows).")
    for column in sorted(state.not_null & set(layer.types)):
        rows(NOT_NULL_PRECHECK, layer.stored, null_datum(sql.Identifier(column)),
             TargetRef(kind="column", schema=state.schema, table=state.name, columns=(column,)),
             f"{{violations}} of the {{totalRows}} rows step {index} inserts have NULL in NOT NULL column "
             f"{state.column_label(column)}; the INSERT would fail.",
             f"no row step {index} inserts has NULL in {state.column_label(column)} ({{totalRows}} rows).")
    checks += row_rules(context, index, step, state, layer.stored, writes=set(layer.types), verb="inserts",
                         fails="the INSERT would fail", fk_fails="the INSERT would fail on the foreign key",
                         fk_rows=layer.rows)
    unique = unique_checks(context, index, step, state, set(layer.types), f"the INSERT of step {index}",
                            "the INSERT would fail on the unique key")
    checks.extend(_new_keys(index, step, state, layer, c)
                  if isinstance(c.probe, DuplicatesProbe) and set(c.probe.columns) <= set(layer.types) else c
                  for c in unique)
    return checks


def _new_keys(index: int, step: Step, state: TableState, layer: InsertLayer, check: Check) -> Check:
    """The rows already there hold each unique key once (PostgreSQL's index says so): after the INSERT, a key
    occurs twice only where a new row has it, as an old row (found through the key's index) or another new row.
    Read that way, the check costs what the INSERT adds, not the table."""
    probe = check.probe
    assert isinstance(probe, DuplicatesProbe)
    columns = probe.columns
    keys = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    same = sql.SQL(" AND ").join(
        sql.SQL("erd_old.{c} {op} {n}.{c}").format(c=sql.Identifier(c), n=sql.Identifier(layer.rows.alias),
                                                   op=sql.SQL("IS NOT DISTINCT FROM" if probe.nulls_not_distinct
                                                              else "="))
        for c in columns)
    counted = Source(
        key=f"{layer.rows.key}@keys{'-'.join(columns)}", alias=layer.rows.alias, derived=True,
        columns=(*layer.rows.columns, ("erd_same", "bigint")), expressions=layer.rows.expressions,
        relation=sql.SQL("(SELECT *, count(*) OVER (PARTITION BY {}) AS erd_same FROM {} AS erd_new)").format(
            keys, layer.rows.relation))
    compared = sql.SQL("true") if probe.nulls_not_distinct else sql.SQL("NOT ({})").format(
        sql.SQL(" OR ").join(null_datum(sql.Identifier(c)) for c in columns))
    predicate = sql.SQL("({compared}) AND (erd_same > 1 OR EXISTS (SELECT 1 FROM {before} AS erd_old WHERE {same}))"
                        ).format(compared=compared, before=layer.before.relation, same=same)
    cols = ", ".join(display_name(c) for c in columns)
    return Check(check_id=check.check_id, step=index, step_summary=step.summary(), target=check.target,
                 probe=RowsProbe(source=counted, predicate=predicate),
                 fail=f"{{violations}} of the {{totalRows}} rows step {index} inserts have a ({cols}) that another row "
                 f"of {state.label} has too; the INSERT would fail on the unique key. Change those rows first.",
                 ok=f"every ({cols}) step {index} inserts is new to {state.label} ({{totalRows}} rows).",
                 notes=check.notes)
