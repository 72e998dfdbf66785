"""The notebook face without a browser: panels driven by clicks, ticks and typing against a real database,
and the rich HTML a saved notebook keeps."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import erd_preflight as ep
from erd_preflight.notebook.widgets import PreflightPanel, RunHistoryPanel

FAST = ep.ApplyOptions(lock_timeout=0.5, lock_retries=2, retry_backoff=0.05, retry_jitter=0.5)

MIGRATION = """
ALTER TABLE customers ALTER COLUMN email SET NOT NULL;
ALTER TABLE customers ADD CONSTRAINT customers_email_key UNIQUE (email);
ALTER TABLE orders ADD CONSTRAINT orders_customer_fkey FOREIGN KEY (customer_id) REFERENCES customers (id);
CREATE INDEX CONCURRENTLY orders_customer_idx ON orders (customer_id);
"""


@pytest.fixture
def shop(run_sql: Callable[..., Any]) -> None:
    run_sql("""
        CREATE TABLE customers (id bigint PRIMARY KEY, email text);
        INSERT INTO customers SELECT g, CASE WHEN g % 25 = 0 THEN NULL WHEN g % 30 = 0 THEN 'same' ELSE 'c' || g END
          FROM generate_series(1, 200) g;
        CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint);
        INSERT INTO orders SELECT g, CASE WHEN g % 50 = 0 THEN 9000 + g ELSE g % 200 + 1 END
          FROM generate_series(1, 400) g;
    """)


def panel_for(sql_text: str, db: ep.Database, store: str, **kwargs: Any) -> PreflightPanel:
    return PreflightPanel(ep.MigrationPlan.from_sql(sql_text, name="widget test"), db, store_schema=store,
                          options=FAST, **kwargs)


def test_the_panel_shows_each_step_with_its_phase_before_anything_runs(db, store, shop):
    panel = panel_for(MIGRATION, db, store)
    assert panel.run is None and panel.apply_button.disabled
    frame = panel.plan.steps_frame()
    assert list(frame["phase"]) == ["A", "A", "C", "B"]
    assert "CREATE INDEX CONCURRENTLY" in panel.plan_view.value and "<td>C</td>" in panel.plan_view.value


def test_apply_is_disabled_while_blocked_and_enabled_once_remediated_and_clear(db, store, shop, run_sql):
    panel = panel_for(MIGRATION, db, store)
    panel.preflight_button.click()
    panel.wait()
    assert panel.errors == []
    assert panel.report is not None and panel.report.status == "blocked"
    assert panel.apply_button.disabled
    # the progress bar ends at the checks that ran, and its label says why the rest did not (never full and red
    # beside "1/3"); the checklist shows the marks, one line per check, the message left to the finding
    assert panel.progress.value == 1 and panel.progress.max == len(panel.report.checks) == 3
    assert panel.progress_label.value == "stopped at the first blocker (step 1): 1 of 3 checks ran, 2 skipped"
    assert "✖ blocking" in panel.checklist.value and "– skipped" in panel.checklist.value
    assert "8 of 200<span class='erd-bar'" in panel.checklist.value
    visible = re.sub(r"title='[^']*'", "", panel.checklist.value)  # a line's tooltip holds its message
    assert "Backfill them" not in visible
    assert "BLOCKED" in panel.gate_view.value and "NOT_NULL_PRECHECK" in panel.gate_view.value
    assert "Backfill them" not in panel.gate_view.value, "the gate names the finding; its message is said once"

    # one accordion section per finding, with its sample rows; the paged viewer lists every violating row
    assert len(panel.findings.children) == len(panel.report.results) == 1
    view = panel.finding_views[0]
    assert "✖ blocking NOT_NULL_PRECHECK" in panel.findings.get_title(0)
    pager = view.open_violations()
    assert pager is not None and len(pager.frame) == 8 and pager.next_button.disabled
    assert set(pager.frame["id"]) == {25 * k for k in range(1, 9)}

    # the backfill needs a value before it can run; typed as an expression, it runs and the run goes stale
    backfill = view.control("backfill")
    assert backfill.run_button.disabled
    backfill.toggle_sql()
    assert "UPDATE" in backfill.sql.value and "IS NOT DISTINCT FROM NULL" in backfill.sql.value
    backfill.value.value = "'c' || id || '@example.invalid'"
    backfill.as_expression.value = True
    assert not backfill.run_button.disabled
    backfill.run_button.click()
    assert panel.errors == []
    assert run_sql("SELECT count(*) FROM customers WHERE email IS NULL") == [(0,)]

    panel.explore.value = True
    panel.preflight_button.click()
    panel.wait()
    assert panel.report.status == "blocked" and panel.apply_button.disabled
    kinds = {r.check_id: [c.remediation.kind for c in v.remediations]
             for r, v in zip(panel.report.results, panel.finding_views)}
    assert kinds["UNIQUE_PRECHECK"] == ["dedupe"]
    assert kinds["FK_VIOLATIONS_PRECHECK"] == ["delete_orphans", "null_orphans", "insert_parents"]
    panel.finding_views[0].control("dedupe").run_button.click()
    panel.finding_views[1].control("delete_orphans").run_button.click()
    assert panel.errors == []

    panel.preflight_button.click()

    panel.wait()
    assert panel.report.status == "clear" and panel.decision is not None and panel.decision.can_apply
    assert not panel.apply_button.disabled

    panel.apply_button.click()  # in a thread, as the preflight
    panel.wait(120)
    assert panel.errors == []
    record = panel.run.refresh()
    assert record.status == "applied"
    # the run says it is applied everywhere it is shown: its status line, the gate, the final record
    assert "run {} is applied".format(record.id) in panel.status.value and "preflight CLEAR" in panel.status.value
    assert "Applied" in panel.gate_view.value and "nothing left to apply" in panel.gate_view.value
    assert "Apply allowed" not in panel.gate_view.value
    # each phase's statements were shown as they ran, and the final status
    for phase in ("Phase A", "Phase B", "Phase C"):
        assert phase in panel.apply_log.value
    assert panel.apply_log.value.count("[applied]") == len([s for s in record.applied_sql if s.phase in "ABC"])
    assert "applied" in panel.final_status.value and panel.apply_button.disabled
    kinds_run = [s.phase for s in record.applied_sql]
    assert kinds_run.count("remediation") == 3


def test_a_large_table_non_concurrent_index_needs_the_tick_and_the_typed_name(db, store, run_sql):
    run_sql("CREATE TABLE events (id int, kind text); INSERT INTO events SELECT g, 'k' FROM generate_series(1, 5000) g;"
            "ANALYZE events")
    panel = panel_for("CREATE INDEX events_kind ON events (kind)", db, store,
                      preflight_options=ep.PreflightOptions(large_table_rows=1000), confirmed_by="analyst")
    panel.preflight_button.click()
    panel.wait()
    assert panel.report.status == "clear"
    assert panel.apply_button.disabled and "CONFIRMATION_REQUIRED" in panel.gate_view.value
    [row] = panel.confirmation_rows
    assert "5,000" in row.info.value and "SHARE" in row.info.value
    assert "CREATE INDEX CONCURRENTLY" in row.info.value
    assert row.confirm_button.disabled

    row.typed.value = "events"
    assert row.confirm_button.disabled  # typed, not ticked
    row.tick.value = True
    row.typed.value = "orders"
    assert row.confirm_button.disabled  # ticked, wrong name
    row.typed.value = row.request.table
    assert not row.confirm_button.disabled
    row.confirm_button.click()
    assert panel.errors == []
    assert not panel.apply_button.disabled
    [stored] = panel.run.refresh().confirmations
    assert stored["table"] == row.request.table and stored["confirmed_by"] == "analyst"
    assert stored["estimated_rows"] == 5000
    assert "✓ confirmed" in panel.confirmation_rows[0].state.value

    panel.apply_button.click()
    panel.wait(120)
    assert panel.errors == [] and panel.run.refresh().status == "applied"


def test_errors_are_shown_in_the_panel_never_swallowed(db, store, shop, run_sql):
    # a server that does not answer: the click shows why; the same call from a cell raises it
    nowhere = ep.connect("postgresql://nobody@127.0.0.1:1/nothing", connect_args={"connect_timeout": 2})
    panel = panel_for("ALTER TABLE customers ALTER COLUMN email SET NOT NULL", nowhere, store)
    panel.preflight_button.click()
    panel.wait()
    assert len(panel.errors) == 1 and "cannot connect" in panel.errors[0]
    assert "preflight failed" in panel.error_box.value and "ConnectionFailed" in panel.error_box.value
    assert not panel.preflight_button.disabled and panel.apply_button.disabled
    with pytest.raises(ep.ConnectionFailed, match="cannot connect"):
        panel.run_preflight()
    assert len(panel.errors) == 2

    # a remediation whose data changed under it fails, is rolled back, and says so in the panel
    panel = panel_for(MIGRATION, db, store)
    panel.preflight_button.click()
    panel.wait()
    backfill = panel.finding_views[0].control("backfill")
    backfill.value.value = "no_such_column + 1"
    backfill.as_expression.value = True
    backfill.run_button.click()
    assert panel.errors and "no_such_column" in panel.errors[-1]
    assert "remediation backfill failed" in panel.error_box.value
    assert not backfill.run_button.disabled  # fix the expression and run it again
    assert run_sql("SELECT count(*) FROM customers WHERE email IS NULL") == [(8,)]

    # Apply forced open on a blocked run: the gate's refusal is shown, nothing applied
    panel.apply_button.disabled = False
    panel.apply_button.click()
    panel.wait(60)
    assert "ApplyBlocked" in panel.errors[-1] and panel.run.refresh().status == "blocked"
    assert run_sql("SELECT count(*) FROM pg_constraint WHERE conname = 'customers_email_key' "
                   "AND connamespace = current_schema()::regnamespace") == [(0,)]


def test_run_history_lists_runs_and_opens_each_stored_report(db, store, shop):
    panel = panel_for(MIGRATION, db, store)
    panel.preflight_button.click()
    panel.wait()
    other = panel_for("ALTER TABLE orders ADD COLUMN note text", db, store)
    other.preflight_button.click()
    other.wait()
    history = RunHistoryPanel(db, store_schema=store)
    assert history.errors == []
    assert [value for _, value in history.picker.options] == [other.run.id, panel.run.id]
    assert "blocked" in history.table.value and "clear" in history.table.value
    history.picker.value = panel.run.id
    history.open_button.click()
    assert f"run {panel.run.id}" in history.detail.value and "NOT_NULL_PRECHECK" in history.detail.value
    assert "Checklist" in history.detail.value


def test_hostile_identifiers_are_escaped_in_every_html_view(db, store, run_sql):
    run_sql('CREATE TABLE "<img src=x onerror=alert(1)>" ("<b>c</b>" text); '
            'INSERT INTO "<img src=x onerror=alert(1)>" VALUES (NULL), (\'<script>x</script>\')')
    plan = ep.MigrationPlan(steps=[ep.SetNotNull(table="<img src=x onerror=alert(1)>", column="<b>c</b>")])
    run = ep.MigrationRun.start(plan, db, store_schema=store)
    report = run.preflight()
    assert report.status == "blocked"
    views = [report._repr_html_(), report.results[0]._repr_html_(), plan._repr_html_(), run.gate()._repr_html_(),
             run.record._repr_html_(), run.phases()._repr_html_(), report.checklist_styler().to_html()]
    for html in views:
        assert "<img src=x" not in html and "<b>c</b>" not in html and "<script>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in views[0]


def test_a_saved_report_renders_the_same_html_twice(db, store, shop):
    """A re-run notebook must compare equal under nbval: the Styler's CSS ids come from the content."""
    run = ep.MigrationRun.start(ep.MigrationPlan.from_sql(MIGRATION), db, store_schema=store)
    report = run.preflight(explore=True)
    assert report._repr_html_() == ep.PreflightReport.model_validate(report.model_dump())._repr_html_()
    html = report._repr_html_()
    for finding in ("NOT_NULL_PRECHECK", "UNIQUE_PRECHECK", "FK_VIOLATIONS_PRECHECK"):
        assert finding in html
    assert html.count("✖ blocking") == 6  # three in the checklist, three finding headers


