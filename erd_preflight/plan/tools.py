"""The migration folders of the tools teams use with PostgreSQL, read in each tool's own order, minus what the
tool's own history table marks as applied (read read-only, never written). One class per tool, registered once in
``TOOLS``; a folder names its tool by its layout, or the caller names it (``prisma:PATH``).

| tool | layout, order | history table: "applied" means |
|---|---|---|
| Prisma | ``prisma/migrations/<timestamp>_name/migration.sql``, by folder name | ``_prisma_migrations``: ``finished_at``
  set and ``rolled_back_at`` null |
| Diesel | ``migrations/<YYYY-MM-DD-HHMMSS>_name/up.sql``, by version (dashes ignored); ``metadata.toml``
  ``run_in_transaction`` | ``__diesel_schema_migrations.version`` |
| Atlas | ``migrations/<version>_name.sql`` listed in ``atlas.sum``; ``-- atlas:txmode`` | ``atlas_schema_revisions``:
  ``applied = total``, no ``error`` |
| Liquibase (formatted SQL) | ``--changeset author:id``, in changelog order (root changelog, its includes) |
  ``databasechangelog`` (id, author, filename), ``exectype`` EXECUTED (RERAN and MARK_RAN: not run again either) |
| Django | ``manage.py sqlmigrate`` of each migration, in ``showmigrations --plan`` order, run in the project |
  ``django_migrations`` (app, name) |

A migration the tool runs outside a transaction (diesel ``run_in_transaction = false``, Atlas ``txmode none``,
Liquibase ``runInTransaction:false``, a Django migration with ``atomic = False``) has its steps in
``Step.outside_transaction`` (``MigrationPlan.outside_transaction`` lists them): apply runs each alone, outside
any transaction.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from xml.etree import ElementTree

import psycopg
from psycopg import sql

from ..errors import PlanError
from ..sqlparse import read_sql_file, split_statements
from .migration_dirs import history_table

if TYPE_CHECKING:
    from .model import MigrationPlan


@dataclass(frozen=True)
class ToolMigration:
    """One migration as its tool sees it."""

    key: str  # what the tool's history table calls it
    origin: str  # what findings call it
    text: str  # its SQL
    in_transaction: bool = True


class MigrationTool:
    """A tool's layout, order, transaction directives, history table and the command that records an apply."""

    name: ClassVar[str]
    history: ClassVar[str]  # the history table, as people know it

    def root(self, path: Path) -> Path | None:
        """The folder (or changelog file) this tool reads under ``path``, or None when ``path`` is not its layout."""
        raise NotImplementedError

    def migrations(self, root: Path, skip: frozenset[str] = frozenset()) -> tuple[list[ToolMigration], list[str]]:
        """Every migration in the order the tool applies them, and notes. A tool whose SQL is costly to render
        leaves the text of those in ``skip`` (applied already) empty."""
        raise NotImplementedError

    def applied(self, conn: psycopg.Connection[Any]) -> tuple[set[str], list[str]] | None:
        """The keys the history table marks as applied, and a note; None when there is no history table."""
        raise NotImplementedError

    def record(self, root: Path, pending: list[ToolMigration]) -> str:
        """The commands that record ``pending`` as applied in the tool's history, once apply has run them."""
        raise NotImplementedError

    def is_applied(self, key: str, applied: set[str]) -> bool:
        """Whether the history's ``applied`` keys include ``key``."""
        return key in applied


# --- Prisma ---------------------------------------------------------------------------------------------


