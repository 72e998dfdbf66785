"""python -m erd_preflight.demo [URL]: the demo runbook. Preflight the demo migration (blocked), remediate
with the generated SQL, preflight again (clear), apply in phases, and print the audit trail."""

from __future__ import annotations

import sys
import time

import pandas as pd

from .. import Database, MigrationPlan, MigrationRun, run_preflight, runs
from . import demo_database, migration_sql


def database_line(db: Database, embedded: bool, seconds: float) -> str:
    """The demo's first line: which server, how long it took to be ready, where its data lives."""
    with db.engine.connect() as conn:
        version = str(conn.exec_driver_sql("SHOW server_version").scalar()).split()[0]
    if embedded:
        return (f"embedded PostgreSQL {version}, started in {seconds:.1f} s, data in a temporary folder "
                "(removed when the demo ends)")
    return f"PostgreSQL {version} at {db.url}, demo schema loaded in {seconds:.1f} s"


def main(argv: list[str]) -> int:
    url = argv[0] if argv else None
    started = time.perf_counter()
    db = demo_database(url)
    print(database_line(db, url is None, time.perf_counter() - started))
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

    print("\n== runbook: a stored run, the gate, remediation, phased apply ==")
    run = MigrationRun.start(plan, db, name="0042_orders.sql")
    run.preflight(explore=True)
    decision = run.gate()
    print(decision.summary())
    remedies = {(r.check_id, r.kind): r for r in decision.remediations}
    dedupe = remedies[("UNIQUE_PRECHECK", "dedupe")]
    print("\nbefore it runs, the dedupe says what it will touch:")
    print(run.preview(dedupe, survivor="most_referenced").summary())
    steps = [
        (("NOT_NULL_PRECHECK", "backfill"), {"expression": "'customer' || id || '@example.invalid'"}),
        (("UNIQUE_PRECHECK", "dedupe"), {"survivor": "most_referenced"}),
        (("FK_VIOLATIONS_PRECHECK", "null_orphans"), {}),
    ]
    print()
    for key, kwargs in steps:
        changed = run.remediate(remedies[key], **kwargs)
        position = len(run.record.applied_sql) - 1
        print(f"remediation {key[1]} ({key[0]}): {changed} rows changed, kept on the run "
              f"(run.restore({position}) puts them back)")
    print("  (the dedupe orphaned the orders of the customers it deleted, as its preview said: null_orphans set their "
          "customer_id to NULL)")
    print("the rows the remediations removed or overwrote, kept in erd_preflight.remediation_rows:")
    print(run.kept_frame().groupby(["position", "table_name", "action"]).size().to_string())
    second = run.preflight()
    print(second.summary())
    print("\nphases that apply will run:")
    print(run.phases().script())
    record = run.apply()
    print(f"run {record.id}: {record.status}")
    for entry in record.applied_sql:  # a remediation as it reads (what ran also kept its rows: entry.sql)
        print(f"  [{entry.phase:<11}] {entry.outcome:<8} {(entry.model_extra or {}).get('as_shown', entry.sql)[:100]}")
    print("\naudit trail (migration_run):")
    print(runs(db)[["name", "status", "steps", "blocking", "applied_statements"]].to_string())
    return 0 if report.status == "blocked" and record.status == "applied" else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
