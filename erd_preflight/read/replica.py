"""``read_from``: the hot standby the data checks read, stamped with the WAL position its snapshot saw."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

from ..report.contract import ReplicaStamp
from ..db import redact_url
from ..errors import ReplicaError


# how many times a check the standby cancels to replay WAL (a recovery conflict) runs again, in a new snapshot
REPLICA_RETRIES = 2


class RecoveryConflict(Exception):
    """The standby cancelled a check, or ended its session, to replay WAL."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Replica:
    """The hot standby the data checks read (``read_from``): checked to be a standby of the same cluster, its
    connections opened and closed here, and each snapshot stamped with the WAL position it saw."""

    def __init__(self, url: str, primary: psycopg.Connection[Any], timeout_s: float) -> None:
        self.url, self.primary, self.timeout_s = url, primary, timeout_s
        self.shown = redact_url(make_url(url)) if "://" in url else "the read_from server"
        self._conns: list[psycopg.Connection[Any]] = []
        self._stamp: ReplicaStamp | None = None
        self.snapshots = 0

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=max(int(self.timeout_s), 2),
                                   application_name="erd_preflight read_from")
        except psycopg.Error as exc:
            reason = " ".join(str(exc).split())
            stop = "" if reason.endswith((".", "?", "!")) else "."
            raise ReplicaError(f"cannot connect to read_from {self.shown}: {reason}{stop} Check the URL and that the "
                               "standby accepts connections (hot_standby = on).") from exc
        self._conns.append(conn)
        return conn

    def __enter__(self) -> Replica:
        self.conn = self._connect()
        recovering = self.conn.execute("SELECT pg_is_in_recovery()").fetchone()
        if not recovering or not recovering[0]:
            raise ReplicaError(f"read_from {self.shown} is not a hot standby (pg_is_in_recovery() is false): the "
                               "data checks read a standby of the database, never another primary. Give the URL "
                               "of a streaming replica of it, or leave read_from out to read the primary.")
        ids = []
        for conn in (self.primary, self.conn):
            try:
                ids.append(conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()[0])  # type: ignore[index]
            except psycopg.Error:  # the role may not read pg_control_system(): the check is skipped
                conn.rollback() if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE else None
        if len(ids) == 2 and ids[0] != ids[1]:
            raise ReplicaError(f"read_from {self.shown} is a standby of another cluster (system identifier "
                               f"{ids[1]}, the database's is {ids[0]}): give a standby of the database itself.")
        return self

    def __exit__(self, *exc: object) -> None:
        for conn in self._conns:
            with contextlib.suppress(Exception):
                conn.close()

    def reopen(self) -> psycopg.Connection[Any]:
        with contextlib.suppress(Exception):
            self.conn.close()
        self.conn = self._connect()
        return self.conn

    @contextlib.contextmanager
    def open(self) -> Iterator[psycopg.Connection[Any]]:
        conn = self._connect()
        try:
            yield conn
        finally:
            conn.close()

    def stamp(self, conn: psycopg.Connection[Any]) -> None:
        """Called when a snapshot begins on the standby: where its replay stood, against the primary's WAL."""
        self.snapshots += 1
        lsn, seconds = conn.execute(
            "SELECT pg_last_wal_replay_lsn()::text, coalesce(extract(epoch FROM now() - "
            "pg_last_xact_replay_timestamp()), 0)::float8").fetchone()  # type: ignore[misc]
        primary_lsn = self.primary.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]  # type: ignore[index]
        behind = conn.execute("SELECT greatest(pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn), 0)::bigint",
                              (primary_lsn, lsn)).fetchone()[0]  # type: ignore[index]
        self._stamp = ReplicaStamp(url=self.shown, replay_lsn=lsn, lag_bytes=int(behind),
                                   lag_seconds=round(float(seconds), 3) if behind else 0.0)

    def stamped(self, conflicts: int) -> ReplicaStamp | None:
        if self._stamp is None:
            return None
        return self._stamp.model_copy(update={"snapshots": self.snapshots, "conflicts": conflicts})
