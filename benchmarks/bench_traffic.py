"""What an apply does to the application's writers: one writer inserts and updates valid rows, each in its own
transaction, while the plan below is applied (a) as written in one transaction (psql -1, Flyway, golang-migrate)
and (b) by erd_preflight's apply (its online forms; the preflight runs before the writer starts). Measured in one
run on the embedded server (or --url):

    python benchmarks/bench_traffic.py --rows 2000000

Printed: each apply's time and the writer's longest stall during it, and their ratios (b)/(a); then, for each of
the first three steps applied alone as written (the FK's as-written form is not one apply runs), the hold the
preflight estimated (``report.locks``) next to the writer's longest stall while it ran. The plan:

    ALTER TABLE t ALTER COLUMN a SET NOT NULL;
    ALTER TABLE t ADD CONSTRAINT t_b_key UNIQUE (b);
    ALTER TABLE t ADD CONSTRAINT t_c_check CHECK (c >= 0);
    ALTER TABLE t ADD CONSTRAINT t_ref_fkey FOREIGN KEY (ref) REFERENCES p (id);
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import threading
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import erd_preflight as ep  # noqa: E402
from erd_preflight.db import embedded_url  # noqa: E402

SCHEMA = "erd_preflight_bench_traffic"
PLAN = """ALTER TABLE t ALTER COLUMN a SET NOT NULL;
ALTER TABLE t ADD CONSTRAINT t_b_key UNIQUE (b);
ALTER TABLE t ADD CONSTRAINT t_c_check CHECK (c >= 0);
ALTER TABLE t ADD CONSTRAINT t_ref_fkey FOREIGN KEY (ref) REFERENCES p (id);"""
PARENTS = 1000


def build(url: str, rows: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        conn.execute(f"CREATE SCHEMA {SCHEMA}")
        conn.execute(f"SET search_path TO {SCHEMA}")
        conn.execute("CREATE TABLE p (id int PRIMARY KEY)")
        conn.execute("INSERT INTO p SELECT generate_series(1, %s)", (PARENTS,))
        conn.execute("CREATE TABLE t (id bigint, a int, b bigint, c int, ref int)")
        conn.execute("INSERT INTO t SELECT g, g % 1000, g, g % 100, 1 + g % %s FROM generate_series(1, %s) g"
                     .replace("%s", "{}").format(PARENTS, rows))
        conn.execute("CREATE INDEX t_id ON t (id)")  # the writer's updates find their row by id
        conn.execute("VACUUM ANALYZE p, t")


class Writer(threading.Thread):
    """Inserts and updates valid rows, each in its own transaction, and keeps each one's latency."""

    def __init__(self, url: str, rows: int, start: int = 0) -> None:
        super().__init__(daemon=True)
        self.url, self.rows = url, rows
        self.latencies: list[tuple[float, float]] = []  # (started, seconds)
        self.stop = threading.Event()
        self.next_id = rows + 1 + start  # ids (and b values) of its own: a later writer's do not collide

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True, options=f"-c search_path={SCHEMA}") as conn:
            while not self.stop.is_set():
                started = time.perf_counter()
                if self.next_id % 2:
                    conn.execute("INSERT INTO t VALUES (%s, 1, %s, 1, %s)",
                                 (self.next_id, self.next_id, 1 + self.next_id % PARENTS))
                else:
                    conn.execute("UPDATE t SET c = c + 1 WHERE id = %s", (random.randint(1, self.rows),))
                self.next_id += 1
                self.latencies.append((started, time.perf_counter() - started))
                time.sleep(0.002)

    def longest_between(self, start: float, end: float) -> float:
        during = [s for t, s in self.latencies if start <= t + s and t <= end]
        return max(during, default=0.0)


def as_written(url: str) -> float:
    with psycopg.connect(url, options=f"-c search_path={SCHEMA}") as conn:
        started = time.perf_counter()
        for statement in PLAN.split(";\n"):
            conn.execute(statement.rstrip(";"))
        conn.commit()
        return time.perf_counter() - started


def by_erd_preflight(url: str, writer: Writer) -> tuple[float, float]:
    db = ep.connect(url, connect_args={"options": f"-c search_path={SCHEMA}"})
    run = ep.MigrationRun.start(ep.MigrationPlan.from_sql(PLAN), db, store_schema=f"{SCHEMA}_runs")
    started = time.perf_counter()
    report = run.preflight()
    preflight = time.perf_counter() - started
    assert report.status == "clear", report.summary()
    writer.start()
    time.sleep(0.3)
    started = time.perf_counter()
    run.apply()
    return preflight, time.perf_counter() - started


def measure(url: str, rows: int, how: str) -> tuple[float, float, float]:
    build(url, rows)
    writer = Writer(url, rows)
    if how == "as written":
        writer.start()
        time.sleep(0.3)
        began = time.perf_counter()
        took = as_written(url)
    else:
        _, took = by_erd_preflight(url, writer)
        began = time.perf_counter() - took
    time.sleep(0.3)
    writer.stop.set()
    writer.join()
    calm = statistics.median(s for _, s in writer.latencies)
    return took, writer.longest_between(began, began + took), calm


def per_step(url: str, rows: int) -> list[tuple[str, float, float, float, float]]:
    """Each of the first three steps alone, as written: (statement, estimated hold low/mid/high, measured stall)."""
    build(url, rows)
    db = ep.connect(url, connect_args={"options": f"-c search_path={SCHEMA}"})
    out = []
    for number, statement in enumerate(PLAN.split(";\n")[:3]):
        report = ep.run_preflight(ep.MigrationPlan.from_sql(statement), db, online=False)
        held = max((s for s in report.locks.statements if s.blocks_writes), key=lambda s: s.hold_seconds)
        writer = Writer(url, rows, start=(number + 1) * 10_000_000)
        writer.start()
        time.sleep(0.3)
        with psycopg.connect(url, options=f"-c search_path={SCHEMA}") as conn:
            began = time.perf_counter()
            conn.execute(statement.rstrip(";"))
            conn.commit()
            took = time.perf_counter() - began
        time.sleep(0.2)
        writer.stop.set()
        writer.join()
        out.append((statement.rstrip(";"), held.hold_low_seconds, held.hold_seconds, held.hold_high_seconds,
                    writer.longest_between(began, began + took)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--url", default=None, help="a PostgreSQL URL (default: the embedded server)")
    args = parser.parse_args()
    url = args.url or embedded_url()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA}_runs CASCADE")
    a_time, a_stall, a_calm = measure(url, args.rows, "as written")
    b_time, b_stall, b_calm = measure(url, args.rows, "erd-preflight apply")
    print(f"rows: {args.rows:,}; the writer's median transaction: {a_calm * 1000:.1f} ms / {b_calm * 1000:.1f} ms")
    print(f"(a) as written, one transaction: apply {a_time:.2f} s, the writer's longest stall {a_stall * 1000:.0f} ms")
    print(f"(b) erd-preflight apply:          apply {b_time:.2f} s, the writer's longest stall {b_stall * 1000:.0f} ms")
    print(f"ratios (b)/(a): stall {b_stall / a_stall:.3f}x, apply time {b_time / a_time:.2f}x")
    print("each step alone, as written: the preflight's estimated hold (range) and the writer's longest stall")
    for statement, low, mid, high, stall in per_step(url, args.rows):
        print(f"  {statement:<58} estimated {mid * 1000:6.0f} ms ({low * 1000:.0f}–{high * 1000:.0f}), "
              f"stall {stall * 1000:6.0f} ms, estimate/stall {mid / max(stall, 1e-6):.2f}")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA}_runs CASCADE")


if __name__ == "__main__":
    main()
