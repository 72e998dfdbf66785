"""Preflight time against PostgreSQL's own validation of the same constraint.

    python benchmarks/bench_preflight.py --rows 1000000 [--url postgresql://...] [--repeat 3]

Builds an N-row table (plus a referenced table) where every benchmarked constraint holds, so both sides
must read everything, and one column with planted NULLs as a sanity check. For each check kind it prints
the preflight time (a whole run_preflight call, best of --repeat), PostgreSQL's time for the DDL run in a
transaction that is rolled back (best of --repeat), and preflight / PostgreSQL. Then the whole plan
against PostgreSQL validating all of it, and three scan-type checks on one table (two SET NOT NULL and a
CHECK) against one count(*) of the table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import erd_preflight as ep  # noqa: E402
from erd_preflight.db import embedded_url  # noqa: E402

SCHEMA = "erd_preflight_bench"

CASES = {
    "NOT_NULL_PRECHECK": "ALTER TABLE orders ALTER COLUMN a SET NOT NULL",
    "UNIQUE_PRECHECK": "ALTER TABLE orders ADD CONSTRAINT orders_email_key UNIQUE (email)",
    "FK_VIOLATIONS_PRECHECK": "ALTER TABLE orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) "
    "REFERENCES customers (id)",
    "CHECK_CONSTRAINT_PRECHECK": "ALTER TABLE orders ADD CONSTRAINT orders_c_positive CHECK (c >= 0)",
    "CAST_PRECHECK": "ALTER TABLE orders ALTER COLUMN code TYPE integer USING code::integer",
}
SCAN_TRIO = [
    "ALTER TABLE orders ALTER COLUMN a SET NOT NULL",
    "ALTER TABLE orders ALTER COLUMN b SET NOT NULL",
    "ALTER TABLE orders ADD CONSTRAINT orders_c_positive CHECK (c >= 0)",
]


def build(conninfo: str, rows: int, *, schema: str = SCHEMA, dirty_every: int = 1000,
          collate: str | None = None) -> None:
    """customers (rows / 10) and orders (rows), every benchmarked constraint holding; ``dirty`` is NULL in one
    row of every ``dirty_every``. ``collate`` gives the text columns that collation instead of the database's."""
    customers = max(rows // 10, 1)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"SET search_path TO {schema}")
        conn.execute("CREATE TABLE customers (id bigint PRIMARY KEY)")
        conn.execute("INSERT INTO customers SELECT g FROM generate_series(1, %s) g", (customers,))
        text = sql.SQL("text COLLATE {}").format(sql.Identifier(collate)) if collate else sql.SQL("text")
        conn.execute(sql.SQL("""CREATE TABLE orders (id bigint, customer_id bigint, a int, b int, c int, email {text},
                                code {text}, dirty int)""").format(text=text))
        conn.execute(
            """INSERT INTO orders SELECT g, 1 + g %% %s, g %% 1000, g %% 7, g %% 100, 'user' || g || '@example.com',
                      (g %% 100000)::text, CASE WHEN g %% %s = 0 THEN NULL ELSE g END
                 FROM generate_series(1, %s) g""",
            (customers, dirty_every, rows),
        )
        conn.execute("VACUUM ANALYZE customers")
        conn.execute("VACUUM ANALYZE orders")


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def postgres_validation(conninfo: str, statements: list[str]) -> None:
    with psycopg.connect(conninfo) as conn:
        for statement in statements:
            conn.execute(statement)
        conn.rollback()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000, help="rows in the benchmarked table")
    parser.add_argument("--url", default=None, help="PostgreSQL URL (default: the embedded server)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best is kept")
    args = parser.parse_args()

    url = args.url or embedded_url()
    conninfo = psycopg.conninfo.make_conninfo(url, options=f"-c search_path={SCHEMA}")
    with psycopg.connect(url) as conn:
        version = conn.info.server_version
    print(f"PostgreSQL {version // 10000}.{version % 10000}, {args.rows:,} rows, best of {args.repeat}")
    started = time.perf_counter()
    build(conninfo, args.rows)
    print(f"built in {time.perf_counter() - started:.1f} s")
    # A pooled engine, as a notebook's Database keeps: connection setup is not part of a check's cost.
    db = ep.connect(url, connect_args={"options": f"-c search_path={SCHEMA}"})
    limits = {"check_timeout": 3600, "large_table_rows": 10**12, "large_table_bytes": 10**15}

    sanity = ep.run_preflight(ep.MigrationPlan.from_sql("ALTER TABLE orders ALTER COLUMN dirty SET NOT NULL"), db,
                              **limits)
    print(f"sanity: planted NULLs found {sanity.results[0].stats['violations']:,} (expected {args.rows // 1000:,})")

    def ratio_line(name: str, ours: float, theirs: float, target: str) -> None:
        print(f"{name:<28} {ours * 1000:>10.1f} {theirs * 1000:>12.1f} {ours / theirs:>7.2f}   {target}")

    print(f"\n{'check':<28} {'preflight ms':>10} {'postgres ms':>12} {'ratio':>7}   target")
    for check_id, ddl in CASES.items():
        plan = ep.MigrationPlan.from_sql(ddl)
        report = ep.run_preflight(plan, db, **limits)
        assert report.status == "clear", report.summary()
        ours = best(lambda: ep.run_preflight(plan, db, **limits), args.repeat)
        theirs = best(lambda: postgres_validation(conninfo, [ddl]), args.repeat)
        ratio_line(check_id, ours, theirs, "<= 1.0")

    whole = list(CASES.values()) + ["ALTER TABLE orders ALTER COLUMN b SET NOT NULL"]
    plan = ep.MigrationPlan.from_sql(";\n".join(whole))
    ours = best(lambda: ep.run_preflight(plan, db, **limits), args.repeat)
    theirs = best(lambda: postgres_validation(conninfo, whole), args.repeat)
    ratio_line("whole plan (6 steps)", ours, theirs, "<= 0.8")

    trio = ep.MigrationPlan.from_sql(";\n".join(SCAN_TRIO))
    ours = best(lambda: ep.run_preflight(trio, db, **limits), args.repeat)
    with psycopg.connect(conninfo) as conn:
        theirs = best(lambda: conn.execute("SELECT count(*) FROM orders").fetchone(), args.repeat)
    print(f"{'3 scan checks vs count(*)':<28} {ours * 1000:>10.1f} {theirs * 1000:>12.1f} {ours / theirs:>7.2f}   "
          "<= 1.3 scans")
    scan_ms = ep.run_preflight(trio, db, **limits).checks[0].duration_ms
    print(f"{'  the shared scan alone':<28} {scan_ms:>10.1f} {theirs * 1000:>12.1f} {scan_ms / 1000 / theirs:>7.2f}")
    db.engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
