"""The apply phases (spec 1.1.04e): a plan compiles into what runs, in which transaction, in which order.

- Phase A: the transactional DDL, in plan order, in ONE transaction: all of it applies or none of it.
- Phase B: ``CREATE INDEX CONCURRENTLY`` / ``DROP INDEX CONCURRENTLY`` (and other statements PostgreSQL refuses
  inside a transaction block), each alone, outside any transaction.
- Phase C: the constraints that come after the indexes, each in its own transaction: a foreign key is added
  ``NOT VALID`` (a brief lock, no scan) and then validated in a transaction of its own (a scan that lets reads
  and writes go on); ``ADD CONSTRAINT … USING INDEX`` turns an index from phase B into a constraint.

Moving a step to a later phase must not change what the plan does: a later step that depends on a moved one
(drops its column, its table, its index...) makes compilation fail with ``PhaseOrderError``.
Nothing here executes SQL; ``apply`` runs what this module compiles.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pglast import ast
from psycopg import sql
from pydantic import BaseModel, ConfigDict

from ..errors import PhaseOrderError
from . import (
    NAMEDATALEN,
    ONLINE_KINDS,
    OnlinePiece,
    add_check_online,
    add_unique_online,
    clip_bytes,
    not_null_check_name,
    not_null_constraint_name,
    set_not_null_online,
    set_not_null_online_18,
    AddCheck,
    AddColumn,
    AddForeignKey,
    AddUnique,
    AddUniqueUsingIndex,
    CreateIndex,
    CreateTable,
    DropConstraint,
    DropIndex,
    DropNotNull,
    MigrationPlan,
    PhaseName,
    RawSQL,
    SetNotNull,
    Step,
    TableStep,
    ValidateConstraint,
    display_name,
    index_name,
    make_object_name,
)
from ..sqlparse import walk_ast

if TYPE_CHECKING:
    import pandas as pd

    from ..catalog import Catalog, ConstraintInfo


PHASE_TITLES: dict[str, str] = {
    "A": "Phase A: transactional DDL, one transaction",
    "B": "Phase B: concurrent index builds and drops, each alone, outside any transaction",
    "C": "Phase C: constraints after the indexes, each in its own transaction",
}



class PhaseStatement(BaseModel):
    """One statement apply runs. Statements with the same ``unit`` share one transaction (phase B: none)."""

    model_config = ConfigDict(frozen=True)

    phase: PhaseName
    unit: int
    step: int
    sql: str
    transactional: bool
    purpose: str
    table: tuple[str | None, str] | None = None
    index: str | None = None  # phase B: the index a concurrent build creates (None: PostgreSQL names it)
    builds_index: bool = False
    online: bool = False  # a piece of a step's online form (``plan.steps.online``)


class ApplyPhases(BaseModel):
    """The compiled plan: every statement apply will run, grouped by phase and transaction."""

    model_config = ConfigDict(frozen=True)

    plan_fingerprint: str
    statements: tuple[PhaseStatement, ...]
    online_steps: tuple[int, ...] = ()  # the steps that run in their online form
    lock_timeout: float | None = None  # seconds, as apply will set them (None: not known yet)
    statement_timeout: float | None = None

    def phase(self, name: PhaseName) -> list[PhaseStatement]:
        return [s for s in self.statements if s.phase == name]

    def units(self) -> list[list[PhaseStatement]]:
        """The statements grouped as they run: one list per transaction (phase B: one list per statement)."""
        groups: list[list[PhaseStatement]] = []
        for statement in self.statements:
            if groups and (groups[-1][0].phase, groups[-1][0].unit) == (statement.phase, statement.unit):
                groups[-1].append(statement)
            else:
                groups.append([statement])
        return groups

    def script(self) -> str:
        """The whole apply as a SQL script, with the transactions and timeouts it uses (for a runbook)."""
        lines: list[str] = []
        current = None
        for group in self.units():
            phase = group[0].phase
            if phase != current:
                lines.append(f"-- {PHASE_TITLES[phase]}")
                if not group[0].transactional:
                    lines.append(self._settings(local=False))
                current = phase
            if group[0].transactional:
                lines.append("BEGIN;")
                lines.append(self._settings(local=True))
            for statement in group:
                lines.append(f"{statement.sql};  -- step {statement.step}: {statement.purpose}")
            if group[0].transactional:
                lines.append("COMMIT;")
        return "\n".join(lines) + "\n"

    def _settings(self, *, local: bool) -> str:
        if self.lock_timeout is None or self.statement_timeout is None:
            scope = "SET LOCAL" if local else "SET"
            return f"-- {scope} lock_timeout and statement_timeout as apply sets them"
        return lock_settings(self.lock_timeout, self.statement_timeout, local=local).as_string() + ";"

    def frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(
            [
                {"phase": s.phase, "transaction": f"{s.phase}{s.unit}" if s.transactional else "none",
                 "step": s.step, "sql": s.sql, "purpose": s.purpose}
                for s in self.statements
            ],
            columns=["phase", "transaction", "step", "sql", "purpose"],
        )

    def __len__(self) -> int:
        return len(self.statements)

    def _repr_html_(self) -> str:
        from ..notebook.display import phases_html

        return phases_html(self)


# ---------------------------------------------------------------------------------------------------------
# Which phase a step belongs to.


def phase_of(step: Step) -> PhaseName:
    """The phase apply runs ``step`` in: each step kind says (``Step.phase``). A step a migration tool's directive
    runs outside any transaction (``Step.outside_transaction``) goes from phase A to phase B (alone, outside any
    transaction); phase C already runs each statement in a transaction of its own."""
    phase = step.phase()
    return "B" if step.outside_transaction and phase == "A" else phase


# ---------------------------------------------------------------------------------------------------------
# Moving a step later must not change the plan's meaning.


def _tables(step: Step) -> set[str]:
    # Table names without schema: a conservative match (two schemas' "orders" count as the same table).
    if isinstance(step, RawSQL):
        return _raw_tables(step)
    return {t for _, t in step.tables()}


def _raw_tables(step: RawSQL) -> set[str]:
    return {n.relname for stmt in step.parsed for n in walk_ast(stmt) if isinstance(n, ast.RangeVar)}


def _commutes(moved: Step, later: Step) -> bool:
    """Whether ``later`` (in phase A, or B after a phase C step) may run before ``moved`` without changing
    what the plan does."""
    name = moved.object_name()
    index_name = moved.index if isinstance(moved, AddUniqueUsingIndex) else None
    if isinstance(later, RawSQL):
        touched = _raw_tables(later)
        text = later.statement
        if name and name in text or index_name and index_name in text:
            return False
        if isinstance(moved, DropIndex):
            return False  # the index's table is not known without the catalog
        if not touched & _tables(moved):
            return True
        # A plain UPDATE of the moved step's own table: the constraint is checked on the final rows either way.
        parsed = later.parsed
        own = {moved.table} if isinstance(moved, TableStep) else set()
        return (len(parsed) == 1 and isinstance(parsed[0], ast.UpdateStmt) and not parsed[0].fromClause
                and touched <= own)
    later_name = getattr(later, "name", None)
    if name and later_name == name or index_name and later_name == index_name:
        return False
    if isinstance(moved, DropIndex):
        # Which table the dropped index is on is not known here: only another index build commutes with it.
        return isinstance(later, (CreateIndex, CreateTable, AddColumn))
    if isinstance(later, DropIndex):
        # A foreign key or USING INDEX may need the index being dropped; another index build does not.
        return isinstance(moved, CreateIndex)
    if not _tables(moved) & _tables(later):
        return True
    return isinstance(later, (AddColumn, SetNotNull, DropNotNull, AddCheck, AddUnique, CreateTable, CreateIndex))


def migrations(plan: MigrationPlan, all_or_nothing: bool = False) -> list[int]:
    """The migration (0, 1, ...) each step belongs to: consecutive steps from the same file or revision of a
    tool's folder (``plan.origins``), each of which its tool commits on its own. One for a plan without origins, or
    when the user asks for all-or-nothing."""
    if all_or_nothing or not plan.origins:
        return [0] * len(plan.steps)
    out: list[int] = []
    for position, origin in enumerate(plan.origins):
        out.append(0 if position == 0 else out[-1] + (origin != plan.origins[position - 1]))
    return out


def _check_order(plan: MigrationPlan, online: frozenset[int] = frozenset(), all_or_nothing: bool = True) -> None:
    """A step moved to a later phase must not be needed by a step after it in an earlier phase of the same
    transaction boundary: the whole plan (all-or-nothing), or its migration."""
    group = migrations(plan, all_or_nothing)
    moved: list[tuple[int, Step, PhaseName]] = []
    for position, step in enumerate(plan.steps, start=1):
        if position > 1 and group[position - 1] != group[position - 2]:
            moved = []  # the migration before ran whole, its phases B and C too, before this one begins
        phase: PhaseName = "C" if position in online else phase_of(step)
        for earlier_position, earlier, earlier_phase in moved:
            if phase == "A" or (phase == "B" and earlier_phase == "C"):
                if not _commutes(earlier, step):
                    raise PhaseOrderError(
                        f"step {position} ({step.summary()}) depends on step {earlier_position} "
                        f"({earlier.summary()}), but apply runs step {earlier_position} in phase {earlier_phase}, "
                        f"after phase {phase} where step {position} runs. "
                        f"Move step {position} before step {earlier_position}, or split the plan into two runs."
                    )
        if phase != "A":
            moved.append((position, step, phase))


# ---------------------------------------------------------------------------------------------------------
# Names PostgreSQL would choose, so a foreign key added NOT VALID can be validated by name.


def foreign_key_name(table: str, columns: tuple[str, ...], taken: set[str]) -> str:
    """The name PostgreSQL gives an unnamed foreign key (ChooseConstraintName), avoiding ``taken``."""
    addition = ""
    for column in columns:
        addition = f"{addition}_{column}" if addition else column
        if len(addition.encode()) >= NAMEDATALEN:
            break
    addition = clip_bytes(addition, NAMEDATALEN * 2 - 1)
    candidate = make_object_name(table, addition, "fkey")
    counter = 0
    while candidate in taken:
        counter += 1
        candidate = make_object_name(table, addition, f"fkey{counter}")
    return candidate


# ---------------------------------------------------------------------------------------------------------


def _same_foreign_key(found: ConstraintInfo, step: AddForeignKey) -> bool:
    """Whether a constraint in the catalog is this step's foreign key (left by an earlier apply of it)."""
    return (found.type == "f" and found.columns == step.columns and found.ref_table == step.ref_table
            and found.ref_columns == step.ref_columns and found.match_full == step.match_full
            and (step.ref_schema is None or found.ref_schema == step.ref_schema))


