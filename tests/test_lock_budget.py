"""The report names each statement's locks, work and estimated hold (``report.locks``), and the gate asks for a
confirmation where a write-blocking lock is held longer than ``ApplyOptions.max_blocking_lock``: in the library,
the CLI and the stored record. The online form keeps a large table's step under the budget. Both servers."""

from __future__ import annotations

import json

import pytest

import erd_preflight as ep
from erd_preflight.plan import phases
from test_cli import cli


@pytest.fixture
def table(run_sql) -> None:
    run_sql("CREATE TABLE t (id int, a int, c int); "
            "INSERT INTO t SELECT g, g, g FROM generate_series(1, 20000) g; ANALYZE t")


def test_the_report_names_each_statements_lock_work_and_estimated_hold(db, table):
    report = ep.run_preflight(ep.MigrationPlan.from_sql(
        "ALTER TABLE t ALTER COLUMN c TYPE bigint;\nALTER TABLE t ALTER COLUMN a SET DEFAULT 1"), db, online=False)
    # the SET DEFAULT takes no lock its transaction lacks: PostgreSQL shows nothing new for it
    (first,) = report.locks.statements
    assert (first.step, first.mode, first.blocks, first.work, first.transaction, first.measured) == \
        (1, "ACCESS EXCLUSIVE", "reads and writes", "rewrite", "A1", True)
    assert first.relation.endswith(".t") and first.rows == 20000
    assert first.hold_low_seconds <= first.hold_seconds <= first.hold_high_seconds and first.hold_seconds > 0.001
    frame = report.locks_frame()
    assert list(frame["work"]) == ["rewrite"]
    contract = json.loads(report.contract_json())
    assert contract["locks"]["statements"][0]["holdSeconds"] == first.hold_seconds


def test_without_a_rehearsal_the_step_kinds_declared_lock_stands_in_marked_not_measured(db, table):
    report = ep.run_preflight(ep.MigrationPlan.from_sql("ALTER TABLE t ALTER COLUMN a SET NOT NULL"), db,
                              rehearse=False, online=False)
    (held,) = report.locks.statements
    assert (held.mode, held.work, held.measured) == ("ACCESS EXCLUSIVE", "scan", False)
    assert held.relation.endswith(".t") and held.rows == 20000 and held.hold_seconds > 0.001  # its rows count


def test_a_lock_held_longer_than_the_budget_needs_a_confirmation_naming_the_table(db, table, store):
    plan = ep.MigrationPlan.from_sql("ALTER TABLE t ALTER COLUMN c TYPE bigint")
    run = ep.MigrationRun.start(plan, db, store_schema=store, options=ep.ApplyOptions(max_blocking_lock=0.0001))
    run.preflight()
    decision = run.gate()
    (request,) = decision.confirmations_needed
    assert request.kind == "lock_budget" and request.table.endswith(".t") and request.hold_seconds > 0.0001
    (reason,) = [r for r in decision.reasons if r.code == "CONFIRMATION_REQUIRED"]
    assert "longer than max_blocking_lock" in reason.message and "ACCESS EXCLUSIVE" in reason.message
    (stored,) = run.confirm_large_non_concurrent("t")
    assert stored.hold_seconds == request.hold_seconds  # the estimate that was shown is stored with it
    assert run.gate().can_apply
    run.apply()


def test_the_online_form_keeps_a_large_tables_step_under_the_budget(db, table, store, monkeypatch):
    monkeypatch.setattr(phases, "ONLINE_MIN_BYTES", 0)
    plan = ep.MigrationPlan.from_sql("ALTER TABLE t ALTER COLUMN a SET NOT NULL")
    budget = ep.ApplyOptions(max_blocking_lock=0.001)  # a catalog change alone: the online form holds no more
    written = ep.MigrationRun.start(plan, db, store_schema=store,
                                    options=budget.model_copy(update={"online": False}))
    written.preflight()
    assert [r.kind for r in written.gate().confirmations_needed] == ["lock_budget"]
    online = ep.MigrationRun.start(plan, db, store_schema=store, options=budget)
    report = online.preflight()
    assert report.locks.online_steps == [1]
    scans = [s for s in report.locks.statements if s.work == "scan"]
    assert scans and all(s.mode == "SHARE UPDATE EXCLUSIVE" and s.blocks == "DDL" for s in scans)
    assert online.gate().confirmations_needed == [] and online.gate().can_apply


def test_the_cli_asks_for_the_budget_confirmation_with_its_own_flag(tmp_path, server_url, schema, store, table,
                                                                   run_sql):
    from urllib.parse import quote

    conninfo = f"{server_url}{'&' if '?' in server_url else '?'}options={quote(f'-c search_path={schema}')}"
    plan = tmp_path / "0009_wider.sql"
    plan.write_text("ALTER TABLE t ALTER COLUMN c TYPE bigint;")
    refused = cli("apply", str(plan), "--store-schema", store, "--max-blocking-lock", "0.0001", url=conninfo)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "longer than max_blocking_lock" in refused.stdout and "--confirm-large " in refused.stdout
    assert "apply(confirm_large_non_concurrent" not in refused.stdout
    applied = cli("apply", str(plan), "--store-schema", store, "--max-blocking-lock", "0.0001",
                  "--confirm-large", "t", url=conninfo)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert run_sql("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 't'::regclass "
                   "AND attname = 'c'") == [("bigint",)]


def test_the_notebook_report_shows_the_locks(db, table):
    report = ep.run_preflight(ep.MigrationPlan.from_sql("ALTER TABLE t ALTER COLUMN c TYPE bigint"), db,
                              online=False)
    html = report._repr_html_()
    assert "Locks at apply" in html and "rewrite" in html


def test_the_panel_asks_for_the_budget_confirmation_and_says_why(db, table, store):
    from erd_preflight.notebook.widgets import PreflightPanel

    plan = ep.MigrationPlan.from_sql("ALTER TABLE t ALTER COLUMN c TYPE bigint")
    panel = PreflightPanel(plan, db, store_schema=store, options=ep.ApplyOptions(max_blocking_lock=0.0001))
    panel.run_preflight()
    panel.wait(60)
    assert "Locks at apply" in panel.checklist.value and "rewrite" in panel.checklist.value
    (row,) = panel.confirmation_rows
    assert "lock budget" in row.info.value and "ACCESS EXCLUSIVE" in row.info.value
    assert panel.apply_button.disabled
    row.tick.value, row.typed.value = True, row.request.table
    row.confirm_button.click()
    panel.wait(60)
    assert not panel.apply_button.disabled, panel.errors


def test_many_index_builds_on_a_table_of_a_few_rows_do_not_alarm(db, run_sql):
    run_sql("CREATE TABLE few (a int, b int, c int); INSERT INTO few SELECT g, g, g FROM generate_series(1, 8) g")
    plan = ep.MigrationPlan.from_sql("\n".join(f"CREATE INDEX few_{i} ON few ({'abc'[i % 3]});" for i in range(30)))
    report = ep.run_preflight(plan, db)
    assert len(report.locks.statements) == 30
    assert max(s.hold_seconds for s in report.locks.statements) < 0.1, report.locks_frame()
    assert "blocks" not in report.summary().split("checks ran")[-1]  # no lock line in the text report