def test_the_saved_quickstart_exported_by_nbconvert_is_a_readable_audit_record():
    import nbconvert
    import nbformat

    notebook = nbformat.read(Path(__file__).resolve().parents[1] / "notebooks" / "01_quickstart.ipynb", as_version=4)
    html, _ = nbconvert.HTMLExporter().from_notebook_node(notebook)
    assert "✖ blocking" in html and "– skipped" in html            # the blocked report's checklist, with marks
    assert "sample violating rows" in html                           # its finding, with the rows
    assert "Phase A: transactional DDL" in html                      # what apply ran, phase by phase
    assert "status history" in html and "statements run" in html     # the stored run: every status and statement
    assert html.count("applied") >= 8


def test_a_finding_plots_its_violations_over_time_counted_as_postgresql_counts_them(db, store, run_sql):
    run_sql("""
        CREATE TABLE signups (id bigint PRIMARY KEY, email text, signed_up_at timestamptz NOT NULL, note text);
        INSERT INTO signups SELECT g, CASE WHEN g > 150 AND g % 3 = 0 THEN NULL ELSE 'u' || g END,
               TIMESTAMPTZ '2026-01-01 00:00:00+00' + g * INTERVAL '1 day', 'n'
          FROM generate_series(1, 300) g;
    """)
    panel = panel_for("ALTER TABLE signups ALTER COLUMN email SET NOT NULL", db, store)
    panel.preflight_button.click()
    panel.wait()
    view = panel.finding_views[0]
    assert view.time_picker.options == ("signed_up_at",)
    frame = panel.run.violations_over_time(0)
    assert frame.attrs == {"period": "week", "column": "signed_up_at"}
    expected = run_sql("SELECT date_trunc('week', signed_up_at AT TIME ZONE 'UTC'), count(*) FROM signups "
                       "WHERE email IS NULL GROUP BY 1 ORDER BY 1")
    counted = [(t.tz_convert(None).to_pydatetime(), n) for t, n in zip(frame["at"], frame["violations"])]
    assert [(t, n) for t, n in counted if n] == expected
    # every week of the table's span is there, 0 before the first NULL: when the bad data started shows
    assert counted[0] == (dt.datetime(2025, 12, 29), 0) and len(counted) == 44
    assert all(b - a == dt.timedelta(weeks=1) for (a, _), (b, _) in zip(counted, counted[1:]))
    assert frame["violations"].sum() == panel.report.results[0].stats["violations"] == 50
    view.plot_button.click()
    assert panel.errors == []
    assert "data:image/png;base64," in view.plot.value, "drawn by matplotlib (the notebook extra)"
    first_week = expected[0][0].date().isoformat()  # the week the NULLs started: 2026-06-01
    assert f"violating rows per week of <b>signed_up_at</b>: the first in the week of {first_week}" in view.plot.value
    run_sql("CREATE TABLE plain (id int, note text); INSERT INTO plain VALUES (1, NULL)")
    other = ep.MigrationRun.start(ep.MigrationPlan.from_sql("ALTER TABLE plain ALTER COLUMN note SET NOT NULL"),
                                  db, store_schema=store)
    other.preflight()
    assert other.time_columns(0) == []
    with pytest.raises(ValueError, match="no timestamp or date column"):
        other.violations_over_time("NOT_NULL_PRECHECK")


