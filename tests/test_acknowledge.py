"""What preflight cannot verify needs a person: a warning that names the step (stats.acknowledgeStep), a gate that
stays shut until the step is acknowledged, and the acknowledgement stored on migration_run with who and when;
through the API, the CLI and the panel. Statements that change the catalog only are not warned about at all."""

from __future__ import annotations

import json

import pytest

import erd_preflight as ep
from erd_preflight.notebook.widgets import PreflightPanel

from test_cli import cli, conninfo  # noqa: F401 (the fixture)

# a backfill in a DO block: preflight does not run procedural code, so a person acknowledges the step
BACKFILL = ("DO $$ BEGIN UPDATE t SET a = 0 WHERE a IS NULL AND id IN (SELECT id FROM s); END $$;\n"
            "ALTER TABLE t ALTER COLUMN b SET DEFAULT 1")


@pytest.fixture
def tables(run_sql):
    run_sql("CREATE TABLE t (id int PRIMARY KEY, a int, b int); CREATE TABLE s (id int);"
            "INSERT INTO t VALUES (1, NULL, 1), (2, 5, 2); INSERT INTO s VALUES (1)")


@pytest.mark.parametrize("statement", [
    "COMMENT ON TABLE t IS 'orders'", "GRANT SELECT ON t TO PUBLIC", "CREATE VIEW v AS SELECT id FROM t",
    "ALTER TABLE t ALTER COLUMN b SET DEFAULT 7", "ALTER TABLE t RENAME COLUMN b TO c", "CREATE SEQUENCE t_seq",
    "CREATE TYPE mood AS ENUM ('ok')", "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "ALTER TABLE t ADD CONSTRAINT a_positive CHECK (a > 0) NOT VALID",
])
def test_a_statement_that_changes_the_catalog_only_is_not_warned_about(db, tables, statement):
    plan = ep.MigrationPlan.from_sql(statement)
    report = ep.run_preflight(plan, db)
    assert report.status == "clear" and report.results == [], report.results
    if isinstance(plan.steps[0], ep.RawSQL):
        assert report.checks[0].outcome == "pass" and "changes the catalog only" in report.checks[0].message


def test_an_unverifiable_step_shuts_the_gate_until_it_is_acknowledged_and_the_acknowledgement_is_stored(
        db, store, tables):
    plan = ep.MigrationPlan.from_sql(BACKFILL)
    run = ep.MigrationRun.start(plan, db, store_schema=store)
    report = run.preflight()
    [finding] = report.results
    assert report.status == "clear" and finding.check_id == "UNMODELLED_SQL_WARNING"
    assert finding.stats == {"acknowledgeStep": 1} and "cannot verify step 1" in finding.message
    assert json.loads(report.contract_json())["results"][0]["stats"] == {"acknowledgeStep": 1}

    decision = run.gate()
    assert not decision.can_apply and [r.code for r in decision.reasons] == ["ACKNOWLEDGEMENT_REQUIRED"]
    [ask] = decision.acknowledgements_needed
    assert (ask.step, ask.acknowledged) == (1, False)
    with pytest.raises(ep.ApplyBlocked, match="cannot verify step 1"):
        run.apply()
    with pytest.raises(ValueError, match="steps that need an acknowledgement are: 1"):
        run.acknowledge(2)

    record = run.apply(acknowledge=[1])
    assert record.status == "applied"
    [ack] = record.acknowledgements
    assert ack.step == 1 and ack.acknowledged_by and ack.report_created_at == report.model_dump(
        mode="json", by_alias=True)["createdAt"]
    assert ack["kind"] == "acknowledgement" and "cannot verify step 1" in ack.finding
    stored = ep.runs(db, store_schema=store)
    assert stored.iloc[0]["status"] == "applied"


def test_an_acknowledgement_counts_for_the_report_it_was_given_for_only(db, store, tables):
    run = ep.MigrationRun.start(ep.MigrationPlan.from_sql(BACKFILL), db, store_schema=store)
    run.preflight()
    run.acknowledge(1, by="ana")
    assert run.gate().can_apply
    run.preflight()  # a new report may say something else about the step
    decision = run.gate()
    assert not decision.can_apply and decision.reasons[0].code == "ACKNOWLEDGEMENT_REQUIRED"


def test_the_cli_acknowledges_with_acknowledge_step(tmp_path, conninfo, store, tables):  # noqa: F811
    plan = tmp_path / "0009_backfill.sql"
    plan.write_text(BACKFILL)
    refused = cli("apply", str(plan), "--store-schema", store, url=conninfo)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "ACKNOWLEDGEMENT_REQUIRED" in refused.stdout and "--acknowledge 1" in refused.stdout
    applied = cli("apply", str(plan), "--store-schema", store, "--acknowledge", "1", url=conninfo)
    assert applied.returncode == 0, applied.stdout + applied.stderr


def test_the_panel_acknowledges_with_the_tick_and_the_typed_step_number(db, store, tables):
    panel = PreflightPanel(ep.MigrationPlan.from_sql(BACKFILL), db, store_schema=store, confirmed_by="analyst")
    panel.preflight_button.click()
    panel.wait()
    assert panel.apply_button.disabled and "ACKNOWLEDGEMENT_REQUIRED" in panel.gate_view.value
    [row] = panel.acknowledgement_rows
    assert "cannot verify step 1" in row.info.value and row.acknowledge_button.disabled
    row.tick.value = True
    row.typed.value = "2"
    assert row.acknowledge_button.disabled  # ticked, wrong step
    row.typed.value = "1"
    row.acknowledge_button.click()
    assert panel.errors == [] and not panel.apply_button.disabled
    [ack] = panel.run.refresh().acknowledgements
    assert ack.acknowledged_by == "analyst" and "✓ acknowledged" in panel.acknowledgement_rows[0].state.value
    panel.apply_button.click()  # the apply runs in a thread, as the preflight does
    panel.wait(120)
    assert panel.errors == [] and panel.run.refresh().status == "applied"
