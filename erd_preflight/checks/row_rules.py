"""The constraints a data statement's rows must keep, as SQL over those rows: NOT NULL, CHECK, varchar length, the
table's foreign keys, its unique keys (plain, partial or on expressions, as PostgreSQL's catalog defines them at the
step), and the foreign keys of other tables that reference a key the statement changes or removes. ``dml`` asks
them of an UPDATE's, INSERT's or DELETE's rows, and of a type change's converted values."""

from __future__ import annotations

import pglast
from pglast import ast
from psycopg import sql

from ..catalog import IndexInfo, ReferencingKey
from ..report.contract import TargetRef
from ..plan import AddCheck, AddForeignKey, AddUnique, CreateIndex, Step, display_name
from .expressions import cast_to, index_columns, index_keys, renamed_keys
from .model import (
    CHECK_CONSTRAINT_PRECHECK,
    FK_VIOLATIONS_PRECHECK,
    UNIQUE_PRECHECK,
    UNMODELLED_SQL_WARNING,
    Check,
    DuplicatesProbe,
    OrphansProbe,
    RowsProbe,
    Source,
    verdict,
)
from .state import PlanContext, TableState, UpdateLayer


def touched(layer: UpdateLayer, state: TableState, index: int) -> Source:
    """The rows the statement of step ``index`` touches (its WHERE is true) as they were, each value it writes
    beside them (``erd_written_<column>``, as written: no cast), under the name its expressions use. Reading only
    these rows, a check costs what the statement changes, when its WHERE can use an index."""
    written = [sql.SQL("{} AS {}").format(sql.SQL(value), sql.Identifier(f"erd_written_{column}"))
               for column, value in layer.values.items()]
    relation = sql.SQL("(SELECT {} FROM {} AS {} WHERE ({}))").format(  # a bare WHERE, which an index can serve
        sql.SQL(", ").join([sql.SQL("{}.*").format(sql.Identifier(layer.alias)), *written]), layer.before.relation,
        sql.Identifier(layer.alias), sql.SQL(layer.where or "true"))
    screened = [f"SELECT {value}" for value in layer.values.values()] + ([f"SELECT {layer.where}"] if layer.where else [])
    return Source(key=f"{state.schema}.{state.name}@touched{index}", relation=relation, alias=layer.alias,
                  columns=layer.before.columns, derived=True, expressions=(*layer.before.expressions, *screened))


def value_written(layer: UpdateLayer, column: str) -> sql.Composable:
    """In ``touched``: the value the statement writes to ``column``, as the column's type, or the old one."""
    if column in layer.values:
        return cast_to(sql.Identifier(layer.alias, f"erd_written_{column}"), layer.types[column])
    return sql.Identifier(layer.alias, column)


def unverifiable(index: int, step: Step, state: TableState, what: str) -> Check:
    return verdict(UNMODELLED_SQL_WARNING, index, step, "warning",
                   f"cannot verify step {index} before apply: {what} on {state.label}. PostgreSQL checks it at "
                   "apply; acknowledge this step once you have reviewed it.", acknowledge=True)


