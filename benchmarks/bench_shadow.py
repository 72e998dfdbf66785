"""What the rehearsal costs: the first preflight of a schema of N tables (pg_dump, restore into the embedded
PostgreSQL, rehearse), a re-run on the cached shadow (only the statements run again), a re-run of the same plan
on the same catalog (PostgreSQL's answer kept: no statement runs), and the same preflight without the rehearsal,
measured in one run on the embedded server; and the memory a kept rehearsal holds.

    python benchmarks/bench_shadow.py --tables 200 --rows 1000
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
import uuid

import psycopg
from psycopg import sql

import erd_preflight as ep
from erd_preflight import shadow
from erd_preflight.db import embedded_url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", type=int, default=200)
    parser.add_argument("--rows", type=int, default=1000, help="rows in the table the plan changes")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    url = embedded_url()
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("SET search_path = {}").format(sql.Identifier(schema)))
        for i in range(args.tables):
            conn.execute(sql.SQL("CREATE TABLE {} (id bigint PRIMARY KEY, a text, b int, c timestamptz)").format(
                sql.Identifier(f"t{i}")))
        conn.execute("INSERT INTO t0 SELECT g, 'x' || g, g, now() FROM generate_series(1, %s) g", (args.rows,))
    db = ep.connect(url, connect_args={"options": f"-c search_path={schema}"})
    plan = ep.MigrationPlan.from_sql("ALTER TABLE t0 ALTER COLUMN a SET NOT NULL;\nALTER TABLE t0 ADD COLUMN d int;")
    try:
        started = time.perf_counter()
        ep.run_preflight(plan, db)
        first = time.perf_counter() - started
        again, kept, plain = [], [], []
        for _ in range(args.repeat):
            shadow._rehearsals.clear()
            started = time.perf_counter()
            ep.run_preflight(plan, db)
            again.append(time.perf_counter() - started)
            started = time.perf_counter()
            ep.run_preflight(plan, db)
            kept.append(time.perf_counter() - started)
            started = time.perf_counter()
            ep.run_preflight(plan, db, rehearse=False)
            plain.append(time.perf_counter() - started)
        shadow._rehearsals.clear()
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        ep.run_preflight(plan, db)
        held = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename"))
        tracemalloc.stop()
        best_again, best_kept, best_plain = min(again), min(kept), min(plain)
        print(f"{args.tables} tables, {args.rows:,} rows: first preflight with the rehearsal {first * 1000:.0f} ms; "
              f"on the cached shadow {best_again * 1000:.1f} ms; the same plan and catalog again (rehearsal kept) "
              f"{best_kept * 1000:.1f} ms; without the rehearsal {best_plain * 1000:.1f} ms. Rehearsing on the "
              f"cached shadow adds {(best_again - best_plain) * 1000:.1f} ms; a kept rehearsal holds "
              f"{held / 2**20:.2f} MB (at most {shadow._REHEARSALS_MAX} are kept)")
    finally:
        db.engine.dispose()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


if __name__ == "__main__":
    main()
