"""Plans from a folder of migration files, ordered the way the tool that owns the folder applies them, minus
what its history table says is applied.

- Flyway: ``V<version>__<description>.sql`` (``V3__x`` before ``V10__y``, ``1.2`` and ``1_2`` are the same
  version), then repeatable ``R__<description>.sql`` by description; undo ``U…`` files are not part of an upgrade.
  History: ``flyway_schema_history`` (rows with ``success``).
- golang-migrate: ``<version>_<name>.up.sql`` (``.down.sql`` ignored). History: ``schema_migrations`` holds the
  one current version, and ``dirty`` when a migration failed half-way.
- dbmate: ``<timestamp>_<name>.sql`` with ``-- migrate:up`` / ``-- migrate:down`` sections (only up is read).
  History: ``schema_migrations`` with one row per applied version.
- goose: ``<version>_<name>.sql`` with ``-- +goose Up`` / ``-- +goose Down`` sections (only up is read).
  History: ``goose_db_version``, whose latest row for a version says whether it is applied.
- sqitch: ``sqitch.plan`` lists the changes in order; each is ``deploy/<change>.sql``. History: sqitch keeps
  it in its own registry database, which is not read: every change in the plan is included.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from ..errors import PlanError
from ..sqlparse import read_sql_file

if TYPE_CHECKING:
    from .model import MigrationPlan

_FLYWAY = re.compile(r"^V(?P<version>\d+(?:[._]\d+)*)__(?P<name>.+)\.sql$", re.IGNORECASE)
_FLYWAY_REPEATABLE = re.compile(r"^R__(?P<name>.+)\.sql$", re.IGNORECASE)
_FLYWAY_UNDO = re.compile(r"^U\d+(?:[._]\d+)*__.+\.sql$", re.IGNORECASE)
_UP = re.compile(r"^(?P<version>\d+)_(?P<name>.+)\.up\.sql$", re.IGNORECASE)
_DOWN = re.compile(r"^\d+_.+\.down\.sql$", re.IGNORECASE)
_NUMBERED = re.compile(r"^(?P<version>\d+)[_-](?P<name>.+)\.sql$", re.IGNORECASE)
_DBMATE_UP = re.compile(r"^--\s*migrate:up\b.*$", re.MULTILINE)
_DBMATE_DOWN = re.compile(r"^--\s*migrate:down\b.*$", re.MULTILINE)
_GOOSE_UP = re.compile(r"^--\s*\+goose\s+Up\b.*$", re.MULTILINE | re.IGNORECASE)
_GOOSE_DOWN = re.compile(r"^--\s*\+goose\s+Down\b.*$", re.MULTILINE | re.IGNORECASE)
_SECTIONS = {"dbmate": (_DBMATE_UP, _DBMATE_DOWN), "goose": (_GOOSE_UP, _GOOSE_DOWN)}


@dataclass(frozen=True)
class MigrationFile:
    path: Path
    tool: str  # flyway, flyway-repeatable, golang-migrate, dbmate, goose, numbered, sqitch
    version: tuple[int, ...]
    name: str

    @property
    def version_text(self) -> str:
        return ".".join(str(v) for v in self.version)

    def sql(self) -> str:
        text = read_sql_file(self.path)
        if self.tool in _SECTIONS:
            up_marker, down_marker = _SECTIONS[self.tool]
            up, down = up_marker.search(text), down_marker.search(text)
            if up is None:
                return text
            # keep the line numbers of the file, so a parse error points at the right line
            start = up.end()
            end = down.start() if down is not None and down.start() > start else len(text)
            return "\n" * text[:start].count("\n") + text[start:end]
        return text


def migration_files(folder: Path) -> tuple[list[MigrationFile], list[str]]:
    """The folder's upgrade files in the order they apply, and notes on what was left out."""
    if not folder.is_dir():
        raise PlanError(f"{folder} is not a folder of migrations")
    plan_file = folder / "sqitch.plan"
    if plan_file.exists():
        return _sqitch(folder, plan_file), []
    files: list[MigrationFile] = []
    repeatable: list[MigrationFile] = []
    notes: list[str] = []
    unordered: list[str] = []
    for path in sorted(folder.iterdir()):
        name = path.name
        if not path.is_file() or not name.lower().endswith(".sql"):
            continue
        if _DOWN.match(name) or _FLYWAY_UNDO.match(name):
            notes.append(f"{name}: a down/undo migration, not part of an upgrade")
            continue
        if m := _FLYWAY.match(name):
            files.append(MigrationFile(path, "flyway", _version(m["version"]), m["name"]))
        elif m := _FLYWAY_REPEATABLE.match(name):
            repeatable.append(MigrationFile(path, "flyway-repeatable", (), m["name"]))
        elif m := _UP.match(name):
            files.append(MigrationFile(path, "golang-migrate", (int(m["version"]),), m["name"]))
        elif m := _NUMBERED.match(name):
            text = read_sql_file(path)
            tool = "dbmate" if _DBMATE_UP.search(text) else "goose" if _GOOSE_UP.search(text) else "numbered"
            if tool == "numbered" and (_DBMATE_DOWN.search(text) or _GOOSE_DOWN.search(text)):
                raise PlanError(f"{name} has a down section but no up section (-- migrate:up or -- +goose Up): "
                                "preflight cannot tell which statements upgrade. Mark the up section.")
            files.append(MigrationFile(path, tool, (int(m["version"]),), m["name"]))
        else:
            unordered.append(name)
    if unordered:
        raise PlanError(
            f"cannot tell where {', '.join(unordered)} goes in the order of {folder}: name migration files "
            "V3__add_email.sql (Flyway), 20240101120000_add_email.sql (dbmate) or 0003_add_email.up.sql "
            "(golang-migrate), or list them in a sqitch.plan")
    seen: dict[tuple[int, ...], str] = {}
    for f in files:
        if f.version in seen:
            raise PlanError(f"{seen[f.version]} and {f.path.name} have the same version {f.version_text}: the "
                            "order between them is undefined. Renumber one of them.")
        seen[f.version] = f.path.name
    files.sort(key=lambda f: f.version)
    repeatable.sort(key=lambda f: f.name)
    if repeatable:
        notes.append(f"{len(repeatable)} repeatable Flyway migration(s) come last; Flyway re-runs one only when its "
                     "checksum changed, which this plan does not compare: they are all included")
    return files + repeatable, notes


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.split(r"[._]", text))


