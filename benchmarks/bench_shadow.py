"""What the rehearsal costs: the first preflight of a database of N tables spread over S schemas (pg_dump of the
whole database, restore into the embedded PostgreSQL, rehearse), a re-run on the cached shadow (only the
statements run again), a re-run of the same plan on the same catalog (PostgreSQL's answer kept: no statement
runs), and the same preflight without the rehearsal, measured in one run on the embedded server; and the memory
the first build and a kept rehearsal take. Tables reference the first table of the schema before theirs, and every
tenth has a view in the next schema, as a data team's raw, staging and analytics schemas do.

    python benchmarks/bench_shadow.py --tables 2000 --schemas 20 --rows 1000
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc
import uuid

import psycopg
from psycopg import sql

import erd_preflight as ep
from erd_preflight.rehearse import rehearsal as rehearsing
from erd_preflight.rehearse import shadow
from erd_preflight.db import embedded_url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", type=int, default=200)
    parser.add_argument("--rows", type=int, default=1000, help="rows in the table the plan changes")
    parser.add_argument("--schemas", type=int, default=1, help="schemas the tables are spread over")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    url = embedded_url()
    run = uuid.uuid4().hex[:8]
    schemas = [f"bench_{run}_{i}" for i in range(max(args.schemas, 1))]
    schema = schemas[0]
    with psycopg.connect(url, autocommit=True) as conn:
        for name in schemas:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        for i in range(args.tables):
            home = schemas[i % len(schemas)]
            before = schemas[i % len(schemas) - 1] if i >= len(schemas) else None
            conn.execute(sql.SQL("CREATE TABLE {}.{} (id bigint PRIMARY KEY, a text, b int, c timestamptz{})").format(
                sql.Identifier(home), sql.Identifier(f"t{i}"),
                sql.SQL(", ref bigint REFERENCES {}.{} (id)").format(sql.Identifier(before), sql.Identifier(
                    f"t{i % len(schemas) - 1 if i % len(schemas) else len(schemas) - 1}")) if before else sql.SQL("")))
            if i % 10 == 0 and len(schemas) > 1:
                conn.execute(sql.SQL("CREATE VIEW {}.{} AS SELECT id, a FROM {}.{}").format(
                    sql.Identifier(schemas[(i + 1) % len(schemas)]), sql.Identifier(f"v{i}"), sql.Identifier(home),
                    sql.Identifier(f"t{i}")))
        conn.execute(sql.SQL("INSERT INTO {}.t0 SELECT g, 'x' || g, g, now() FROM generate_series(1, %s) g").format(
            sql.Identifier(schema)), (args.rows,))
    db = ep.connect(url, connect_args={"options": f"-c search_path={schema}"})
    plan = ep.MigrationPlan.from_sql("ALTER TABLE t0 ALTER COLUMN a SET NOT NULL;\nALTER TABLE t0 ADD COLUMN d int;")
    try:
        tracemalloc.start()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        ep.run_preflight(plan, db)
        first = time.perf_counter() - started
        build_peak = tracemalloc.get_traced_memory()[1]
        rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss
        tracemalloc.stop()
        shadow_bytes = 0
        for kept in shadow._cache.values():  # on the shadow's server, which ERD_PREFLIGHT_SHADOW_URL may name
            with psycopg.connect(kept.url) as conn:
                shadow_bytes += conn.execute("SELECT pg_database_size(%s)", (kept.template,)).fetchone()[0]
        again, kept, plain = [], [], []
        for _ in range(args.repeat):
            rehearsing._rehearsals.clear()
            started = time.perf_counter()
            ep.run_preflight(plan, db)
            again.append(time.perf_counter() - started)
            started = time.perf_counter()
            ep.run_preflight(plan, db)
            kept.append(time.perf_counter() - started)
            started = time.perf_counter()
            ep.run_preflight(plan, db, rehearse=False)
            plain.append(time.perf_counter() - started)
        rehearsing._rehearsals.clear()
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        ep.run_preflight(plan, db)
        held = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename"))
        tracemalloc.stop()
        best_again, best_kept, best_plain = min(again), min(kept), min(plain)
        print(f"{args.tables} tables in {len(schemas)} schemas, {args.rows:,} rows: first preflight with the rehearsal "
              f"(the whole database dumped and restored) {first * 1000:.0f} ms, taking {build_peak / 2**20:.1f} MB in "
              f"Python at its peak (RSS +{rss_growth / 1024:.0f} MB), the shadow database {shadow_bytes / 2**20:.0f} MB; "
              f"on the cached shadow {best_again * 1000:.1f} ms; the same plan and catalog again (rehearsal kept) "
              f"{best_kept * 1000:.1f} ms; without the rehearsal {best_plain * 1000:.1f} ms. Rehearsing on the "
              f"cached shadow adds {(best_again - best_plain) * 1000:.1f} ms; a kept rehearsal holds "
              f"{held / 2**20:.2f} MB (at most {rehearsing._REHEARSALS_MAX} are kept)")
    finally:
        db.engine.dispose()
        with psycopg.connect(url, autocommit=True) as conn:
            for name in reversed(schemas):
                conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


if __name__ == "__main__":
    main()