def row_rules(context: PlanContext, index: int, step: Step, state: TableState, rows: Source, *, writes: set[str],
               verb: str, fails: str, fk_fails: str, fk_rows: Source | None = None) -> list[Check]:
    """The CHECK constraints (NOT VALID ones too: PostgreSQL enforces them on new row versions) and the foreign keys
    over the ``writes`` columns of the table, on the ``rows`` step ``index`` writes (it ``verb`` them); the
    foreign keys on ``fk_rows`` when only those are written (an INSERT that skips its conflicting rows)."""
    summary = step.summary()
    checks: list[Check] = []
    for name, expression in checks_of(state):
        shown = f"CHECK ({expression})" + (f" ({display_name(name)})" if name else "")
        checks.append(Check(
            check_id=CHECK_CONSTRAINT_PRECHECK, step=index, step_summary=summary,
            target=TargetRef(kind="constraint", schema=state.schema, table=state.name, name=name),
            probe=RowsProbe(source=rows, predicate=sql.SQL("({}) IS FALSE").format(sql.SQL(expression))),
            fail=f"{{violations}} of the {{totalRows}} rows step {index} {verb} would break {shown}; {fails}.",
            ok=f"every row step {index} {verb} satisfies {shown} ({{totalRows}} rows).", notes=state.history_notes()))
    for columns, ref_schema, ref_table, ref_columns, match_full in foreign_keys_of(state):
        if not writes & set(columns):
            continue
        parent = context.state(ref_schema, ref_table)
        if parent is None or parent.info is None:
            checks.append(unverifiable(index, step, state, f"step {index} writes ({', '.join(columns)}), whose "
                                        f"foreign key references {display_name(ref_schema, ref_table)}, a table "
                                        "preflight cannot read here"))
            continue
        cols, refs = ", ".join(display_name(c) for c in columns), ", ".join(display_name(c) for c in ref_columns)
        checks.append(Check(
            check_id=FK_VIOLATIONS_PRECHECK, step=index, step_summary=summary,
            target=TargetRef(kind="relationship", schema=state.schema, table=state.name, columns=columns,
                             ref_schema=parent.schema, ref_table=parent.name, ref_columns=ref_columns),
            probe=OrphansProbe(child=fk_rows or rows, columns=columns, parent=parent.source(own_rows=True),
                               ref_columns=ref_columns, match_full=match_full),
            fail=f"{{violations}} of the {{totalRows}} rows step {index} {verb} would get a ({cols}) with no "
            f"matching {parent.label}({refs}); {fk_fails}.",
            ok=f"every ({cols}) step {index} writes has a matching {parent.label}({refs}) ({{totalRows}} rows).",
            notes=state.history_notes() + parent.history_notes()))
    return checks


def unique_keys(state: TableState, assigned: set[str], immediate_only: bool = False) -> dict[tuple[str, ...], bool]:
    """The plain unique keys (columns -> NULLS NOT DISTINCT) the assigned columns are part of (``immediate_only``:
    the ones PostgreSQL checks row by row, not a DEFERRABLE constraint's)."""
    assert state.info is not None
    keys: dict[tuple[str, ...], bool] = {}
    for ix in state.info.indexes.values():
        if ix.unique and ix.valid and not ix.expressions and not ix.partial and assigned & set(ix.columns) \
                and (ix.immediate or not immediate_only):
            keys[ix.columns] = keys.get(ix.columns, False) or ix.nulls_not_distinct
    for s in state.enforced:  # the plan's modelled keys, never DEFERRABLE (the parser leaves those to PostgreSQL)
        if isinstance(s, (AddUnique, CreateIndex)) and assigned & set(s.columns):
            if isinstance(s, CreateIndex) and (not s.unique or s.where):
                continue
            nnd = s.nulls_not_distinct or (isinstance(s, AddUnique) and s.primary_key)
            keys[s.columns] = keys.get(s.columns, False) or nnd
    return keys