# A table this large or more (its heap) gets the online form of a step that would scan it under a write-blocking
# lock: at a few hundred MB/s, below it the step as written blocks writes for a few tens of milliseconds.
ONLINE_MIN_BYTES = 8 * 1024 * 1024

# The online form of a step is used by default (``online=True``) where its table exists before the plan and holds
# at least ONLINE_MIN_BYTES; ``online=False`` never; a collection of step positions exactly there (the report's
# choice, proven equivalent in the rehearsal).
Online = bool | frozenset[int] | set[int] | tuple[int, ...] | list[int]


def online_steps(plan: MigrationPlan, catalog: Catalog | None, online: Online = True,
                 min_bytes: int | None = None, all_or_nothing: bool = False) -> frozenset[int]:
    """The steps of ``plan`` that apply runs in their online form (``plan.steps.online``)."""
    if online is False or catalog is None:
        return frozenset()
    min_bytes = ONLINE_MIN_BYTES if min_bytes is None else min_bytes
    chosen: set[int] = set()
    made: set[str] = set()  # tables an earlier step makes or drops: their size is not the catalog's
    for position, step in enumerate(plan.steps, start=1):
        if isinstance(step, TableStep) and not isinstance(step, ONLINE_KINDS):
            if isinstance(step, CreateTable) or step.kind in ("drop_table",):
                made.add(step.table)
        if not isinstance(step, ONLINE_KINDS) or phase_of(step) != "A" or step.table in made:
            continue
        if isinstance(step, AddCheck) and step.not_valid:
            continue
        info = catalog.table(step.schema_, step.table)
        if info is None or info.kind != "r" or info.inherited_by or (isinstance(step, AddUnique) and step.only):
            continue  # CREATE INDEX CONCURRENTLY does not build on a partitioned table or its children at once
        if online is True and info.heap_bytes < min_bytes:
            continue
        if online is not True and position not in set(online):
            continue
        chosen.add(position)
    # a step that a later phase-A step depends on keeps its place (and its lock, which the lock budget gates)
    accepted: frozenset[int] = frozenset()
    for position in sorted(chosen):
        try:
            _check_order(plan, accepted | {position}, all_or_nothing)
        except PhaseOrderError:
            continue
        accepted = accepted | {position}
    return accepted


