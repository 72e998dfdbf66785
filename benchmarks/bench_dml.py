"""What checking a data statement against the table's constraints costs: an UPDATE of --changed rows, and an INSERT
of as many, in a table of --rows rows, measured in one run on the embedded server (or --url).

    python benchmarks/bench_dml.py --rows 1000000 --changed 1000

The table has a primary key, a NOT NULL column, a CHECK, a varchar(n) column and a foreign key, all of which the
UPDATE touches (not the key). Printed, best of --repeat: the whole preflight of the UPDATE, PostgreSQL running the
UPDATE itself in a transaction that is rolled back, one count(*) of the table (a full scan), and their ratios; then
the same with ten times the changed rows, which should cost about ten times as much, not a scan more.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import erd_preflight as ep  # noqa: E402
from erd_preflight.db import embedded_url  # noqa: E402

SCHEMA = "erd_preflight_bench_dml"


def build(conninfo: str, rows: int) -> None:
    parents = max(rows // 10, 1)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        conn.execute(f"CREATE SCHEMA {SCHEMA}")
        conn.execute(f"SET search_path TO {SCHEMA}")
        conn.execute("CREATE TABLE parent (id bigint PRIMARY KEY)")
        conn.execute("INSERT INTO parent SELECT g FROM generate_series(1, %s) g", (parents,))
        conn.execute("""CREATE TABLE orders (id bigint PRIMARY KEY, amount int NOT NULL CHECK (amount >= 0),
                        code varchar(8), parent_id bigint REFERENCES parent (id))""")
        conn.execute("INSERT INTO orders SELECT g, g %% 1000, 'c' || (g %% 1000), 1 + g %% %s "
                     "FROM generate_series(1, %s) g", (parents, rows))
        conn.execute("VACUUM ANALYZE parent, orders")


def best(repeat: int, action) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--changed", type=int, default=1000, help="rows the UPDATE changes")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--url", default=None, help="a PostgreSQL URL (default: the embedded server)")
    args = parser.parse_args()
    url = args.url or embedded_url()
    conninfo = url.replace("postgresql+psycopg://", "postgresql://")
    build(conninfo, args.rows)
    db = ep.connect(url, connect_args={"options": f"-c search_path={SCHEMA}"})
    scoped = psycopg.conninfo.make_conninfo(conninfo, options=f"-c search_path={SCHEMA}")

    def postgres(statement: str) -> None:
        with psycopg.connect(scoped) as conn:
            conn.execute(statement)
            conn.rollback()

    def scan() -> None:
        with psycopg.connect(scoped) as conn:
            conn.execute("SELECT count(*) FROM orders").fetchone()

    try:
        full = best(args.repeat, scan)
        figures: dict[str, list[float]] = {"UPDATE": [], "INSERT": []}
        for verb, changed in [(v, n) for v in figures for n in (args.changed, args.changed * 10)]:
            statement = (f"UPDATE orders SET amount = amount + 1, code = 'n' || amount, parent_id = parent_id "
                         f"WHERE id <= {changed}" if verb == "UPDATE" else
                         f"INSERT INTO orders SELECT id + {args.rows}, amount, code, parent_id FROM orders "
                         f"WHERE id <= {changed}")
            plan = ep.MigrationPlan.from_sql(statement)
            report = ep.run_preflight(plan, db)
            assert report.status == "clear", report.summary()
            checks = ", ".join(c.check_id for c in report.checks)
            preflight = best(args.repeat, lambda: ep.run_preflight(plan, db))
            # the checks' own queries, without the fixed cost of a preflight (connection, catalog, rehearsal)
            own = min(sum(c.duration_ms or 0 for c in ep.run_preflight(plan, db).checks)
                      for _ in range(args.repeat)) / 1000
            itself = best(args.repeat, lambda: postgres(statement))
            figures[verb].append(own)
            print(f"{verb} of {changed:,} rows in {args.rows:,}: preflight {preflight * 1000:.1f} ms, of which the "
                  f"checks ({checks}) {own * 1000:.1f} ms; PostgreSQL's own {verb} {itself * 1000:.1f} ms; a full "
                  f"scan {full * 1000:.1f} ms; checks / {verb} {own / itself:.2f}, checks / scan {own / full:.2f}")
        for verb, (one, ten) in figures.items():
            print(f"{verb}: ten times the rows, the checks cost {ten / max(one, 1e-9):.1f} times as much")
    finally:
        db.engine.dispose()
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")


if __name__ == "__main__":
    main()