def order_dependent(index: int, step: Step, state: TableState, layer: UpdateLayer, *, reads: set[str],
                     new: tuple[list[str], str | None], old: tuple[list[str], str | None], nnd: bool,
                     target: TargetRef, shown: str, remedy: str) -> Check:
    """A unique key is checked row by row as the UPDATE goes: a row that takes a key another changed row still has
    (``SET id = id + 1``, or a stored generated column computed again from what it sets) fails or not depending on
    the order PostgreSQL visits the rows in. Preflight cannot know that order, so such rows are named for a person to
    acknowledge. ``new`` and ``old`` are the key (and the partial index's WHERE) over the row as written and over
    its columns as they were (``reads``, named ``erd_was_<column>``)."""
    regenerated = dict(layer.regenerated)
    equal = "IS NOT DISTINCT FROM" if nnd else "="
    where = sql.SQL(" WHERE ({})").format(sql.SQL(layer.where)) if layer.where else sql.SQL("")
    # each changed row as the UPDATE writes it (every column under its own name, so a generated column's
    # expression reads the new values), beside the columns the key reads as they were
    written = sql.SQL("(SELECT {}, {} FROM {} AS {}{})").format(
        sql.SQL(", ").join(sql.SQL("{} AS {}").format(
            cast_to(sql.SQL(layer.values[name]), kind) if name in layer.values else sql.Identifier(layer.alias, name),
            sql.Identifier(name)) for name, kind in layer.types.items()),
        sql.SQL(", ").join(sql.SQL("{} AS {}").format(sql.Identifier(layer.alias, c), sql.Identifier(f"erd_was_{c}"))
                           for c in sorted(reads)),
        layer.before.relation, sql.Identifier(layer.alias), where)
    # the row as stored: a generated column computed again from the written row, any other column as written
    row = sql.SQL("(SELECT {}, {} FROM {} AS erd_written)").format(
        sql.SQL(", ").join(sql.SQL("{} AS {}").format(
            sql.SQL(regenerated[c]) if c in regenerated else sql.Identifier("erd_written", c), sql.Identifier(c))
            for c in layer.types),
        sql.SQL(", ").join(sql.Identifier("erd_written", f"erd_was_{c}") for c in sorted(reads)), written)
    (new_keys, new_cover), (old_keys, old_cover) = new, old
    names = [f"erd_key_{i}" for i in range(1, len(new_keys) + 1)]
    relation = sql.SQL("(SELECT {}, {}, {} AS erd_new_in, {} AS erd_was_in FROM {} AS erd_row)").format(
        sql.SQL(", ").join(sql.SQL("{} AS {}").format(sql.SQL(k), sql.Identifier(f"erd_new_{n}"))
                           for k, n in zip(new_keys, names)),
        sql.SQL(", ").join(sql.SQL("{} AS {}").format(sql.SQL(k), sql.Identifier(f"erd_was_{n}"))
                           for k, n in zip(old_keys, names)),
        sql.SQL("coalesce(({}), false)").format(sql.SQL(new_cover)) if new_cover else sql.SQL("true"),
        sql.SQL("coalesce(({}), false)").format(sql.SQL(old_cover)) if old_cover else sql.SQL("true"), row)
    changed = Source(key=f"{state.schema}.{state.name}@keys{index}:{shown}", relation=relation, alias="erd_changed",
                     columns=tuple((f"erd_{side}_{n}", "") for side in ("new", "was") for n in names),
                     derived=True, expressions=(*layer.before.expressions,
                                                *(f"SELECT {v}" for v in layer.values.values()),
                                                *([f"SELECT {layer.where}"] if layer.where else []),
                                                *(f"SELECT {k}" for k in (*new_keys, *old_keys)),
                                                *(f"SELECT {c}" for c in (new_cover, old_cover) if c),
                                                *(f"SELECT {regenerated[c]}" for c in regenerated)))

    def key(alias: str, side: str) -> sql.Composable:
        return sql.SQL(", ").join(sql.Identifier(alias, f"erd_{side}_{n}") for n in names)

    taken = sql.SQL(" AND ").join(sql.SQL("{} {} {}").format(
        sql.Identifier("erd_other", f"erd_was_{n}"), sql.SQL(equal), sql.Identifier("erd_changed", f"erd_new_{n}"))
        for n in names)
    predicate = sql.SQL("erd_changed.erd_new_in AND NOT (erd_changed.erd_was_in AND ROW({}) IS NOT DISTINCT FROM "
                        "ROW({})) AND EXISTS (SELECT 1 FROM {} AS erd_other WHERE erd_other.erd_was_in AND {})").format(
        key("erd_changed", "new"), key("erd_changed", "was"), relation, taken)
    return Check(
        check_id=UNIQUE_PRECHECK, step=index, step_summary=step.summary(), target=target,
        probe=RowsProbe(source=changed, predicate=predicate), failure="warning", acknowledge=True,
        fail=f"cannot verify step {index} before apply: {{violations:row|rows}} it changes {{violations:~takes|take}} "
        f"a {shown} that another row it changes has until then; PostgreSQL checks the key row by row, so the UPDATE "
        f"fails or not depending on the order it visits the rows in. Acknowledge this step, or {remedy}.",
        ok=f"no row step {index} changes takes a {shown} another changed row still has ({{totalRows}} rows).",
        notes=state.history_notes())