class Prisma(MigrationTool):
    name = "prisma"
    history = "_prisma_migrations"

    def root(self, path: Path) -> Path | None:
        for folder in (path, path / "migrations", path / "prisma" / "migrations"):
            if folder.is_dir() and ((folder / "migration_lock.toml").exists()
                                    or any((d / "migration.sql").is_file() for d in folder.iterdir() if d.is_dir())):
                return folder
        return None

    def migrations(self, root: Path, skip: frozenset[str] = frozenset()) -> tuple[list[ToolMigration], list[str]]:
        lock = root / "migration_lock.toml"
        if lock.exists():
            provider = tomllib.loads(lock.read_text(encoding="utf-8")).get("provider")
            if provider not in (None, "postgresql", "postgres"):
                raise PlanError(f"{lock} says provider = {provider!r}: these migrations are not PostgreSQL's")
        found = [ToolMigration(d.name, f"{d.name}/migration.sql", read_sql_file(d / "migration.sql"))
                 for d in sorted(root.iterdir(), key=lambda d: d.name) if (d / "migration.sql").is_file()]
        return found, []

    def applied(self, conn: psycopg.Connection[Any]) -> tuple[set[str], list[str]] | None:
        table = history_table(conn, "_prisma_migrations")
        if table is None:
            return None
        rows = conn.execute(sql.SQL("SELECT migration_name, finished_at IS NOT NULL, rolled_back_at IS NOT NULL "
                                    "FROM {} ORDER BY started_at").format(table)).fetchall()
        applied = {name for name, finished, rolled_back in rows if finished and not rolled_back}
        failed = [name for name, finished, rolled_back in rows if not finished and not rolled_back
                  and name not in applied]
        if failed:
            raise PlanError(
                f"_prisma_migrations says migration {failed[0]} started and did not finish: Prisma runs nothing "
                "more until it is resolved. Fix the database by hand, then `npx prisma migrate resolve "
                f"--rolled-back {failed[0]}` (or `--applied {failed[0]}` if it did apply)")
        return applied, [f"{table.as_string(conn)} (prisma): {len(applied)} applied migration(s)"]

    def record(self, root: Path, pending: list[ToolMigration]) -> str:
        return "\n".join(f"npx prisma migrate resolve --applied {shlex.quote(m.key)}" for m in pending)


# --- Diesel ---------------------------------------------------------------------------------------------

_DIESEL = re.compile(r"^(?P<version>\d{4}-\d{2}-\d{2}-\d{6}|\d{14}|\d+)_(?P<name>.+)$")


class Diesel(MigrationTool):
    name = "diesel"
    history = "__diesel_schema_migrations"

    def root(self, path: Path) -> Path | None:
        for folder in (path, path / "migrations"):
            if folder.is_dir() and any(_DIESEL.match(d.name) and (d / "up.sql").is_file()
                                       for d in folder.iterdir() if d.is_dir()):
                return folder
        return None

    def migrations(self, root: Path, skip: frozenset[str] = frozenset()) -> tuple[list[ToolMigration], list[str]]:
        found: list[tuple[str, ToolMigration]] = []
        for d in root.iterdir():
            m = _DIESEL.match(d.name)
            if not d.is_dir() or m is None or not (d / "up.sql").is_file():
                continue
            version = m["version"].replace("-", "")
            metadata = d / "metadata.toml"
            in_transaction = True
            if metadata.exists():
                in_transaction = bool(tomllib.loads(metadata.read_text(encoding="utf-8")).get("run_in_transaction",
                                                                                              True))
            found.append((version, ToolMigration(version, f"{d.name}/up.sql", read_sql_file(d / "up.sql"),
                                                 in_transaction)))
        seen: dict[str, str] = {}
        for version, migration in found:
            if version in seen:
                raise PlanError(f"{seen[version]} and {migration.origin} have the same diesel version {version}: "
                                "the order between them is undefined. Rename one of them.")
            seen[version] = migration.origin
        return [m for _, m in sorted(found, key=lambda f: f[0])], []

    def applied(self, conn: psycopg.Connection[Any]) -> tuple[set[str], list[str]] | None:
        table = history_table(conn, "__diesel_schema_migrations")
        if table is None:
            return None
        applied = {str(r[0]) for r in conn.execute(sql.SQL("SELECT version FROM {}").format(table)).fetchall()}
        return applied, [f"{table.as_string(conn)} (diesel): {len(applied)} applied version(s)"]

    def record(self, root: Path, pending: list[ToolMigration]) -> str:
        statement = sql.SQL("INSERT INTO {} (version) VALUES {};").format(
            sql.Identifier(self.history), sql.SQL(", ").join(sql.SQL("({})").format(sql.Literal(m.key)) for m in pending))
        return f"diesel has no command that marks a migration as run; run this SQL:\n{statement.as_string(None)}"