def test_the_panel_applies_in_a_thread_and_its_cancel_button_stops_the_apply(db, store, run_sql, conninfo):
    import threading
    import time

    import psycopg

    run_sql("CREATE TABLE big (id int, v int); INSERT INTO big SELECT g, g FROM generate_series(1, 1000) g")
    panel = panel_for("ALTER TABLE big ADD COLUMN w int; ALTER TABLE big ADD CHECK (v > 0);", db, store)
    panel.preflight_button.click()
    panel.wait()
    assert panel.report.status == "clear" and not panel.apply_button.disabled
    # a lock held elsewhere keeps phase A waiting: the Cancel button stops it there
    holder = psycopg.connect(conninfo)
    holder.execute("LOCK TABLE big IN ACCESS SHARE MODE")
    panel.apply_button.click()
    deadline = time.monotonic() + 30
    while panel.cancel_button.disabled and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not panel.cancel_button.disabled, "Cancel is live while the apply runs"
    assert panel.worker is not None and panel.worker is not threading.current_thread()
    panel.cancel_button.click()
    panel.wait(60)
    holder.rollback()
    holder.close()
    record = panel.run.refresh()
    assert record.status == "failed" and panel.errors and "cancel" in panel.errors[-1].lower()
    assert run_sql("SELECT count(*) FROM information_schema.columns WHERE table_schema = current_schema() "
                   "AND table_name = 'big' AND column_name = 'w'") == [(0,)], "phase A rolled back whole"
    assert "failed" in panel.status.value and panel.cancel_button.disabled


