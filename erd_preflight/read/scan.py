"""Long scans in pieces: a large table in block ranges (a TID Range Scan, PostgreSQL 14+), a partitioned table
partition by partition. The pieces are counted over one or more connections that share one snapshot, so the sum
is exactly what one query would count; between pieces a scan reports progress, gives its first blocking answer
early, and can be cancelled, with nothing left running on the server."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ContextManager

import psycopg
from psycopg import errors as pgerrors
from psycopg import sql
from pydantic import BaseModel, ConfigDict

from ..errors import PreflightCancelled

OpenConnection = Callable[[], ContextManager[psycopg.Connection[Any]]]


class Cancel:
    """Stops a preflight from another thread (a panel's Cancel button): ``cancel()`` cancels the query running on
    the server (as ``pg_cancel_backend`` does) on every connection the preflight uses, and ``run_preflight`` raises
    ``PreflightCancelled``. Pass one as ``run_preflight(..., cancel=...)``."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._conns: set[psycopg.Connection[Any]] = set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def cancel(self) -> None:
        self._event.set()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            _cancel_query(conn)

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise PreflightCancelled("preflight was cancelled; the query it was running was cancelled on the server "
                                     "too, and nothing was changed. Run it again to get a report.")

    @contextlib.contextmanager
    def watching(self, conn: psycopg.Connection[Any]) -> Iterator[None]:
        """While the block runs, ``cancel()`` also cancels what ``conn`` runs."""
        with self._lock:
            self._conns.add(conn)
        try:
            self.raise_if_cancelled()
            yield
        finally:
            with self._lock:
                self._conns.discard(conn)


def _cancel_query(conn: psycopg.Connection[Any]) -> None:
    with contextlib.suppress(Exception):  # a connection already closed or idle has nothing to cancel
        if not conn.closed:
            conn.cancel_safe(timeout=10)


class ScanProgress(BaseModel):
    """How far a long scan is: rows read of the rows in all (the catalog's estimate until the scan ends)."""

    model_config = ConfigDict(frozen=True)

    check_id: str
    step: int
    table: str
    partition: str | None = None
    rows_done: int
    rows_total: int
    pieces_done: int
    pieces_total: int
    elapsed_s: float
    violations: int = 0

    @property
    def eta_s(self) -> float | None:
        if not self.pieces_done or self.pieces_done >= self.pieces_total:
            return 0.0 if self.pieces_done >= self.pieces_total else None
        share = min(self.rows_done / self.rows_total, 1.0) if self.rows_total else self.pieces_done / self.pieces_total
        return self.elapsed_s * (1 - share) / share if share else None

    def line(self) -> str:
        """One line for a terminal or a panel: ``orders: 4,000,000 of ~20,000,000 rows (20%) · 0.8 s · ETA 3.2 s``."""
        total = max(self.rows_total, self.rows_done)
        share = f" ({100 * self.rows_done / total:.0f}%)" if total else ""
        eta = self.eta_s
        where = f"{self.table} partition {self.partition}" if self.partition else self.table
        found = f" · {self.violations:,} violating so far" if self.violations else ""
        return (f"step {self.step} {self.check_id} {where}: {self.rows_done:,} of ~{total:,} rows{share} · "
                f"{self.elapsed_s:.1f} s" + (f" · ETA {eta:.1f} s" if eta else "") + found)


@dataclass(frozen=True)
class Piece:
    """A part of a table's rows: a relation (the table or one leaf partition), perhaps one block range of it."""

    relation: sql.Composable
    partition: str | None
    first_block: int | None = None  # None: the whole relation
    end_block: int | None = None  # None: to the relation's end (blocks added after the size was read included)
    rows: float = 0.0  # the catalog's estimate

    def where(self) -> sql.Composable:
        if self.first_block is None:
            return sql.SQL("")
        low = sql.SQL("ctid >= {}::tid").format(sql.Literal(f"({self.first_block},0)"))
        if self.end_block is None:
            return sql.SQL(" WHERE ") + low
        return sql.SQL(" WHERE {} AND ctid < {}::tid").format(low, sql.Literal(f"({self.end_block},0)"))

    def where_and(self, predicate: sql.Composable) -> sql.Composable:
        """This piece's rows for which ``predicate`` holds, as a WHERE clause."""
        if self.first_block is None:
            return sql.SQL(" WHERE {}").format(predicate)
        return sql.SQL("{} AND ({})").format(self.where(), predicate)


_EXTENT = (
    "SELECT c.oid, c.relkind, c.relhassubclass, pg_relation_size(c.oid) / current_setting('block_size')::bigint, "
    "c.reltuples FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = %s AND c.relname = %s"
)
_LEAVES = (
    "SELECT n.nspname, c.relname, c.relkind, pg_relation_size(c.oid) / current_setting('block_size')::bigint, "
    "c.reltuples FROM pg_partition_tree(%s::oid::regclass) t JOIN pg_class c ON c.oid = t.relid "
    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE t.isleaf ORDER BY n.nspname, c.relname"
)


def plan_pieces(conn: psycopg.Connection[Any], table: tuple[str, str], chunk_rows: int) -> list[Piece] | None:
    """The pieces of a table worth scanning apart, or None for one query: a partitioned table's leaf partitions
    (a large one in block ranges), a large plain table's block ranges. The first range of a table is small, so
    the first answer comes within a few percent of a full scan."""
    row = conn.execute(_EXTENT, table).fetchone()
    if row is None:
        return None
    oid, relkind, has_children, blocks, estimate = row
    if relkind == "p":
        pieces: list[Piece] = []
        for schema, name, kind, leaf_blocks, leaf_rows in conn.execute(_LEAVES, (oid,)).fetchall():
            relation = sql.Identifier(schema, name)
            label = name if schema == table[0] else f"{schema}.{name}"
            ranges = _ranges(leaf_blocks, leaf_rows, chunk_rows) if kind == "r" else None
            pieces.extend([Piece(relation, label, a, b, r) for a, b, r in ranges] if ranges
                          else [Piece(relation, label, rows=float(max(leaf_rows, 0)))])
        return pieces or None
    if relkind != "r" or has_children:
        return None
    ranges = _ranges(blocks, estimate, chunk_rows)
    if ranges is None:
        return None
    return [Piece(sql.Identifier(*table), None, a, b, r) for a, b, r in ranges]


# rows per 8 kB block assumed for a table never analyzed (reltuples -1): narrow rows, so a large table is split
UNANALYZED_ROWS_PER_BLOCK = 100


def _ranges(blocks: int, rows: float, chunk_rows: int) -> list[tuple[int, int | None, float]] | None:
    if rows <= 0:
        rows = float(blocks * UNANALYZED_ROWS_PER_BLOCK)
    if rows <= chunk_rows or blocks < 2:
        return None
    per_block = rows / blocks
    size = max(int(chunk_rows / per_block), 1)
    first = max(min(size, blocks // 256), 1)  # an early first answer: under 0.5% of the table
    bounds = [0, first]
    while bounds[-1] + size < blocks:
        bounds.append(bounds[-1] + size)
    ranges: list[tuple[int, int | None, float]] = []
    for i, start in enumerate(bounds):
        end = bounds[i + 1] if i + 1 < len(bounds) else None
        ranges.append((start, end, ((end or blocks) - start) * per_block))
    return ranges


def begin_snapshot(conn: psycopg.Connection[Any], timeout_s: float, snapshot: str | None = None) -> None:
    """A REPEATABLE READ READ ONLY transaction (importing ``snapshot`` if given), with the settings of every
    check transaction: timeouts, row security off (a policy fails the query rather than hiding rows),
    standard_conforming_strings on."""
    conn.execute("BEGIN TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
    if snapshot is not None:
        conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
    ms = f"{max(1, int(timeout_s * 1000))}ms"
    conn.execute("SELECT set_config('statement_timeout', %s, true), set_config('lock_timeout', %s, true), "
                 "set_config('row_security', 'off', true), set_config('standard_conforming_strings', 'on', true)",
                 (ms, ms))


class PieceCounter:
    """Runs one counting query per piece, on ``conn`` alone or on ``workers`` connections that import ``snapshot``,
    and hands each piece's row to ``on_piece`` (in the calling thread) as soon as it is counted. ``on_piece``
    returns False to stop: the queries still running are cancelled on the server."""

    def __init__(self, conn: psycopg.Connection[Any], *, open_connection: OpenConnection | None, workers: int,
                 snapshot: str | None, timeout_s: float, cancel: Cancel | None) -> None:
        self.conn, self.open_connection, self.workers = conn, open_connection, workers
        self.snapshot, self.timeout_s, self.cancel = snapshot, timeout_s, cancel

    def count(self, pieces: list[Piece], query: Callable[[Piece], sql.Composable],
              on_piece: Callable[[int, tuple[Any, ...]], bool]) -> None:
        deadline = time.monotonic() + self.timeout_s
        workers = min(self.workers, len(pieces) - 1)
        parallel = workers > 1 and self.snapshot is not None and self.open_connection is not None
        # The first piece (small) runs at once on the connection already open: its answer does not wait for
        # the other connections to open.
        for index, piece in enumerate(pieces):
            if self.cancel is not None:
                self.cancel.raise_if_cancelled()
            _remaining(deadline)
            row = self.conn.execute(query(piece)).fetchone()
            assert row is not None
            if not on_piece(index, tuple(row)):
                return
            if parallel:
                self._in_parallel(pieces, query, on_piece, workers, deadline, start=1)
                return

    def _in_parallel(self, pieces: list[Piece], query: Callable[[Piece], sql.Composable],
                     on_piece: Callable[[int, tuple[Any, ...]], bool], workers: int, deadline: float,
                     start: int) -> None:
        todo: queue.Queue[int] = queue.Queue()
        for index in range(start, len(pieces)):
            todo.put(index)
        done: queue.Queue[tuple[int, tuple[Any, ...] | BaseException]] = queue.Queue()
        stop = threading.Event()
        live: list[psycopg.Connection[Any]] = []
        lock = threading.Lock()
        assert self.open_connection is not None and self.snapshot is not None
        open_connection, snapshot = self.open_connection, self.snapshot
        rendered = [query(p) for p in pieces]

        def work() -> None:
            try:
                with open_connection() as conn:
                    with lock:
                        if stop.is_set():
                            return
                        live.append(conn)
                    watch = self.cancel.watching(conn) if self.cancel is not None else contextlib.nullcontext()
                    with watch:
                        begin_snapshot(conn, self.timeout_s, snapshot)
                        while not stop.is_set():
                            try:
                                index = todo.get_nowait()
                            except queue.Empty:
                                break
                            row = conn.execute(rendered[index]).fetchone()
                            assert row is not None
                            done.put((index, tuple(row)))
                        conn.execute("ROLLBACK")
            except BaseException as exc:  # noqa: BLE001 (handed to the calling thread, which raises it)
                if not stop.is_set():
                    done.put((-1, exc))

        threads = [threading.Thread(target=work, name=f"erd-preflight-scan-{i}", daemon=True) for i in range(workers)]
        for thread in threads:
            thread.start()
        received = start
        try:
            while received < len(pieces):
                if self.cancel is not None:
                    self.cancel.raise_if_cancelled()
                try:
                    index, row = done.get(timeout=min(0.2, max(deadline - time.monotonic(), 0.001)))
                except queue.Empty:
                    _remaining(deadline)
                    if not any(t.is_alive() for t in threads) and done.empty():
                        raise psycopg.OperationalError("every scanning connection ended before the scan did")
                    continue
                if isinstance(row, BaseException):
                    raise row
                received += 1
                if not on_piece(index, row):
                    return
        finally:
            stop.set()
            with lock:
                running = list(live)
            for conn in running:
                _cancel_query(conn)
            for thread in threads:
                thread.join(timeout=30)


def _remaining(deadline: float) -> None:
    if time.monotonic() > deadline:
        raise pgerrors.QueryCanceled("canceling statement due to statement timeout (the check's time is up)")