# --- Atlas ----------------------------------------------------------------------------------------------

_ATLAS_FILE = re.compile(r"^(?P<version>[^_]+?)(?:_(?P<name>.+))?\.sql$")
_ATLAS_TXMODE = re.compile(r"^--\s*atlas:txmode\s+(?P<mode>\w+)\s*$", re.IGNORECASE)


class Atlas(MigrationTool):
    name = "atlas"
    history = "atlas_schema_revisions"

    def root(self, path: Path) -> Path | None:
        for folder in (path, path / "migrations"):
            if (folder / "atlas.sum").is_file():
                return folder
        return None

    def migrations(self, root: Path, skip: frozenset[str] = frozenset()) -> tuple[list[ToolMigration], list[str]]:
        lines = (root / "atlas.sum").read_text(encoding="utf-8").splitlines()
        listed = [line.rsplit(" ", 1)[0] for line in lines[1:] if line.strip()]
        on_disk = sorted(p.name for p in root.iterdir() if p.is_file() and p.name.endswith(".sql"))
        unlisted = [n for n in on_disk if n not in listed]
        missing = [n for n in listed if not (root / n).is_file()]
        if unlisted or missing:
            what = (f"{', '.join(unlisted)} {'is' if len(unlisted) == 1 else 'are'} not in atlas.sum" if unlisted
                    else f"atlas.sum lists {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not "
                    "in the folder")
            raise PlanError(f"{root}: {what}; Atlas refuses a directory whose sum does not match. Run `atlas migrate "
                            "hash` after reviewing the files")
        found = []
        for name in sorted(listed):  # Atlas applies files in lexicographic order of their names (versions)
            m = _ATLAS_FILE.match(name)
            if m is None:
                raise PlanError(f"{name} in atlas.sum is not named <version>_<name>.sql")
            text = read_sql_file(root / name)
            found.append(ToolMigration(m["version"], name, text, _txmode(text) != "none"))
        return found, []

    def applied(self, conn: psycopg.Connection[Any]) -> tuple[set[str], list[str]] | None:
        table = history_table(conn, "atlas_schema_revisions.atlas_schema_revisions", "atlas_schema_revisions")
        if table is None:
            return None
        rows = conn.execute(sql.SQL("SELECT version, applied, total, coalesce(error, '') FROM {}").format(
            table)).fetchall()
        partial = [(v, a, t, e) for v, a, t, e in rows if a < t or e]
        if partial:
            version, done, total, error = partial[0]
            raise PlanError(
                f"atlas_schema_revisions says version {version} stopped after {done} of {total} statements"
                + (f" ({error})" if error else "") + ": Atlas resumes it from there. Fix the cause, then run "
                "`atlas migrate apply`, or `atlas migrate set` to the version the database is really at")
        applied = {str(v) for v, _, _, _ in rows}
        return applied, [f"{table.as_string(conn)} (atlas): {len(applied)} applied version(s)"]

    def record(self, root: Path, pending: list[ToolMigration]) -> str:
        return (f"atlas migrate set {shlex.quote(pending[-1].key)} --dir {shlex.quote('file://' + str(root))} "
                '--url "$DATABASE_URL"')


def _txmode(text: str) -> str:
    """The file's ``-- atlas:txmode`` directive (in the comments that open it), or "file" (Atlas's default)."""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("--"):
            break
        if m := _ATLAS_TXMODE.match(stripped):
            mode = m["mode"].lower()
            if mode not in ("none", "file", "all"):
                raise PlanError(f"-- atlas:txmode {mode}: Atlas knows none, file and all")
            return mode
    return "file"


