"""Gated, phased apply and the migration_run record, on real PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import psycopg
import pytest
from psycopg import sql

import erd_preflight as ep
from waiting import acknowledging, wait_for
from erd_preflight.plan.phases import foreign_key_name
from erd_preflight.run.store import STORE_VERSION, RunStore

FAST = ep.ApplyOptions(lock_timeout=0.5, lock_retries=2, retry_backoff=0.05, retry_jitter=0.5)


@pytest.fixture
def shop(run_sql: Callable[..., Any]) -> None:
    run_sql("""
        CREATE TABLE customers (id bigint PRIMARY KEY, email text);
        INSERT INTO customers SELECT g, 'c' || g FROM generate_series(1, 100) g;
        CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint, status text, email text);
        INSERT INTO orders SELECT g, CASE WHEN g % 10 = 0 THEN 999 ELSE g % 100 + 1 END,
                                  CASE WHEN g % 7 = 0 THEN NULL ELSE 'new' END, 'e' || g
          FROM generate_series(1, 200) g;
        UPDATE orders SET email = 'dup' WHERE id IN (3, 4);
    """)


MIGRATION = """
ALTER TABLE orders ALTER COLUMN status SET NOT NULL;
CREATE INDEX CONCURRENTLY orders_customer_idx ON orders (customer_id);
ALTER TABLE orders ADD FOREIGN KEY (customer_id) REFERENCES customers (id);
CREATE UNIQUE INDEX CONCURRENTLY orders_email_idx ON orders (email);
"""


def apply_backend(run_sql: Callable[..., Any], run_id: int, query_like: str) -> int | None:
    rows = run_sql("SELECT pid FROM pg_stat_activity WHERE application_name = %s AND state = 'active' "
                   "AND query ILIKE %s", (f"erd_preflight apply run {run_id}", query_like))
    return rows[0][0] if rows else None


def invalid_indexes(run_sql: Callable[..., Any]) -> list[str]:
    return [r[0] for r in run_sql(
        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE NOT i.indisvalid AND c.relnamespace = current_schema()::regnamespace")]


# --- the happy path and the gate ------------------------------------------------------------------------


def test_blocked_report_stops_apply_and_after_remediation_apply_records_every_statement(db, store, shop, run_sql):
    run = ep.MigrationRun.start(ep.MigrationPlan.from_sql(MIGRATION), db, store_schema=store)
    assert run.status == "draft"
    report = run.preflight(explore=True)
    assert report.status == "blocked" and run.status == "blocked"
    decision = run.gate()
    assert not decision.can_apply
    assert [r.code for r in decision.reasons] == ["BLOCKED"] * 3
    with pytest.raises(ep.ApplyBlocked) as blocked:
        run.apply()
    assert "NOT_NULL_PRECHECK" in str(blocked.value) and blocked.value.decision.reasons
    assert run_sql("SELECT count(*) FROM pg_indexes WHERE tablename = 'orders' "
                   "AND schemaname = current_schema()")[0][0] == 1  # nothing ran

    stored = run.refresh()
    assert stored.preflight_report == report.model_dump(mode="json", by_alias=True)
    assert stored.gate is not None and stored.gate["can_apply"] is False

    remedies = {r.kind: r for r in decision.remediations}
    assert {"open_violations", "backfill", "dedupe", "delete_orphans", "null_orphans", "insert_parents"} <= set(remedies)
    nulls = run.violations("NOT_NULL_PRECHECK", page_size=10)
    assert len(nulls) == 10 and nulls["status"].isna().all()
    assert len(run.violations("NOT_NULL_PRECHECK", page=2, page_size=10)) == 8  # 28 NULLs in all
    with pytest.raises(ValueError, match="needs a value"):
        run.remediate(remedies["backfill"])
    assert run.remediate(remedies["backfill"], value="unknown") == 28
    assert run.remediate(remedies["dedupe"]) == 1
    assert run.remediate(remedies["null_orphans"]) == 20

    assert run.preflight().status == "clear"
    assert run.gate().can_apply
    record = run.apply(options=FAST)
    assert record.status == "applied"
    phases = [(s.phase, s.step, s.outcome) for s in record.applied_sql if s.phase in "ABC"]
    assert phases == [("A", 1, "applied"), ("B", 2, "applied"), ("B", 4, "applied"), ("C", 3, "applied"),
                      ("C", 3, "applied")]
    assert [s.phase for s in record.applied_sql].count("remediation") == 3
    assert [h["status"] for h in record.status_history] == ["draft", "blocked", "clear", "applying", "applied"]
    assert run_sql("SELECT convalidated FROM pg_constraint WHERE conname = 'orders_customer_id_fkey' "
                   "AND connamespace = current_schema()::regnamespace") == [(True,)]
    trail = ep.runs(db, store_schema=store)
    assert trail.loc[run.id, "status"] == "applied" and trail.loc[run.id, "applied_statements"] == 5 + 3


def test_concurrently_never_runs_inside_a_transaction_block(db, store, run_sql):
    run_sql("CREATE TABLE t (a int, b int); INSERT INTO t SELECT g, g FROM generate_series(1, 100) g")
    # BEGIN/COMMIT around a concurrent build in the file are dropped: PostgreSQL would refuse the build inside them.
    plan = ep.MigrationPlan.from_sql("BEGIN;\nALTER TABLE t ADD COLUMN c int;\nCREATE INDEX CONCURRENTLY t_a ON t (a);\n"
                                     "CREATE INDEX CONCURRENTLY t_ab ON t ((a + b));\nDROP INDEX CONCURRENTLY t_a;\n"
                                     "COMMIT;")
    run = ep.MigrationRun.start(plan, db, store_schema=store)
    phases = run.phases()
    concurrent = [s for s in phases.statements if "CONCURRENTLY" in s.sql]
    assert len(concurrent) == 3  # the expression index is raw SQL, still recognised as concurrent
    assert all(s.phase == "B" and not s.transactional for s in concurrent)
    assert len({s.unit for s in concurrent}) == 3
    assert "BEGIN" not in phases.script().split("-- Phase B")[1].split("-- Phase C")[0]
    run.preflight()
    record = acknowledging(run).apply(options=FAST)  # the expression index is raw SQL: reviewed, acknowledged
    assert record.status == "applied"
    assert run_sql("SELECT indexname FROM pg_indexes WHERE tablename = 't' AND schemaname = current_schema()") == [("t_ab",)]


def test_large_table_non_concurrent_index_is_refused_until_confirmed_and_the_confirmation_is_stored(db, store,
                                                                                                   run_sql):
    run_sql("CREATE TABLE events (id int, kind text); INSERT INTO events SELECT g, 'k' FROM generate_series(1, 5000) g;"
            "ANALYZE events")
    run = ep.MigrationRun.start(ep.MigrationPlan.from_sql("CREATE INDEX events_kind ON events (kind)"), db,
                                store_schema=store)
    report = run.preflight(large_table_rows=1000)
    assert report.status == "clear" and "NON_CONCURRENT_INDEX_WARNING" in [r.check_id for r in report.results]
    decision = run.gate()
    assert not decision.can_apply and [r.code for r in decision.reasons] == ["CONFIRMATION_REQUIRED"]
    request = decision.confirmations_needed[0]
    assert request.table.endswith(".events") and request.estimated_rows == 5000
    concurrently = [r for r in decision.remediations if r.kind == "use_concurrently"]
    assert concurrently and "CREATE INDEX CONCURRENTLY" in concurrently[0].sql
    with pytest.raises(ep.ApplyBlocked, match="large table"):
        run.apply()
    with pytest.raises(ValueError, match="the tables that need a confirmation are"):
        run.apply(confirm_large_non_concurrent=["customers"])
    record = run.apply(confirm_large_non_concurrent=["events"], options=FAST)
    assert record.status == "applied"
    [confirmation] = record.confirmations
    assert confirmation["table"] == request.table and confirmation["estimated_rows"] == 5000
    assert confirmation["report_created_at"] == report.model_dump(mode="json", by_alias=True)["createdAt"]
    assert confirmation["db_user"] and confirmation["confirmed_at"]


def test_a_plan_changed_after_its_preflight_cannot_be_applied_with_the_old_report(db, store, shop):
    run = ep.MigrationRun.start(ep.MigrationPlan.from_sql("ALTER TABLE orders ADD COLUMN note text"), db,
                                store_schema=store)
    assert run.preflight().status == "clear"
    run.update_plan(ep.MigrationPlan.from_sql("ALTER TABLE orders ALTER COLUMN status SET NOT NULL"))
    assert run.status == "stale"
    with pytest.raises(ep.ApplyBlocked) as blocked:
        run.apply()
    assert "STALE_REPORT" in [r.code for r in blocked.value.decision.reasons] or \
        "PLAN_CHANGED" in [r.code for r in blocked.value.decision.reasons]
    # The same with the stored row: another process loads the run; its report is for the old plan.
    loaded = ep.MigrationRun.load(run.id, db, store_schema=store)
    assert not loaded.gate().can_apply
    assert loaded.preflight().status == "blocked"  # the new plan meets the NULL statuses


def test_an_old_report_closes_the_gate(db, store, shop):
    run = ep.MigrationRun.start(ep.MigrationPlan.from_sql("ALTER TABLE orders ADD COLUMN note text"), db,
                                store_schema=store, options=ep.ApplyOptions(max_report_age=0.2))
    run.preflight()
    time.sleep(0.3)
    decision = run.gate()
    assert not decision.can_apply and [r.code for r in decision.reasons] == ["STALE_REPORT"]
    assert run.status == "stale"
    run.preflight()
    assert run.gate().can_apply


def test_phase_order_conflicts_are_refused_by_the_gate(db, store, run_sql):
    run_sql("CREATE TABLE t (a int, b int)")
    plan = ep.MigrationPlan.from_sql("CREATE INDEX CONCURRENTLY t_a ON t (a); ALTER TABLE t DROP COLUMN a;")
    with pytest.raises(ep.PhaseOrderError, match="step 2 .* depends on step 1"):
        ep.compile_phases(plan)
    run = ep.MigrationRun.start(plan, db, store_schema=store)
    run.preflight()
    assert "PHASE_ORDER" in [r.code for r in run.gate().reasons]


def test_a_later_step_that_commutes_with_a_moved_one_compiles():
    plan = ep.MigrationPlan.from_sql("""
        ALTER TABLE orders ADD COLUMN customer_id bigint;
        ALTER TABLE orders ADD FOREIGN KEY (customer_id) REFERENCES customers (id);
        UPDATE orders SET customer_id = 1 WHERE customer_id IS NULL;
        ALTER TABLE orders ALTER COLUMN customer_id SET NOT NULL;
    """)
    phases = ep.compile_phases(plan)
    assert [(s.phase, s.step) for s in phases.statements] == [("A", 1), ("A", 3), ("A", 4), ("C", 2), ("C", 2)]
    assert phases.statements[3].sql.endswith("NOT VALID")
    assert "VALIDATE CONSTRAINT \"orders_customer_id_fkey\"" in phases.statements[4].sql


# --- failures lose nothing --------------------------------------------------------------------------------


def test_data_changed_after_preflight_fails_phase_a_whole_and_offers_a_new_preflight(db, store, shop, run_sql):
    run_sql("UPDATE orders SET status = 'x' WHERE status IS NULL")
    plan = ep.MigrationPlan.from_sql("ALTER TABLE orders ADD COLUMN note text;\n"
                                     "ALTER TABLE orders ALTER COLUMN status SET NOT NULL;")
    run = ep.MigrationRun.start(plan, db, store_schema=store)
    assert run.preflight().status == "clear"
    run_sql("INSERT INTO orders VALUES (1000, 1, NULL, 'z')")  # after the preflight
    with pytest.raises(ep.ApplyFailed, match="data changed after the preflight") as failed:
        run.apply(options=FAST)
    assert "Nothing was applied" in str(failed.value)
    record = run.refresh()
    assert record.status == "failed" and record.nothing_applied
    assert [(s.step, s.outcome) for s in record.applied_sql] == [(1, "rolled_back"), (2, "failed")]
    assert run_sql("SELECT count(*) FROM information_schema.columns WHERE table_name = 'orders' "
                   "AND table_schema = current_schema() "
                   "AND column_name = 'note'") == [(0,)]
    report = run.preflight()  # a failed run with nothing applied may be preflighted again
    assert report.status == "blocked" and report.results[0].stats["violations"] == 1


def test_a_concurrent_unique_build_that_fails_leaves_no_invalid_index_and_a_failed_run(db, store, shop, run_sql):
    plan = ep.MigrationPlan.from_sql("ALTER TABLE orders ADD COLUMN note text;\n"
                                     "CREATE UNIQUE INDEX CONCURRENTLY orders_customer_key ON orders (id, customer_id);"
                                     "\nCREATE UNIQUE INDEX CONCURRENTLY orders_email_key ON orders (email);")
    run_sql("UPDATE orders SET email = 'e' || id")
    run = ep.MigrationRun.start(plan, db, store_schema=store)
    assert run.preflight().status == "clear"
    run_sql("UPDATE orders SET email = 'same' WHERE id IN (5, 6)")  # a duplicate arrives after the preflight
    with pytest.raises(ep.ApplyFailed) as failed:
        run.apply(options=FAST)
    message = str(failed.value)
    assert "phase B" in message and "data changed after the preflight" in message
    assert "Applied: phase A (step 1); phase B (step 2)" in message and "Not applied: step 3" in message
    assert "INVALID index" in message and "dropped" in message
    assert invalid_indexes(run_sql) == []
    record = run.refresh()
    assert record.status == "failed"
    assert [(s.phase, s.outcome) for s in record.applied_sql] == [
        ("A", "applied"), ("B", "applied"), ("B", "failed"), ("cleanup", "applied")]
    assert record.applied_sql[-1].sql.startswith("DROP INDEX CONCURRENTLY IF EXISTS")


def test_two_applies_at_once_exactly_one_runs_and_the_other_names_it(db, store, shop):
    plan = ep.MigrationPlan.from_sql("SELECT pg_sleep(1.5); ALTER TABLE orders ADD COLUMN note text;")
    runs = [ep.MigrationRun.start(plan, db, store_schema=store) for _ in range(2)]
    for run in runs:
        assert run.preflight().status == "clear"
        acknowledging(run)
    barrier = threading.Barrier(2)
    outcomes: dict[int, Any] = {}

    def apply(run: ep.MigrationRun) -> None:
        barrier.wait()
        try:
            outcomes[run.id] = run.apply(options=FAST).status
        except ep.PreflightError as exc:
            outcomes[run.id] = exc

    threads = [threading.Thread(target=apply, args=(run,)) for run in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    applied = [rid for rid, o in outcomes.items() if o == "applied"]
    refused = [o for o in outcomes.values() if isinstance(o, ep.ConcurrentApply)]
    assert len(applied) == 1 and len(refused) == 1
    assert refused[0].run_id == applied[0] and f"migration run {applied[0]} is applying" in str(refused[0])
    loser = next(run for run in runs if run.id != applied[0])
    assert loser.status == "clear"  # refused before anything: it can still be applied later (and would fail)


def test_a_lock_held_by_another_session_is_retried_then_fails_naming_the_blocker(db, store, shop, run_sql,
                                                                                  conninfo):
    plan = ep.MigrationPlan.from_sql("CREATE TABLE audit (id int);\nALTER TABLE orders ADD COLUMN note text;")
    run = ep.MigrationRun.start(plan, db, store_schema=store)
    run.preflight()
    with psycopg.connect(conninfo, application_name="nightly-report") as blocker:
        blocker.execute("SELECT count(*) FROM orders")  # an open transaction holding ACCESS SHARE
        with pytest.raises(ep.ApplyFailed) as failed:
            run.apply(options=FAST)
        blocker_pid = blocker.info.backend_pid
    message = str(failed.value)
    assert f"pid {blocker_pid}" in message and "nightly-report" in message and "SELECT count(*) FROM orders" in message
    assert "3 times" in message and "Nothing was applied" in message
    record = run.refresh()
    tries = [s for s in record.applied_sql if s.outcome == "lock_timeout"]
    assert [s.attempt for s in tries] == [1, 2, 3]
    for entry in tries:  # each try waited about lock_timeout, not for the blocker to finish
        waited = (datetime.fromisoformat(entry.finished) - datetime.fromisoformat(entry.started)).total_seconds()
        assert waited < FAST.lock_timeout + 5
    assert [s.outcome for s in record.applied_sql if s.step == 1] == ["rolled_back"] * 3
    assert run_sql("SELECT to_regclass('audit') IS NULL")[0][0]  # nothing half-applied


def test_a_leftover_invalid_index_blocks_preflight_and_after_the_drop_apply_builds_a_valid_index(db, store, run_sql,
                                                                                                 conninfo):
    run_sql("CREATE TABLE t (a int); INSERT INTO t VALUES (1), (1), (2)")
    with psycopg.connect(conninfo, autocommit=True) as conn, pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute("CREATE UNIQUE INDEX CONCURRENTLY t_a_key ON t (a)")
    assert invalid_indexes(run_sql) == ["t_a_key"]
    run_sql("DELETE FROM t WHERE ctid = (SELECT max(ctid) FROM t WHERE a = 1)")
    plan = ep.MigrationPlan.from_sql("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS t_a_key ON t (a)")
    run = ep.MigrationRun.start(plan, db, store_schema=store)
    report = run.preflight(explore=True)
    assert report.status == "blocked"
    assert {r.check_id for r in report.blockers} == {"INVALID_INDEX_PRECHECK"}
    assert "IF NOT EXISTS would silently skip" in report.blockers[0].message
    [drop] = [r for r in run.gate().remediations if r.kind == "drop_invalid_index"]
    assert drop.sql.startswith("DROP INDEX CONCURRENTLY IF EXISTS") and not drop.transactional
    run.remediate(drop)
    assert invalid_indexes(run_sql) == []
    assert run.preflight().status == "clear"
    assert run.apply(options=FAST).status == "applied"
    assert run_sql("SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = 't_a_key'::regclass") == [(True,)]


# --- a backend terminated in the middle of each phase --------------------------------------------------


@pytest.fixture
def slow(run_sql: Callable[..., Any]) -> None:
    # An IMMUTABLE function that takes time: it makes an index build or a validation last long enough to
    # terminate its backend in the middle.
    run_sql("CREATE FUNCTION slow_true(int) RETURNS boolean IMMUTABLE LANGUAGE sql AS "
            "'SELECT true FROM pg_sleep(0.1)';"
            "CREATE TABLE t (id int PRIMARY KEY, a int); INSERT INTO t SELECT g, g FROM generate_series(1, 40) g;"
            "CREATE TABLE sleep_switch (armed boolean); INSERT INTO sleep_switch VALUES (true)")


PHASE_PLANS = {
    "A": ("ALTER TABLE t ADD COLUMN b int;\nSELECT pg_sleep(60) FROM sleep_switch WHERE armed;", "%pg_sleep(60)%"),
    "B": ("ALTER TABLE t ADD COLUMN b int;\nCREATE INDEX CONCURRENTLY t_slow ON t (a) WHERE slow_true(id);",
          "%CONCURRENTLY%"),
    "C": ("ALTER TABLE t ADD COLUMN b int;\nALTER TABLE t ADD CONSTRAINT t_slow CHECK (slow_true(id)) NOT VALID;\n"
          "ALTER TABLE t VALIDATE CONSTRAINT t_slow;", "%VALIDATE%"),
}


@pytest.mark.parametrize("phase", ["A", "B", "C"])
def test_a_backend_terminated_mid_phase_leaves_a_row_that_says_where_and_the_next_run_sees_it(
        db, store, slow, run_sql, phase):
    text, query_like = PHASE_PLANS[phase]
    plan = ep.MigrationPlan.from_sql(text)
    run = ep.MigrationRun.start(plan, db, store_schema=store)
    assert run.preflight(check_timeout=30).status == "clear"
    acknowledging(run)
    errors: list[BaseException] = []

    def apply() -> None:
        try:
            run.apply(options=FAST)
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            errors.append(exc)

    thread = threading.Thread(target=apply)
    thread.start()
    pid = wait_for(lambda: apply_backend(run_sql, run.id, query_like), f"phase {phase} to start")
    run_sql("SELECT pg_terminate_backend(%s)", (pid,))
    thread.join(timeout=60)
    assert len(errors) == 1 and isinstance(errors[0], ep.ApplyFailed), errors
    message = str(errors[0])
    assert f"failed in phase {phase}" in message and "connection to PostgreSQL was lost" in message
    record = run.refresh()
    assert record.status == "failed" and record.error == message
    failed = [s for s in record.applied_sql if s.outcome == "failed"]
    assert failed and failed[0].phase == phase
    columns = run_sql("SELECT column_name FROM information_schema.columns WHERE table_name = 't' "
                      "AND table_schema = current_schema() ORDER BY 1")
    if phase == "A":
        assert "Nothing was applied" in message and ("b",) not in columns
    else:
        assert "Applied: phase A (step" in message and ("b",) in columns
    assert invalid_indexes(run_sql) == []  # phase B's half-built index was dropped
    if phase == "B":
        assert "INVALID index" in message and record.applied_sql[-1].phase == "cleanup"

    # The next start continues the failed run: what was applied is not applied again, and the plan's end
    # state is reached.
    run_sql("UPDATE sleep_switch SET armed = false")
    with pytest.warns(UserWarning, match=f"run {run.id} of this plan failed mid-apply; run \\d+ continues it"):
        again = ep.MigrationRun.start(plan, db, store_schema=store)
    assert again.resumes == [run.id]
    if phase == "A":
        assert again.plan.fingerprint == plan.fingerprint
    else:
        assert 0 < len(again.plan.steps) < len(plan.steps)
    assert again.preflight(check_timeout=30).status == "clear"
    assert acknowledging(again).apply(options=FAST).status == "applied"
    columns = run_sql("SELECT column_name FROM information_schema.columns WHERE table_name = 't' "
                      "AND table_schema = current_schema() ORDER BY 1")
    assert ("b",) in columns and invalid_indexes(run_sql) == []


def test_a_process_killed_mid_apply_leaves_applying_and_the_next_start_marks_it_failed(db, store, shop, run_sql,
                                                                                      server_url, schema):
    plan = ep.MigrationPlan.from_sql("ALTER TABLE orders ADD COLUMN note text;\nSELECT pg_sleep(60);")
    run = ep.MigrationRun.start(plan, db, store_schema=store)
    run.preflight()
    acknowledging(run)
    script = (
        "import sys, erd_preflight as ep\n"
        "from sqlalchemy.pool import NullPool\n"
        "db = ep.connect(sys.argv[1], connect_args={'options': '-c search_path=' + sys.argv[2]}, poolclass=NullPool)\n"
        "ep.MigrationRun.load(int(sys.argv[3]), db, store_schema=sys.argv[4]).apply()\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script, server_url, schema, str(run.id), store],
                             env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        pid = wait_for(lambda: apply_backend(run_sql, run.id, "%pg_sleep%"), "the child's apply to start")
        child.kill()  # no except, no finally, no atexit: as a crash or a killed kernel
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
    assert run.status == "applying"
    run_sql("SELECT pg_terminate_backend(%s)", (pid,))  # the server notices the lost client
    wait_for(lambda: not apply_backend(run_sql, run.id, "%"), "the orphaned backend to end")
    again = ep.MigrationRun.start(plan, db, store_schema=store)
    previous = again.previous_runs[0]
    assert previous.id == run.id and previous.status == "failed"
    assert "interrupted" in previous.error and "phase A, step 2" in previous.error
    assert run_sql("SELECT count(*) FROM information_schema.columns WHERE table_name = 'orders' "
                   "AND table_schema = current_schema() "
                   "AND column_name = 'note'") == [(0,)]


# --- the store ---------------------------------------------------------------------------------------------


def test_the_store_is_created_once_carries_its_version_and_refuses_illegal_moves(db, store, run_sql):
    RunStore(db, store)
    RunStore(db, store)  # idempotent
    comment = run_sql(sql.SQL("SELECT obj_description({}::regclass, 'pg_class')").format(
        sql.Literal(f'"{store}".migration_run')))[0][0]
    assert comment.endswith(f"store version {STORE_VERSION}")
    columns = {r[0] for r in run_sql("SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
                                     "AND table_name = 'migration_run'", (store,))}
    assert {"id", "created_at", "updated_at", "plan", "plan_fingerprint", "status", "preflight_report", "gate",
            "confirmations", "applied_sql", "error", "db_user", "server_version", "tool_version"} <= columns
    run_sql("CREATE TABLE t (a int)")
    run = ep.MigrationRun.start(ep.MigrationPlan.from_sql("ALTER TABLE t ADD COLUMN b int"), db, store_schema=store)
    with pytest.raises(ep.RunStateError, match="draft; it cannot become applying"):
        run.store.transition(run.id, "applying", note="skip the preflight")
    run.preflight()
    run.apply(options=FAST)
    with pytest.raises(ep.RunStateError, match="already applied|is applied"):
        run.preflight()


def test_a_store_from_a_newer_release_is_refused(db, store, run_sql):
    RunStore(db, store)
    run_sql(sql.SQL("COMMENT ON TABLE {} IS 'erd_preflight migration runs. store version 99'").format(
        sql.Identifier(store, "migration_run")))
    from erd_preflight.run import store as store_module

    store_module._ensured.clear()
    with pytest.raises(ep.StoreError, match="newer than this erd_preflight"):
        RunStore(db, store)


def test_unnamed_foreign_keys_get_the_name_postgresql_gives_them(run_sql):
    long_table = "t" * 50
    run_sql(sql.SQL("CREATE TABLE p (a int, b int, PRIMARY KEY (a, b)); CREATE TABLE {} (x int, "
                    "yyyyyyyyyyyyyyyyyyyy int)").format(sql.Identifier(long_table)))
    run_sql(sql.SQL("ALTER TABLE {} ADD FOREIGN KEY (x, yyyyyyyyyyyyyyyyyyyy) REFERENCES p (a, b)").format(
        sql.Identifier(long_table)))
    [(name,)] = run_sql("SELECT conname FROM pg_constraint WHERE contype = 'f' AND "
                        "connamespace = current_schema()::regnamespace")
    assert foreign_key_name(long_table, ("x", "yyyyyyyyyyyyyyyyyyyy"), set()) == name
    run_sql(sql.SQL("ALTER TABLE {} ADD FOREIGN KEY (x, yyyyyyyyyyyyyyyyyyyy) REFERENCES p (a, b)").format(
        sql.Identifier(long_table)))
    names = {r[0] for r in run_sql("SELECT conname FROM pg_constraint WHERE contype = 'f' "
                                     "AND connamespace = current_schema()::regnamespace")}
    assert foreign_key_name(long_table, ("x", "yyyyyyyyyyyyyyyyyyyy"), {name}) in names


def test_apply_quotes_hostile_identifiers(db, store, run_sql):
    parent, child = 'we"ird parent', "Child; DROP TABLE x"
    run_sql(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY); CREATE TABLE {} (id int, {} int);"
                    "INSERT INTO {} VALUES (1); INSERT INTO {} VALUES (1, 1)").format(
        sql.Identifier(parent), sql.Identifier(child), sql.Identifier("parent id"), sql.Identifier(parent),
        sql.Identifier(child)))
    plan = ep.MigrationPlan(steps=(
        ep.AddForeignKey(table=child, columns=("parent id",), ref_table=parent, ref_columns=("id",)),
        ep.CreateIndex(table=child, columns=("parent id",), name="ix ' \"", concurrently=True),
    ))
    run = ep.MigrationRun.start(plan, db, store_schema=store)
    assert run.preflight().status == "clear"
    assert run.apply(options=FAST).status == "applied"
    assert run_sql("SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND convalidated "
                   "AND connamespace = current_schema()::regnamespace")[0][0] == 1


def test_cast_violations_are_paged_even_when_the_conversion_raises(db, store, run_sql):
    run_sql("CREATE TABLE t (id int, v text); INSERT INTO t SELECT g, CASE WHEN g % 3 = 0 THEN 'x' || g "
            "ELSE g::text END FROM generate_series(1, 30) g")
    run = ep.MigrationRun.start(ep.MigrationPlan.from_sql("ALTER TABLE t ALTER COLUMN v TYPE int USING v::int"), db,
                                store_schema=store)
    assert run.preflight().status == "blocked"
    first, second = run.violations(0, page_size=6), run.violations(0, page=1, page_size=6)
    assert list(first["id"]) == [3, 6, 9, 12, 15, 18] and list(second["id"]) == [21, 24, 27, 30]
