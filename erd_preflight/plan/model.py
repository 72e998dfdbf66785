"""The migration plan: an ordered tuple of typed steps, with its fingerprint, its sources and its SQL."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ConfigDict, Field, model_validator

from ..errors import PlanError
from .names import Refusing
from .steps import PlanStep

if TYPE_CHECKING:
    import pandas as pd


class MigrationPlan(Refusing):
    """An ordered list of typed steps. The same steps always give the same fingerprint and checks."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    steps: tuple[PlanStep, ...]
    name: str | None = None
    notes: tuple[str, ...] = Field(default=(), description="what parsing had to say, e.g. skipped BEGIN/COMMIT")
    nothing_pending: bool = Field(
        default=False, description="no steps because the migration tool's history table says every migration is "
        "applied; any other plan without steps is refused, never reported clear")
    origins: tuple[str | None, ...] = Field(
        default=(), description="where each step came from (a file, an Alembic revision); empty: not recorded. "
        "Not part of the fingerprint: the same steps are the same plan wherever they were written.")
    record_hint: str | None = Field(
        default=None, description="how to record an apply of this plan in the migration tool's own history: "
        "the commands to run (erd_preflight never writes another tool's table)")

    @model_validator(mode="after")
    def _one_origin_per_step(self) -> MigrationPlan:
        if self.nothing_pending and self.steps:
            raise ValueError("a plan with steps is not 'nothing pending'")
        if self.origins and len(self.origins) != len(self.steps):
            raise ValueError(f"origins has {len(self.origins)} entries for {len(self.steps)} steps")
        return self

    @classmethod
    def from_sql(cls, text: str, *, name: str | None = None, origin: str | None = None) -> MigrationPlan:
        """Parse a migration with PostgreSQL's own parser (pglast) into typed steps.

        Statements it does not model become ``RawSQL`` steps, which preflight reports as warnings.
        A syntax error raises ``PlanError`` with line and column (and ``origin``, when given, names the file).
        """
        from .parse import parse_plan

        try:
            steps, notes = parse_plan(text)
        except PlanError as exc:
            if origin is None:
                raise
            raise PlanError(f"{origin}: {exc.args[0]}") from exc
        if origin is not None:
            notes = [f"{origin}: {note}" for note in notes]
        return cls(steps=tuple(steps), name=name, notes=tuple(notes),
                   origins=(origin,) * len(steps) if origin is not None else ())

    @classmethod
    def concat(cls, plans: list[MigrationPlan], *, name: str | None = None,
               notes: tuple[str, ...] = ()) -> MigrationPlan:
        """One plan running ``plans`` in order, each step keeping its origin."""
        origins: tuple[str | None, ...] = ()
        if any(p.origins for p in plans):
            origins = tuple(o for p in plans for o in (p.origins or (None,) * len(p.steps)))
        return cls(steps=tuple(s for p in plans for s in p.steps), name=name,
                   notes=tuple(notes) + tuple(n for p in plans for n in p.notes), origins=origins)

    @classmethod
    def from_dir(cls, path: str | Path, *, db: Any = None, history: bool = True) -> MigrationPlan:
        """The pending migrations of a folder, in the order its tool applies them (Flyway ``V3__x.sql``,
        dbmate / golang-migrate timestamps and ``.up.sql``, sqitch's ``sqitch.plan``, and the layouts of
        ``from_tool``: Prisma, Diesel, Atlas, Liquibase, Django).

        With ``db`` (a URL, Engine or Database) and ``history=True``, files that the tool's history table
        (``flyway_schema_history``, ``schema_migrations``) lists as applied are skipped, read read-only."""
        from .migration_dirs import plan_from_dir
        from .tools import detect, plan_from_tool

        found = detect(Path(path))
        if found is not None:
            return plan_from_tool(cls, found[0], Path(path), db=db, history=history)
        return plan_from_dir(cls, Path(path), db=db, history=history)

    @classmethod
    def from_tool(cls, tool: str, path: str | Path, *, db: Any = None, history: bool = True) -> MigrationPlan:
        """The pending migrations of ``path`` as migration tool ``tool`` reads them: ``prisma``, ``diesel``,
        ``atlas``, ``liquibase`` (a root changelog, or its folder) or ``django`` (a project's manage.py), each in
        its own order, minus what its history table lists as applied (read read-only). ``record_hint`` says how
        to record an apply in that history; a migration the tool runs outside a transaction is applied so."""
        from .tools import TOOLS, plan_from_tool

        if tool not in TOOLS:
            raise PlanError(f"no migration tool {tool!r} here: {', '.join(TOOLS)}")
        return plan_from_tool(cls, TOOLS[tool], Path(path), db=db, history=history)

    @classmethod
    def from_alembic(cls, config_or_ini_path: Any, revision_range: str = "current:head", *,
                     db: Any = None) -> MigrationPlan:
        """The pending revisions of an Alembic project, rendered by Alembic's offline mode (``--sql``) and
        parsed; nothing runs. ``current`` is read from ``alembic_version`` in ``db`` (read-only). Each step
        remembers its revision (``origins``), and findings name it."""
        from .alembic_source import plan_from_alembic

        return plan_from_alembic(cls, config_or_ini_path, revision_range, db=db)

    @property
    def outside_transaction(self) -> tuple[int, ...]:
        """The steps (1-based) a migration tool's directive runs outside any transaction: apply runs each alone,
        in phase B (``Step.outside_transaction``, stored with the step)."""
        return tuple(i for i, s in enumerate(self.steps, start=1) if s.outside_transaction)

    def origin_of(self, step: int) -> str | None:
        """Where step ``step`` (1-based) came from, if recorded."""
        return self.origins[step - 1] if self.origins and 0 < step <= len(self.origins) else None

    def canonical_json(self) -> str:
        """The steps as canonical JSON: sorted keys, no whitespace. The fingerprint hashes this."""
        payload = [s.model_dump(mode="json", by_alias=True) for s in self.steps]
        return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    @property
    def fingerprint(self) -> str:
        """sha256 of the canonical JSON of the steps: equal plans, equal fingerprints."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    def sql(self) -> str:
        """The whole plan as a SQL script, one statement per step."""
        return "".join(s.sql() + ";\n" for s in self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    def __repr__(self) -> str:
        # one line in a notebook's plain-text output and a log; the steps are steps_frame() and the HTML view
        return (f"MigrationPlan(name={self.name!r}, steps={len(self.steps)}, fingerprint={self.fingerprint[:12]!r}"
                + (f", outside_transaction={self.outside_transaction}" if self.outside_transaction else "") + ")")

    def steps_frame(self) -> pd.DataFrame:
        """One row per step: its number, the phase apply runs it in, a summary and its SQL."""
        from ..notebook.display import plan_frame

        return plan_frame(self)

    def _repr_html_(self) -> str:
        from ..notebook.display import plan_html

        return plan_html(self)