# --- Liquibase, formatted SQL ---------------------------------------------------------------------------

_FORMATTED = re.compile(r"^\s*--\s*liquibase\s+formatted\s+sql\b", re.IGNORECASE)
_CHANGESET = re.compile(r'^\s*--\s*changeset\s+(?P<author>"[^"]+"|[^:\s]+):(?P<id>\S+)(?P<attrs>.*)$', re.IGNORECASE)
_ROLLBACK = re.compile(r"^\s*--\s*rollback\b", re.IGNORECASE)
_ATTRIBUTE = re.compile(r"(?P<key>[A-Za-z]+):(?P<value>\"[^\"]*\"|\S+)")
_CHANGELOG_NAMES = ("db.changelog-master", "changelog-master", "changelog", "db.changelog")


class Liquibase(MigrationTool):
    name = "liquibase"
    history = "databasechangelog"

    def root(self, path: Path) -> Path | None:
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            if _FORMATTED.match(text) or (path.suffix in (".xml", ".yaml", ".yml") and "databaseChangeLog" in text):
                return path
            return None
        if path.is_dir():
            for stem in _CHANGELOG_NAMES:
                for suffix in (".xml", ".yaml", ".yml", ".sql"):
                    candidate = path / f"{stem}{suffix}"
                    if candidate.is_file() and self.root(candidate):
                        return candidate
        return None

    def migrations(self, root: Path, skip: frozenset[str] = frozenset()) -> tuple[list[ToolMigration], list[str]]:
        notes: list[str] = []
        found: list[ToolMigration] = []
        for file in _changelog_files(root, root.parent, set()):
            found.extend(_changesets(file, root.parent, notes))
        keys = [m.key for m in found]
        duplicate = next((k for k in keys if keys.count(k) > 1), None)
        if duplicate:
            raise PlanError(f"changeset {duplicate} appears twice in the changelog: Liquibase refuses that")
        return found, notes

    def applied(self, conn: psycopg.Connection[Any]) -> tuple[set[str], list[str]] | None:
        table = history_table(conn, "databasechangelog")
        if table is None:
            return None
        rows = conn.execute(sql.SQL("SELECT id, author, filename FROM {} WHERE exectype IN "
                                    "('EXECUTED', 'RERAN', 'MARK_RAN')").format(table)).fetchall()
        applied = {_liquibase_key(str(i), str(a), _normal_path(str(f))) for i, a, f in rows}
        return applied, [f"{table.as_string(conn)} (liquibase): {len(applied)} changeset(s) run"]

    def record(self, root: Path, pending: list[ToolMigration]) -> str:
        return f"liquibase changelog-sync --changelog-file={shlex.quote(str(root))}"

    def is_applied(self, key: str, applied: set[str]) -> bool:
        # databasechangelog keeps the path as Liquibase was given it (relative to its search path, or to the
        # changelog that includes it): the same id and author, and one path ending the other, is the same changeset
        if key in applied:
            return True
        changeset, _, filename = key.partition("@")
        for other in applied:
            other_changeset, _, other_filename = other.partition("@")
            if other_changeset == changeset and (other_filename.endswith("/" + filename)
                                                 or filename.endswith("/" + other_filename)):
                return True
        return False


def _liquibase_key(changeset_id: str, author: str, filename: str) -> str:
    return f"{author}:{changeset_id}@{filename}"


def _normal_path(filename: str) -> str:
    """A changelog path as databasechangelog stores it, compared without ``classpath:`` or a leading ``./``."""
    text = filename.replace("\\", "/").removeprefix("classpath:").lstrip("/")
    return text.removeprefix("./")


