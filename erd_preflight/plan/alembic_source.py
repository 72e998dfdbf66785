"""Plans from an Alembic project: Alembic's own offline mode (``upgrade --sql``) renders each pending revision to
SQL, which ``MigrationPlan.from_sql`` parses. Nothing is run against the database but one read of
``alembic_version`` (read-only) to know where "current" is."""

from __future__ import annotations

import io
import shlex
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import PlanError

if TYPE_CHECKING:
    from .model import MigrationPlan

# Alembic's bookkeeping in the rendered SQL: its transaction and its version table are Alembic's business.
_BOOKKEEPING = re.compile(r"^\s*(BEGIN|COMMIT)\s*;?\s*$|\balembic_version\b", re.IGNORECASE)


def _config(config_or_ini: Any, buffer: io.StringIO) -> Any:
    from alembic.config import Config

    if isinstance(config_or_ini, (str, Path)):
        ini = Path(config_or_ini)
        if not ini.exists():
            raise PlanError(f"{ini} does not exist: give the path of the project's alembic.ini")
        return Config(str(ini), output_buffer=buffer)
    config = Config(config_or_ini.config_file_name, ini_section=config_or_ini.config_ini_section,
                    output_buffer=buffer)
    for key, value in config_or_ini.get_section(config_or_ini.config_ini_section, {}).items():
        config.set_main_option(key, value.replace("%", "%%"))
    return config


def current_revisions(db: Any, version_table: str = "alembic_version") -> tuple[str, ...]:
    """The revisions ``alembic_version`` holds (empty: nothing applied, or no table), read read-only."""
    from psycopg import sql

    from ..db import connect, read_only

    with connect(db).connection() as conn, read_only(conn, 30):
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (version_table,)).fetchone()
        if not row or not row[0]:
            return ()
        rows = conn.execute(sql.SQL("SELECT version_num FROM {}").format(sql.Identifier(version_table))).fetchall()
    return tuple(r[0] for r in rows)


def _split(statements: str) -> list[str]:
    """The rendered script without Alembic's bookkeeping statements, split as PostgreSQL would."""
    from pglast import split

    kept = []
    for statement in split(statements, with_parser=False):
        if not _BOOKKEEPING.search(statement):
            kept.append(statement.strip())
    return kept


def plan_from_alembic(cls: type[MigrationPlan], config_or_ini: Any, revision_range: str = "current:head", *,
                      db: Any = None) -> MigrationPlan:
    try:
        from alembic import command
        from alembic.script import ScriptDirectory
    except ImportError:
        raise PlanError("Alembic is not installed: pip install alembic (or 'erd_preflight[alembic]')") from None
    if ":" not in revision_range:
        raise PlanError(f"revision_range {revision_range!r} must be START:END, such as current:head or ab12:head")
    start, end = revision_range.split(":", 1)
    buffer = io.StringIO()
    config = _config(config_or_ini, buffer)
    script = ScriptDirectory.from_config(config)
    notes: list[str] = []
    if start == "current":
        if db is None:
            raise PlanError("revision_range starts at 'current': pass db= so alembic_version can be read, or give "
                            "the starting revision (e.g. 'base:head' or 'ab12cd:head')")
        current = current_revisions(db)
        if len(current) > 1:
            raise PlanError(f"alembic_version holds several heads ({', '.join(current)}): give the range explicitly")
        start = current[0] if current else "base"
        notes.append(f"alembic_version: at {start}")
    heads = script.get_heads() if end in ("head", "heads") else [end]
    if len(heads) > 1:
        raise PlanError(f"the Alembic project has several heads ({', '.join(heads)}): merge them, or give one")
    lower = None if start == "base" else start
    pending = list(reversed(list(script.iterate_revisions(heads[0], lower))))
    pending = [r for r in pending if r.revision != lower]
    plans = []
    for revision in pending:
        down = revision.down_revision
        if isinstance(down, tuple):
            raise PlanError(f"Alembic revision {revision.revision} merges {', '.join(down)}: give a range that "
                            "does not cross the merge")
        buffer.seek(0)
        buffer.truncate()
        label = f"revision {revision.revision}" + (f" ({revision.doc})" if revision.doc else "")
        try:
            command.upgrade(config, f"{down}:{revision.revision}" if down else revision.revision, sql=True)
        except Exception as exc:  # whatever the revision's own code raises when it has no database to read
            raise PlanError(
                f"Alembic {label} cannot be rendered to SQL offline ({type(exc).__name__}: {exc}). It needs the "
                "database at upgrade time (op.get_bind(), a query, reflection), so its SQL is not known before it "
                "runs: preflight the revisions before it, or write its data-dependent part as op.execute(SQL)."
            ) from exc
        statements = _split(buffer.getvalue())
        plans.append(cls.from_sql(";\n".join(statements) + (";" if statements else ""), origin=label))
    name = f"alembic {start}:{heads[0]}"
    if not pending:
        if revision_range.startswith("current:"):
            # alembic_version says the database is at the end of the range: a clear "nothing pending".
            return cls(steps=(), name=name, notes=tuple(notes) + (
                f"nothing pending: alembic_version is already at {start}",), nothing_pending=True)
        raise PlanError(f"the Alembic range {revision_range} holds no revision: there is nothing to preflight. "
                        "Give a range such as current:head or base:head")
    ini = getattr(config, "config_file_name", None)
    stamp = f"alembic{' -c ' + shlex.quote(str(ini)) if ini else ''} stamp {shlex.quote(pending[-1].revision)}"
    return cls.concat(plans, name=name, notes=tuple(notes)).model_copy(update={"record_hint": stamp})
