"""python -m erd_preflight.demo [URL]: preflight the demo migration and print the blocked report."""

from __future__ import annotations

import sys

import pandas as pd

from .. import MigrationPlan, run_preflight
from . import demo_database, migration_sql


def main(argv: list[str]) -> int:
    url = argv[0] if argv else None
    db = demo_database(url)
    print(f"database: {db.url}{' (embedded PostgreSQL)' if url is None else ''}")
    plan = MigrationPlan.from_sql(migration_sql(), name="0042_orders.sql")
    print(f"plan 0042_orders.sql: {len(plan.steps)} steps, fingerprint {plan.fingerprint[:12]}")
    for note in plan.notes:
        print(f"  note: {note}")
    pd.set_option("display.width", 160)
    pd.set_option("display.max_colwidth", 90)

    print("\n== preflight (stops at the first blocking result) ==")
    report = run_preflight(plan, db, progress=sys.stderr.isatty())
    print(report.summary())
    for index, finding in enumerate(report.results):
        if finding.sample_rows:
            print(f"\nsample rows of {finding.check_id}:")
            print(report.samples(index).head(10).to_string(index=False))

    print("\n== explore mode (every check) ==")
    explored = run_preflight(plan, db, explore=True)
    print(explored.findings_frame()[["step", "checkId", "severity", "violations", "totalRows"]].to_string(index=False))
    for check_id in ("UNIQUE_PRECHECK", "FK_VIOLATIONS_PRECHECK"):
        print(f"\nsample rows of {check_id}:")
        print(explored.samples(check_id).head(10).to_string(index=False))
    return 0 if report.status == "blocked" else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