def plain_order(index: int, step: Step, state: TableState, layer: UpdateLayer, columns: tuple[str, ...],
                nnd: bool) -> Check:
    """``order_dependent`` for a unique key on plain columns."""
    keys = [sql.Identifier(c).as_string() for c in columns]
    was = [sql.Identifier(f"erd_was_{c}").as_string() for c in columns]
    return order_dependent(
        index, step, state, layer, reads=set(columns), new=(keys, None), old=(was, None), nnd=nnd,
        target=TargetRef(kind="column", schema=state.schema, table=state.name, columns=columns),
        shown=f"({', '.join(display_name(c) for c in columns)})",
        remedy="make the key constraint DEFERRABLE, or update in two passes")


def checks_of(state: TableState, validated_only: bool = False) -> list[tuple[str | None, str]]:
    """The CHECK constraints of the table at this step: the ones it had (NOT VALID too, unless ``validated_only``),
    the plan's."""
    assert state.info is not None
    found: list[tuple[str | None, str]] = [
        (c.name, c.check_expression) for c in state.info.constraints.values()
        if c.type == "c" and c.check_expression and c.name in state.constraint_names
        and (c.validated or not validated_only)]
    found += [(s.name, s.expression) for s in state.enforced
              if isinstance(s, AddCheck) and (s.name is None or s.name in state.constraint_names)
              and not (validated_only and s.not_valid)]
    return found


def foreign_keys_of(state: TableState, validated_only: bool = False
                     ) -> list[tuple[tuple[str, ...], str | None, str, tuple[str, ...], bool]]:
    assert state.info is not None
    found = [(c.columns, c.ref_schema, c.ref_table or "", c.ref_columns, c.match_full)
             for c in state.info.constraints.values() if c.type == "f" and c.name in state.constraint_names
             and (c.validated or not validated_only)]
    found += [(s.columns, s.ref_schema, s.ref_table, s.ref_columns, s.match_full) for s in state.enforced
              if isinstance(s, AddForeignKey) and (s.name is None or s.name in state.constraint_names)
              and not (validated_only and s.not_valid)]
    return found


def unique_checks(context: PlanContext, index: int, step: Step, state: TableState, changed: set[str], after: str,
                   fails: str, layer: UpdateLayer | None = None) -> list[Check]:
    """The table's unique keys that use a ``changed`` column, checked on the table as the step leaves it (``after``
    says what changed the values, ``fails`` what fails then). With the rehearsal, the unique indexes are those
    PostgreSQL's catalog has at the step (the plan's own raw ones too, not the ones it dropped), an expression or
    partial one computed on the new values; the ones preflight cannot compute here (an operator class or a
    collation, a table the plan made) are named for acknowledgement. For an UPDATE (its ``layer``), each key
    PostgreSQL checks row by row is also checked for rows that take a key another changed row still has."""
    assert state.info is not None
    snapshot = context.rehearsal.before.get(index) if context.rehearsal else None
    relation = snapshot.resolve(state.schema, state.name) if snapshot else None
    unsure: list[str] = []
    checks: list[Check] = []
    source = state.source(own_rows=True)  # a unique index of an inheritance parent covers its own rows
    if relation is None:
        keys = unique_keys(state, changed)
        immediate = unique_keys(state, changed, immediate_only=True)
        for ix in state.info.indexes.values():
            if ix.unique and ix.valid and ix.expressions:
                unsure.append(f"expression unique index {display_name(ix.name)}")
            elif ix.unique and ix.valid and ix.partial and changed & set(ix.columns):
                unsure.append(f"partial unique index {display_name(ix.name)}")
        unsure += ["the partial unique index of an earlier step" for s in state.enforced
                   if isinstance(s, CreateIndex) and s.unique and s.where and changed & set(s.columns)]
    else:
        keys, immediate = {}, {}
        for ix in relation.indexes:
            if not (ix.unique and ix.valid):
                continue
            if not ix.expressions and not ix.partial:
                if changed & set(ix.columns):
                    keys[ix.columns] = keys.get(ix.columns, False) or ix.nulls_not_distinct
                    if ix.immediate:
                        immediate[ix.columns] = immediate.get(ix.columns, False) or ix.nulls_not_distinct
                continue
            computed = computed_key(index, step, state, source, ix, changed, after, fails)
            if isinstance(computed, str):
                unsure.append(computed)
            elif computed is not None:
                checks.append(computed)
                if layer is not None and ix.immediate:
                    checks.append(computed_order(index, step, state, layer, ix))
    if unsure:
        checks.insert(0, unverifiable(index, step, state, f"{after} changes columns of {', '.join(unsure)}, which "
                                       "preflight does not compute on the new values"))
    for columns, nnd in keys.items():
        cols = ", ".join(display_name(c) for c in columns)
        checks.append(Check(
            check_id=UNIQUE_PRECHECK, step=index, step_summary=step.summary(),
            target=TargetRef(kind="column", schema=state.schema, table=state.name, columns=columns),
            probe=DuplicatesProbe(source=source, columns=columns, nulls_not_distinct=nnd),
            fail=f"after {after}, {{duplicateGroups:value|values}} of ({cols}) would occur more than once in {state.label}, "
            f"in {{violations:row|rows}}; {fails}.",
            ok=f"({cols}) stays unique in {state.label} after {after} ({{totalRows}} rows).",
            notes=state.history_notes()))
    if layer is not None:
        checks += [plain_order(index, step, state, layer, columns, nnd) for columns, nnd in immediate.items()]
    return checks


