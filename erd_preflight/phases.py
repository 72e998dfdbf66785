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

from typing import TYPE_CHECKING

from pglast import ast
from psycopg import sql
from pydantic import BaseModel, ConfigDict

from .errors import PhaseOrderError
from .plan import (
    NAMEDATALEN,
    clip_bytes,
    AddCheck,
    AddColumn,
    AddForeignKey,
    AddUnique,
    AddUniqueUsingIndex,
    CreateIndex,
    CreateTable,
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
from .sqlparse import walk_ast

if TYPE_CHECKING:
    import pandas as pd

    from .catalog import Catalog, ConstraintInfo


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


class ApplyPhases(BaseModel):
    """The compiled plan: every statement apply will run, grouped by phase and transaction."""

    model_config = ConfigDict(frozen=True)

    plan_fingerprint: str
    statements: tuple[PhaseStatement, ...]
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
        from .display import phases_html

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


def _check_order(plan: MigrationPlan) -> None:
    moved: list[tuple[int, Step, PhaseName]] = []
    for position, step in enumerate(plan.steps, start=1):
        phase = phase_of(step)
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


def compile_phases(plan: MigrationPlan, catalog: Catalog | None = None) -> ApplyPhases:
    """Compile ``plan`` into phases A, B and C. Every object phases B and C create gets its name here, the
    same on every compile: an unnamed index the name PostgreSQL would pick first, an unnamed foreign key the
    name PostgreSQL would give it next to the constraints ``catalog`` (optional) holds, its own leftover from
    an interrupted apply of this plan excepted. Raises ``PhaseOrderError``."""
    _check_order(plan)
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
    for position, step in enumerate(plan.steps, start=1):
        phase = phase_of(step)
        table = (step.schema_, step.table) if isinstance(step, TableStep) else None
        if phase == "A":
            a.append(PhaseStatement(phase="A", unit=1, step=position, sql=step.sql(), transactional=True,
                                    purpose="as written", table=table))
        elif phase == "B":
            builds = isinstance(step, CreateIndex) or (
                isinstance(step, RawSQL) and isinstance(step.parsed[0], ast.IndexStmt))
            named = step.model_copy(update={"name": index_name(step)}) if isinstance(step, CreateIndex) else step
            b.append(PhaseStatement(
                phase="B", unit=len(b) + 1, step=position, sql=named.sql(), transactional=False,
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
            c.append(PhaseStatement(phase="C", unit=len(c) + 1, step=position, sql=added.sql(), transactional=True,
                                    purpose="foreign key added NOT VALID: a brief lock, no scan", table=table))
            c.append(PhaseStatement(
                phase="C", unit=len(c) + 1, step=position, sql=validate.sql(), transactional=True,
                purpose=f"validates {display_name(name)} in its own transaction: a scan that lets reads and "
                "writes go on", table=table))
        else:
            c.append(PhaseStatement(phase="C", unit=len(c) + 1, step=position, sql=step.sql(), transactional=True,
                                    purpose="in its own transaction, after the indexes", table=table))
    return ApplyPhases(plan_fingerprint=plan.fingerprint, statements=tuple(a + b + c))


def lock_settings(lock_timeout_s: float, statement_timeout_s: float, *, local: bool) -> sql.Composed:
    """SET [LOCAL] lock_timeout and statement_timeout, in milliseconds (0: no limit), and
    standard_conforming_strings on: the plan's string literals were parsed that way (by pglast), and with it
    off a backslash would end a literal early and let the rest of it run as SQL."""
    scope = sql.SQL("SET LOCAL ") if local else sql.SQL("SET ")
    return sql.SQL("{}lock_timeout = {}; {}statement_timeout = {}; {}standard_conforming_strings = on").format(
        scope, sql.Literal(f"{int(lock_timeout_s * 1000)}ms"), scope, sql.Literal(f"{int(statement_timeout_s * 1000)}ms"),
        scope,
    )