def _free_name(base: str, taken: set[str], make: Any) -> str:
    candidate, counter = base, 0
    while candidate in taken:
        counter += 1
        candidate = make(counter)
    return candidate


def _check_default_name(step: AddCheck, taken: set[str]) -> str:
    """The name PostgreSQL gives an unnamed CHECK: ``table_column_check`` when its expression reads one column,
    ``table_check`` otherwise, numbered past the names taken (ChooseConstraintName)."""
    import pglast

    (raw,) = pglast.parse_sql(f"SELECT {step.expression}")
    columns = {n.fields[-1].sval for n in walk_ast(raw.stmt) if isinstance(n, ast.ColumnRef)
               and n.fields and isinstance(n.fields[-1], ast.String)}
    column = next(iter(columns)) if len(columns) == 1 else None
    return _free_name(make_object_name(step.table, column, "check"), taken,
                      lambda n: make_object_name(step.table, column, f"check{n}"))


def _unique_default_name(step: AddUnique, taken: set[str]) -> str:
    if step.primary_key:
        return make_object_name(step.table, None, "pkey")
    addition = ""
    for column in step.columns:
        addition = f"{addition}_{column}" if addition else column
        if len(addition.encode()) >= NAMEDATALEN:
            break
    addition = clip_bytes(addition, NAMEDATALEN * 2 - 1)
    return _free_name(make_object_name(step.table, addition, "key"), taken,
                      lambda n: make_object_name(step.table, addition, f"key{n}"))