def computed_order(index: int, step: Step, state: TableState, layer: UpdateLayer, ix: IndexInfo) -> Check:
    """``order_dependent`` for an expression or partial unique index ``computed_key`` computes."""
    (raw,) = pglast.parse_sql(ix.definition or "")
    reads = index_columns(raw.stmt) or set()
    nnd = bool(raw.stmt.nulls_not_distinct)
    return order_dependent(
        index, step, state, layer, reads=reads, new=renamed_keys(ix.definition or ""),
        old=renamed_keys(ix.definition or "", {c: f"erd_was_{c}" for c in reads}), nnd=nnd,
        target=TargetRef(kind="index", schema=state.schema, table=state.name, name=ix.name),
        shown=f"key of unique index {display_name(ix.name)}", remedy="update in two passes")


def computed_key(index: int, step: Step, state: TableState, source: Source, ix: IndexInfo, changed: set[str],
                  after: str, fails: str) -> Check | str | None:
    """An expression or partial unique index, checked on the rows as the step leaves them: its keys computed by its
    own definition (as PostgreSQL's catalog gives it) over the rows its WHERE covers. None when the step changes no
    column it reads; a name for acknowledgement when preflight cannot compute it here."""
    kind = "expression" if ix.expressions else "partial"
    named = f"{kind} unique index {display_name(ix.name)}"
    try:
        (raw,) = pglast.parse_sql(ix.definition or "")
    except (pglast.parser.ParseError, ValueError):
        return named
    stmt = raw.stmt
    if not isinstance(stmt, ast.IndexStmt):
        return named
    columns = index_columns(stmt)
    if columns is not None and not changed & columns:
        return None
    if columns is None or not state.info or not state.info.oid or any(p.opclass or p.collation
                                                                     for p in stmt.indexParams):
        return named  # equality under an operator class or collation; a table the plan made (its functions)
    keyed, names, keys = index_keys(stmt, source, f"unique{index}:{ix.name}")
    shown = ", ".join(keys)
    nnd = bool(stmt.nulls_not_distinct)
    rule = "" if nnd else " (rows with a NULL in the key are not compared, as PostgreSQL does)"
    return Check(
        check_id=UNIQUE_PRECHECK, step=index, step_summary=step.summary(),
        target=TargetRef(kind="index", schema=state.schema, table=state.name, name=ix.name),
        probe=DuplicatesProbe(source=keyed, columns=names, nulls_not_distinct=nnd),
        fail=f"after {after}, {{duplicateGroups:value|values}} of ({shown}) would occur more than once among the rows "
        f"of {state.label} that unique index {display_name(ix.name)} covers, in {{violations:row|rows}}{rule}; {fails}.",
        ok=f"({shown}) stays unique among the rows of {state.label} that {display_name(ix.name)} covers after "
        f"{after} ({{totalRows}} rows){rule}.", notes=state.history_notes())