def _changelog_files(changelog: Path, base: Path, seen: set[Path]) -> list[Path]:
    """The formatted SQL files of ``changelog`` (XML, YAML or formatted SQL), in order, includes expanded."""
    resolved = changelog.resolve()
    if resolved in seen:
        raise PlanError(f"{changelog} includes itself")
    seen.add(resolved)
    if changelog.suffix == ".sql":
        if not _FORMATTED.match(changelog.read_text(encoding="utf-8", errors="replace")):
            raise PlanError(f"{changelog} does not start with --liquibase formatted sql")
        return [changelog]
    includes: list[tuple[str, str, bool]] = []  # (kind, path, relative to this changelog)
    if changelog.suffix == ".xml":
        for element in ElementTree.parse(changelog).getroot():
            tag = element.tag.rsplit("}", 1)[-1]
            relative = element.get("relativeToChangelogFile", "false").lower() == "true"
            if tag == "include":
                includes.append(("file", element.get("file", ""), relative))
            elif tag == "includeAll":
                includes.append(("all", element.get("path", ""), relative))
            elif tag == "changeSet":
                raise PlanError(f"{changelog}: an XML changeSet is not read here; only formatted SQL changelogs "
                                "(--liquibase formatted sql) and the XML or YAML changelogs that include them")
    else:
        try:
            import yaml
        except ImportError:
            raise PlanError(f"{changelog} is YAML: pip install PyYAML to read it") from None
        document = yaml.safe_load(changelog.read_text(encoding="utf-8")) or {}
        for entry in document.get("databaseChangeLog") or []:
            if "include" in entry:
                item = entry["include"]
                includes.append(("file", str(item.get("file", "")), bool(item.get("relativeToChangelogFile"))))
            elif "includeAll" in entry:
                item = entry["includeAll"]
                includes.append(("all", str(item.get("path", "")), bool(item.get("relativeToChangelogFile"))))
            elif "changeSet" in entry:
                raise PlanError(f"{changelog}: a YAML changeSet is not read here; only formatted SQL changelogs")
    files: list[Path] = []
    for kind, name, relative in includes:
        target = (changelog.parent if relative else _search_path(changelog, base, _normal_path(name))) / \
            _normal_path(name)
        if kind == "file":
            if not target.is_file():
                raise PlanError(f"{changelog} includes {name}, which does not exist ({target})")
            files.extend(_changelog_files(target, base, seen))
        else:
            if not target.is_dir():
                raise PlanError(f"{changelog} includes all of {name}, which is not a folder ({target})")
            for path in sorted(p for p in target.iterdir() if p.suffix in (".sql", ".xml", ".yaml", ".yml")):
                files.extend(_changelog_files(path, base, seen))
    return files


def _search_path(changelog: Path, base: Path, name: str) -> Path:
    """Where Liquibase finds a path not relative to its changelog: its search path, which is not written down (the
    folder it runs in, a classpath root). The changelog's folder or the nearest folder above it that holds
    ``name``."""
    for folder in (base, *changelog.parents[:8]):
        if (folder / name).exists():
            return folder
    return base