def _online_pieces(step: Step, catalog: Catalog, planned: set[str]) -> list[OnlinePiece]:
    """The online form of ``step``, resumed where the catalog shows an earlier apply of it got to: a helper check
    or a constraint already added is not added again, a valid one not validated again, a finished index adopted,
    an INVALID one dropped and built again."""
    assert isinstance(step, (SetNotNull, AddUnique, AddCheck))
    info = catalog.table(step.schema_, step.table)
    constraints = dict(info.constraints) if info is not None else {}
    indexes = dict(info.indexes) if info is not None else {}
    taken = set(constraints) | set(indexes) | planned  # ``planned``: names earlier steps of the plan give
    columns = info.columns if info is not None else {}
    eighteen = catalog.server_version >= 180000

    def not_null(column_step: SetNotNull) -> list[OnlinePiece]:
        done = columns.get(column_step.column) is not None and columns[column_step.column].not_null
        if eighteen:  # the NOT NULL constraint itself, NOT VALID then validated
            name = not_null_constraint_name(column_step.table, column_step.column)
            found = constraints.get(name)
            if done:
                return []
            pieces = set_not_null_online_18(column_step, name)
            return pieces[1:] if found is not None and found.type == "n" else pieces
        check = not_null_check_name(column_step.table, column_step.column)
        return _resume(set_not_null_online(column_step, check), constraints.get(check), done)

    if isinstance(step, SetNotNull):
        return not_null(step)
    if isinstance(step, AddUnique):
        name = step.name or _unique_default_name(step, taken - _own_unique(step, constraints, indexes))
        planned.add(name)
        nullable = tuple(c for c in step.columns if step.primary_key and not (columns.get(c) and columns[c].not_null))
        pieces = add_unique_online(step, name, nullable, not_null)
        if name in constraints:
            return []  # the constraint is there: an earlier apply finished it
        found = indexes.get(name)
        if found is not None and found.valid:
            pieces = [p for p in pieces if not isinstance(p.step, CreateIndex)]  # adopted
        elif found is not None:
            drop = DropIndex(schema=info.schema if info else step.schema_, name=name, concurrently=True,
                             if_exists=True)
            at = next(i for i, p in enumerate(pieces) if isinstance(p.step, CreateIndex))
            pieces.insert(at, OnlinePiece("B", drop, "an INVALID index an earlier apply left: dropped concurrently, "
                                                     "then built again"))
        return pieces
    name = step.name or _check_default_name(step, taken)
    planned.add(name)
    return _resume(add_check_online(step, name), constraints.get(name), False)