def referenced_key(context: PlanContext, index: int, step: Step, state: TableState, layer: UpdateLayer,
                    key: ReferencingKey) -> list[Check]:
    """A foreign key of another table (``key``) references columns the UPDATE changes."""
    child = state if (key.schema, key.table) == (state.schema, state.name) else context.state(key.schema, key.table)
    shown = f"{display_name(key.schema, key.table)}.{display_name(key.name)}"
    if key.on_update == "c":
        return []  # ON UPDATE CASCADE: the referencing rows follow
    if child is not None and child.info is None and not child.inserted_by:
        return []  # a table the plan creates, empty: nothing references the changed keys
    if key.on_update in ("n", "d") or child is None or child.info is None:
        return [unverifiable(index, step, state, f"the UPDATE changes a key that foreign key {shown} references "
                              "(ON UPDATE SET NULL / SET DEFAULT, or a table preflight cannot read here)")]
    cols = ", ".join(display_name(c) for c in key.columns)
    target = TargetRef(kind="relationship", schema=key.schema, table=key.table, columns=key.columns,
                       ref_schema=state.schema, ref_table=state.name, ref_columns=key.ref_columns)
    common = dict(check_id=FK_VIOLATIONS_PRECHECK, step=index, step_summary=step.summary(), target=target,
                  notes=state.history_notes())
    if key.on_update == "a":
        # NO ACTION: checked when the statement ends, on the table as the UPDATE leaves it.
        return [Check(probe=OrphansProbe(child=child.source(own_rows=True), columns=key.columns,
                                         parent=state.source(own_rows=True),
                                         ref_columns=key.ref_columns, match_full=key.match_full),
                      fail=f"after step {index}, {{violations:row|rows}} of {child.label} would reference a "
                      f"({cols}) that no row of {state.label} has any more ({shown}); the UPDATE would fail.",
                      ok=f"every row of {child.label} still has its {state.label} row after step {index} "
                      f"({{totalRows}} rows).", **common)]  # type: ignore[arg-type]
    # RESTRICT: a changed key that any row still references fails, whatever other rows hold afterwards.
    old = sql.SQL(", ").join(sql.Identifier(layer.alias, c) for c in key.ref_columns)
    new = sql.SQL(", ").join(value_written(layer, c) for c in key.ref_columns)
    match = sql.SQL(" AND ").join(sql.SQL("{} = {}").format(sql.Identifier("erd_child", c), sql.Identifier(layer.alias, r))
                                  for c, r in zip(key.columns, key.ref_columns))
    predicate = sql.SQL("ROW({}) IS DISTINCT FROM ROW({}) AND EXISTS (SELECT 1 FROM {} AS erd_child WHERE {})").format(
        new, old, child.source(own_rows=True).relation, match)
    return [Check(probe=RowsProbe(source=touched(layer, state, index), predicate=predicate),
                  fail=f"{{violations}} of the {{totalRows}} rows of {state.label} that step {index} changes have a key that rows of "
                  f"{child.label} reference ({shown}, ON UPDATE RESTRICT); the UPDATE would fail.",
                  ok=f"no key step {index} changes is referenced by {child.label} ({{totalRows}} rows).",
                  **common)]  # type: ignore[arg-type]


def orphans_after(index: int, summary: str, label: str, child: TableState, child_source: Source,
                   columns: tuple[str, ...], parent: TableState, parent_source: Source, ref_columns: tuple[str, ...],
                   match_full: bool) -> Check:
    cols, refs = ", ".join(display_name(c) for c in columns), ", ".join(display_name(c) for c in ref_columns)
    return Check(
        check_id=FK_VIOLATIONS_PRECHECK, step=index, step_summary=summary,
        target=TargetRef(kind="relationship", schema=child.schema, table=child.name, columns=columns,
                         ref_schema=parent.schema, ref_table=parent.name, ref_columns=ref_columns),
        probe=OrphansProbe(child=child_source, columns=columns, parent=parent_source, ref_columns=ref_columns,
                           match_full=match_full),
        fail=f"after the type change of {label}, {{violations:row|rows}} of {child.label} {{violations:~has|have}} a ({cols}) with no "
        f"matching {parent.label}({refs}); the foreign key fails when PostgreSQL checks it again.",
        ok=f"every ({cols}) of {child.label} still matches {parent.label}({refs}) after the type change of {label} "
        "({totalRows} rows).",
        notes=child.history_notes() + parent.history_notes())