def _changesets(file: Path, base: Path, notes: list[str]) -> list[ToolMigration]:
    """The changesets of one formatted SQL file: each one's SQL (its --rollback lines left out)."""
    filename = file.relative_to(base).as_posix() if file.is_relative_to(base) else file.as_posix()
    lines = read_sql_file(file).splitlines()
    found: list[ToolMigration] = []
    current: dict[str, Any] | None = None

    def close() -> None:
        if current is None:
            return
        attrs: dict[str, str] = current["attrs"]
        label = f"{filename} changeset {current['author']}:{current['id']}"
        dbms = [d.strip().lower() for d in attrs.get("dbms", "").split(",") if d.strip()]
        if dbms and not any(d in ("postgresql", "all") for d in dbms) or "!postgresql" in dbms:
            notes.append(f"{label}: dbms {attrs['dbms']}, not run on PostgreSQL: left out")
            return
        for key in ("context", "contextFilter", "labels"):
            if key in attrs:
                notes.append(f"{label}: {key} {attrs[key]}; included (the {key} liquibase runs with is not known "
                             "here)")
        if attrs.get("splitStatements", "true").lower() == "false" or "endDelimiter" in attrs:
            notes.append(f"{label}: splitStatements/endDelimiter are not honoured; its SQL is split by PostgreSQL's "
                         "own parser")
        # keep the file's line numbers: a parse error points at the line in the file
        text = "\n" * current["line"] + "\n".join(current["body"])
        key = _liquibase_key(current["id"], current["author"], _normal_path(filename))
        found.append(ToolMigration(key, label, text,
                                   attrs.get("runInTransaction", "true").lower() != "false"))

    for number, line in enumerate(lines):
        if m := _CHANGESET.match(line):
            close()
            attrs = {a["key"]: a["value"].strip('"') for a in _ATTRIBUTE.finditer(m["attrs"])}
            current = {"author": m["author"].strip('"'), "id": m["id"], "attrs": attrs, "line": number + 1,
                       "body": []}
        elif current is not None:
            current["body"].append("" if _ROLLBACK.match(line) else line)
    close()
    return found


# --- Django ---------------------------------------------------------------------------------------------

_SHOWMIGRATIONS = re.compile(r"^\[(?P<mark>[ X-])\]\s+(?P<app>[\w.]+)\.(?P<name>\w+)")


class Django(MigrationTool):
    name = "django"
    history = "django_migrations"

    def root(self, path: Path) -> Path | None:
        if path.name == "manage.py" and path.is_file():
            return path
        if path.is_dir() and (path / "manage.py").is_file():
            return path / "manage.py"
        return None

    def migrations(self, root: Path, skip: frozenset[str] = frozenset()) -> tuple[list[ToolMigration], list[str]]:
        out = _manage(root, "showmigrations", "--plan")
        planned = [(m["app"], m["name"]) for line in out.splitlines() if (m := _SHOWMIGRATIONS.match(line.strip()))]
        if not planned and out.strip():
            raise PlanError(f"`manage.py showmigrations --plan` printed no migration this reader knows: {out[:200]}")
        found = []
        for app, name in planned:
            key = f"{app}.{name}"
            if key in skip:  # applied: not rendered (sqlmigrate starts Django once per migration)
                found.append(ToolMigration(key, key, ""))
                continue
            text = _manage(root, "sqlmigrate", app, name)
            # sqlmigrate wraps an atomic migration in BEGIN/COMMIT; a migration with atomic = False has none
            atomic = bool(re.search(r"^\s*BEGIN\s*;", text, re.IGNORECASE | re.MULTILINE))
            found.append(ToolMigration(key, key, text, atomic))
        return found, []

    def applied(self, conn: psycopg.Connection[Any]) -> tuple[set[str], list[str]] | None:
        table = history_table(conn, "django_migrations")
        if table is None:
            return None
        rows = conn.execute(sql.SQL("SELECT app, name FROM {}").format(table)).fetchall()
        return {f"{a}.{n}" for a, n in rows}, [f"{table.as_string(conn)} (django): {len(rows)} applied migration(s)"]

    def record(self, root: Path, pending: list[ToolMigration]) -> str:
        last: dict[str, str] = {}
        for m in pending:
            app, name = m.key.rsplit(".", 1)
            last[app] = name
        return "\n".join(f"python {shlex.quote(str(root))} migrate --fake {shlex.quote(app)} {shlex.quote(name)}"
                         for app, name in last.items())