def _sqitch(folder: Path, plan_file: Path) -> list[MigrationFile]:
    files = []
    for number, line in enumerate(plan_file.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith(("%", "#", "@")):
            continue
        change = line.split()[0]
        path = folder / "deploy" / f"{change}.sql"
        if not path.exists():
            raise PlanError(f"sqitch.plan line {number} names change {change!r}, but {path} does not exist")
        files.append(MigrationFile(path, "sqitch", (len(files) + 1,), change))
    return files


def history_table(conn: psycopg.Connection[Any], *names: str) -> sql.Identifier | None:
    """The first of ``names`` (``table`` as the search_path finds it, or ``schema.table``) that exists, quoted
    as an identifier (schema, name): where a migration tool keeps its history."""
    for name in names:
        regclass = sql.Identifier(*name.split(".")).as_string(conn)
        row = conn.execute("SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                           "WHERE c.oid = to_regclass(%s)", (regclass,)).fetchone()
        if row is not None:
            return sql.Identifier(row[0], row[1])
    return None


def applied_versions(db: Any, files: list[MigrationFile]) -> tuple[set[tuple[int, ...]], list[str]]:
    """Versions the tools' history tables list as applied (read-only), and notes saying which table said so."""
    from ..db import connect, read_only

    database = connect(db)
    applied: set[tuple[int, ...]] = set()
    notes: list[str] = []
    tools = {f.tool for f in files}
    with database.connection() as conn, read_only(conn, 30):
        flyway = history_table(conn, "flyway_schema_history")
        if flyway and "flyway" in tools:
            rows = conn.execute(sql.SQL("SELECT version FROM {} WHERE success AND version IS NOT NULL").format(
                flyway)).fetchall()
            applied |= {_version(r[0]) for r in rows if re.fullmatch(r"\d+(?:[._]\d+)*", str(r[0]))}
            notes.append(f"{flyway.as_string(conn)}: {len(rows)} applied version(s)")
        goose = history_table(conn, "goose_db_version")
        if goose and "goose" in tools:  # one row per up or down; a version's latest row says where it is
            rows = conn.execute(sql.SQL("SELECT DISTINCT ON (version_id) version_id, is_applied FROM {} "
                                        "ORDER BY version_id, id DESC").format(goose)).fetchall()
            applied |= {(int(r[0]),) for r in rows if r[1]}
            notes.append(f"goose_db_version (goose): {sum(1 for r in rows if r[1])} applied version(s)")
        migrations = history_table(conn, "schema_migrations")
        if migrations and tools & {"golang-migrate", "dbmate", "numbered"}:
            columns = {r[0] for r in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped",
                (migrations.as_string(conn),)).fetchall()}
            if "dirty" in columns:  # golang-migrate: one row, the current version
                row = conn.execute(sql.SQL("SELECT version, dirty FROM {}").format(migrations)).fetchone()
                if row is not None:
                    version, dirty = int(row[0]), bool(row[1])
                    if dirty:
                        raise PlanError(
                            f"schema_migrations says version {version} is dirty: a migration failed half-way. Fix the "
                            f"database by hand, then `migrate force {version}` (or the version before it).")
                    applied |= {f.version for f in files if f.version <= (version,)}
                    notes.append(f"schema_migrations (golang-migrate): at version {version}")
            else:  # dbmate: one row per applied version
                rows = conn.execute(sql.SQL("SELECT version::text FROM {}").format(migrations)).fetchall()
                applied |= {(int(r[0]),) for r in rows if str(r[0]).isdigit()}
                notes.append(f"schema_migrations (dbmate): {len(rows)} applied version(s)")
    return applied, notes


def plan_from_dir(cls: type[MigrationPlan], folder: Path, *, db: Any = None, history: bool = True) -> MigrationPlan:
    files, notes = migration_files(folder)
    applied: set[tuple[int, ...]] = set()
    if db is not None and history:
        applied, history_notes = applied_versions(db, files)
        notes += history_notes
    pending = []
    for f in files:
        if f.tool != "flyway-repeatable" and f.tool != "sqitch" and f.version in applied:
            notes.append(f"{f.path.name}: already applied, skipped")
        else:
            pending.append(f)
    if not files:
        raise PlanError(
            f"{folder} holds no migration this reader knows: it looked for Flyway V3__x.sql (and R__x.sql), "
            "golang-migrate 0003_x.up.sql, dbmate 20240101120000_x.sql, goose 00003_x.sql, a sqitch.plan, and the layouts of Prisma "
            "(<timestamp>_name/migration.sql), Diesel (<version>_name/up.sql), Atlas (atlas.sum), Liquibase (a "
            "changelog) and Django (manage.py). An empty plan would check nothing, so it is refused: point at the "
            "folder that holds the migrations")
    if not pending:
        # Every migration is applied, and the tool's own history table says so: a clear "nothing pending".
        return cls(steps=(), name=folder.name, notes=tuple(notes) + (
            f"nothing pending: the history table lists all {len(files)} migration(s) as applied",),
            nothing_pending=True)
    plans = [cls.from_sql(f.sql(), origin=_origin(folder, f)) for f in pending]
    return cls.concat(plans, name=folder.name, notes=tuple(notes)).model_copy(
        update={"record_hint": record_hint(folder, pending)})


def _origin(folder: Path, f: MigrationFile) -> str:
    """The name a migration is known by: its file's, or its folder's with the file where the tool names every file
    alike (Prisma's <timestamp>_name/migration.sql, Diesel's <version>_name/up.sql). It also draws each
    migration's transaction boundary (``phases.migrations``)."""
    try:
        relative = f.path.relative_to(folder)
    except ValueError:
        return f.path.name
    return relative.as_posix() if len(relative.parts) > 1 else f.path.name


def record_hint(folder: Path, pending: list[MigrationFile]) -> str | None:
    """The command that records ``pending`` as applied in the folder's tool's history (None: no known tool)."""
    versioned = [f for f in pending if f.tool not in ("flyway-repeatable",)]
    if not versioned:
        return None
    last = versioned[-1]
    if last.tool == "flyway":
        return (f"flyway -locations={shlex.quote('filesystem:' + str(folder))} -target={last.version_text} "
                "-skipExecutingMigrations=true migrate   (Flyway Teams; otherwise insert the rows flyway_schema_history "
                "expects)")
    if last.tool == "golang-migrate":
        return f'migrate -path {shlex.quote(str(folder))} -database "$DATABASE_URL" force {last.version_text}'
    if last.tool == "dbmate":
        values = sql.SQL(", ").join(sql.SQL("({})").format(sql.Literal(f.version_text)) for f in versioned)
        statement = sql.SQL("INSERT INTO schema_migrations (version) VALUES {};").format(values)
        return f"dbmate has no command that marks a migration as run; run this SQL:\n{statement.as_string(None)}"
    if last.tool == "goose":
        values = sql.SQL(", ").join(sql.SQL("({}, true)").format(sql.Literal(f.version[0])) for f in versioned)
        statement = sql.SQL("INSERT INTO goose_db_version (version_id, is_applied) VALUES {};").format(values)
        return f"goose has no command that marks a migration as run; run this SQL:\n{statement.as_string(None)}"
    if last.tool == "sqitch":
        return "sqitch deploy --log-only"
    return None