def test_the_panel_previews_a_dedupe_and_restores_what_it_deleted(db, store, shop, run_sql):
    """The preview says what the dedupe deletes and that orders referencing those customers would become orphans,
    with the rule's kept rows; after it runs, a Restore button in the run's record puts the customers back."""
    before = run_sql("SELECT count(*), string_agg(c::text, ',' ORDER BY id) FROM customers c")
    panel = panel_for(MIGRATION, db, store, explore=True)
    panel.preflight_button.click()
    panel.wait()
    view = next(v for r, v in zip(panel.report.results, panel.finding_views) if r.check_id == "UNIQUE_PRECHECK")
    dedupe = view.control("dedupe")
    dedupe.survivor.value = "most_referenced"
    dedupe.preview_button.click()
    assert panel.errors == []
    assert "dedupe deletes 4 rows of" in dedupe.preview.value
    assert "orders reference them" in dedupe.preview.value and "become orphans" in dedupe.preview.value
    assert "<th>this row</th>" in dedupe.preview.value and "<td>deleted</td>" in dedupe.preview.value
    assert not panel.kept.children
    dedupe.run_button.click()
    assert panel.errors == []
    assert run_sql("SELECT count(*) FROM customers")[0][0] == before[0][0] - 4
    (position,) = panel.kept.buttons
    assert "dedupe changed 4 rows, kept on the run" in panel.kept.children[0].children[0].value
    panel.kept.buttons[position].click()
    assert panel.errors == []
    assert run_sql("SELECT count(*), string_agg(c::text, ',' ORDER BY id) FROM customers c") == before
    assert "restored" in panel.kept.children[0].value and not panel.kept.buttons