def _manage(manage: Path, *args: str) -> str:
    """Runs ``manage.py`` in its project with this Python (or $ERD_PREFLIGHT_DJANGO_PYTHON), and its output."""
    python = os.environ.get("ERD_PREFLIGHT_DJANGO_PYTHON") or sys.executable
    try:
        done = subprocess.run([python, manage.name, *args], cwd=manage.parent, capture_output=True, text=True,
                              timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PlanError(f"could not run `{manage.name} {' '.join(args)}` in {manage.parent}: {exc}") from exc
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise PlanError(f"`python {manage.name} {' '.join(args)}` failed in {manage.parent}: {last}. It runs with "
                        f"{python}; set ERD_PREFLIGHT_DJANGO_PYTHON to the project's own Python")
    return done.stdout


# --- the registry ---------------------------------------------------------------------------------------

TOOLS: dict[str, MigrationTool] = {tool.name: tool for tool in (Prisma(), Diesel(), Atlas(), Liquibase(), Django())}


def detect(path: Path) -> tuple[MigrationTool, Path] | None:
    """The tool whose layout ``path`` is, and what it reads there; None when it is none of them."""
    for tool in TOOLS.values():
        root = tool.root(path)
        if root is not None:
            return tool, root
    return None


def plan_from_tool(cls: type[MigrationPlan], tool: MigrationTool, path: Path, *, db: Any = None,
                   history: bool = True) -> MigrationPlan:
    """The pending migrations of ``path`` as ``tool`` reads them (see the module's docstring)."""
    root = tool.root(path)
    if root is None:
        raise PlanError(f"{path} is not a {tool.name} layout: {_LAYOUTS[tool.name]}")
    applied: set[str] = set()
    notes: list[str] = []
    if db is not None and history:
        applied, notes = _applied(tool, db)
    migrations, read_notes = tool.migrations(root, frozenset(applied))
    notes = read_notes + notes
    total = len(migrations)
    pending: list[ToolMigration] = []
    unapplied: list[ToolMigration] = []  # pending, and those without statements: the history records them all
    for m in migrations:
        if tool.is_applied(m.key, applied):
            notes.append(f"{m.origin}: already applied, skipped")
            continue
        unapplied.append(m)
        if not any(True for _ in split_statements(m.text)):
            notes.append(f"{m.origin}: no statements")
        else:
            pending.append(m)
    name = path.name if path.name not in ("migrations", "manage.py") else path.resolve().parent.name
    if total == 0:
        raise PlanError(f"{path} holds no {tool.name} migration: {_LAYOUTS[tool.name]}. An empty plan would check "
                        "nothing, so it is refused")
    plans: list[MigrationPlan] = []
    for m in pending:
        plan = cls.from_sql(m.text, origin=m.origin)
        if not m.in_transaction:
            plan = plan.model_copy(update={"steps": tuple(s.model_copy(update={"outside_transaction": True})
                                                          for s in plan.steps)})
            notes.append(f"{m.origin}: runs outside a transaction ({tool.name}'s directive): apply runs each of its "
                         "statements alone, in phase B")
        plans.append(plan)
    if not plans:
        return cls(steps=(), name=name, notes=tuple(notes) + (
            f"nothing pending: {tool.history} lists all {total} {tool.name} migration(s) as applied",),
            nothing_pending=True)
    return cls.concat(plans, name=name, notes=tuple(notes)).model_copy(
        update={"record_hint": tool.record(root, unapplied)})


def _applied(tool: MigrationTool, db: Any) -> tuple[set[str], list[str]]:
    from ..db import connect, read_only

    database = connect(db)
    with database.connection() as conn, read_only(conn, 30):
        found = tool.applied(conn)
    if found is None:
        return set(), [f"no {tool.history} table: nothing is applied yet"]
    return found


_LAYOUTS = {
    "prisma": "prisma/migrations/<timestamp>_<name>/migration.sql",
    "diesel": "migrations/<YYYY-MM-DD-HHMMSS>_<name>/up.sql",
    "atlas": "migrations/<version>_<name>.sql with atlas.sum",
    "liquibase": "a root changelog (XML, YAML or --liquibase formatted sql) and the formatted SQL files it includes",
    "django": "a Django project's manage.py",
}