def _own_unique(step: AddUnique, constraints: dict[str, Any], indexes: dict[str, Any]) -> set[str]:
    """Names an earlier apply of this very step left (its index, built concurrently): not taken from it."""
    return {name for name, ix in indexes.items() if ix.unique and ix.columns == step.columns and name not in constraints}


def _resume(pieces: list[OnlinePiece], check: ConstraintInfo | None, done: bool) -> list[OnlinePiece]:
    """A helper check (or the CHECK itself) found under its name: not added again; valid: not validated again."""
    if check is None:
        return [] if done else pieces
    kept = [p for p in pieces if not (isinstance(p.step, AddCheck) and p.step.name == check.name)]
    if check.validated:
        kept = [p for p in kept if not isinstance(p.step, ValidateConstraint)]
    if done:  # the column is NOT NULL already: only the helper check is left to drop
        kept = [p for p in kept if isinstance(p.step, DropConstraint)]
        kept = [p._replace(together=False) for p in kept]
    return kept


def compile_phases(plan: MigrationPlan, catalog: Catalog | None = None, *, online: Online = True,
                   all_or_nothing: bool = False) -> ApplyPhases:
    """Compile ``plan`` into phases A, B and C. Every object phases B and C create gets its name here, the
    same on every compile: an unnamed index the name PostgreSQL would pick first, an unnamed foreign key the
    name PostgreSQL would give it next to the constraints ``catalog`` (optional) holds, its own leftover from
    an interrupted apply of this plan excepted. ``online``: which steps run in their online form (see
    ``online_steps``; it needs ``catalog``).

    A plan read from a tool's folder keeps each migration's own transaction, as its tool does: migration by
    migration, its phase A in a transaction of its own, then its phases B and C, before the next migration
    begins. ``all_or_nothing``: one phase A for the whole plan instead (all of it applies or none), then B, then C.
    Raises ``PhaseOrderError``."""
    _check_order(plan, all_or_nothing=all_or_nothing)
    moved = online_steps(plan, catalog, online, all_or_nothing=all_or_nothing)
    group = migrations(plan, all_or_nothing)
    taken: set[str] = set()
    if catalog is not None:
        for step in plan.steps:
            if isinstance(step, AddForeignKey) and not step.name:
                info = catalog.table(step.schema_, step.table)
                taken |= {c.name for c in (info.constraints.values() if info else ())
                          if not _same_foreign_key(c, step)}
    for step in plan.steps:
        if isinstance(step, (AddUnique, AddForeignKey, AddCheck)) and step.name:
            taken.add(step.name)
    a: list[PhaseStatement] = []
    b: list[PhaseStatement] = []
    c: list[PhaseStatement] = []
    ordered: list[PhaseStatement] = []  # each migration's A, B and C, in turn
    for position, step in enumerate(plan.steps, start=1):
        if position > 1 and group[position - 1] != group[position - 2]:
            ordered += a + b + c
            a, b, c = [], [], []
        phase = phase_of(step)
        table = (step.schema_, step.table) if isinstance(step, TableStep) else None
        if position in moved:
            assert catalog is not None
            for piece in _online_pieces(step, catalog, taken):
                if piece.phase == "B":
                    index = piece.step.name if isinstance(piece.step, CreateIndex) else None
                    b.append(PhaseStatement(phase="B", unit=_next(ordered, b, "B"), step=position, sql=piece.step.sql(),
                                            transactional=False, purpose=piece.purpose, table=table, index=index,
                                            builds_index=index is not None, online=True))
                else:
                    unit = c[-1].unit if piece.together and c else _next(ordered, c, "C")
                    c.append(PhaseStatement(phase="C", unit=unit, step=position, sql=piece.step.sql(),
                                            transactional=True, purpose=piece.purpose, table=table, online=True))
            continue
        if phase == "A":
            a.append(PhaseStatement(phase="A", unit=group[position - 1] + 1, step=position, sql=step.sql(), transactional=True,
                                    purpose="as written", table=table))
        elif phase == "B":
            builds = isinstance(step, CreateIndex) or (
                isinstance(step, RawSQL) and isinstance(step.parsed[0], ast.IndexStmt))
            named = step.model_copy(update={"name": index_name(step)}) if isinstance(step, CreateIndex) else step
            b.append(PhaseStatement(
                phase="B", unit=_next(ordered, b, "B"), step=position, sql=named.sql(), transactional=False,
                purpose="alone, outside any transaction" + (
                    " (its migration runs outside a transaction)" if step.outside_transaction else ""),
                table=table,
                index=named.name if isinstance(named, CreateIndex) else None, builds_index=builds,
            ))
        elif isinstance(step, AddForeignKey) and not step.not_valid:
            name = step.name or foreign_key_name(step.table, step.columns, taken)
            taken.add(name)
            added = step.model_copy(update={"name": name, "not_valid": True})
            validate = ValidateConstraint(schema=step.schema_, table=step.table, name=name)
            c.append(PhaseStatement(phase="C", unit=_next(ordered, c, "C"), step=position, sql=added.sql(),
                                    transactional=True, purpose="foreign key added NOT VALID: a brief lock, no scan",
                                    table=table))
            c.append(PhaseStatement(
                phase="C", unit=_next(ordered, c, "C"), step=position, sql=validate.sql(), transactional=True,
                purpose=f"validates {display_name(name)} in its own transaction: a scan that lets reads and "
                "writes go on", table=table))
        else:
            c.append(PhaseStatement(phase="C", unit=_next(ordered, c, "C"), step=position, sql=step.sql(),
                                    transactional=True, purpose="in its own transaction, after the indexes",
                                    table=table))
    ordered += a + b + c
    return ApplyPhases(plan_fingerprint=plan.fingerprint, statements=tuple(ordered),
                       online_steps=tuple(sorted(moved)))


def _next(done: list[PhaseStatement], current: list[PhaseStatement], phase: PhaseName) -> int:
    """The next unit number of ``phase``: units are numbered across the migrations, so each names one transaction
    (or one statement outside any)."""
    return max((s.unit for s in [*done, *current] if s.phase == phase), default=0) + 1


def lock_settings(lock_timeout_s: float, statement_timeout_s: float, *, local: bool) -> sql.Composed:
    """SET [LOCAL] lock_timeout and statement_timeout, in milliseconds (0: no limit), and
    standard_conforming_strings on: the plan's string literals were parsed that way (by pglast), and with it
    off a backslash would end a literal early and let the rest of it run as SQL."""
    scope = sql.SQL("SET LOCAL ") if local else sql.SQL("SET ")
    return sql.SQL("{}lock_timeout = {}; {}statement_timeout = {}; {}standard_conforming_strings = on").format(
        scope, sql.Literal(f"{int(lock_timeout_s * 1000)}ms"), scope, sql.Literal(f"{int(statement_timeout_s * 1000)}ms"),
        scope,
    )
