"""Long scans on real servers: counted in pieces exactly as one query counts, the first blocking answer before
the scan ends, per-partition counts, cancel with nothing left running on the server, and the data checks read
from a real streaming standby."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from urllib.parse import quote

import psycopg
import pytest

import erd_preflight as ep
from erd_preflight.read.scan import ScanProgress

from oracle import assert_agrees, postgres_accepts
from standby import caught_up, standby_of

SMALL_PIECES = {"scan_chunk_rows": 1_000}


class Recorder:
    """A progress callback that keeps what it was given, in order, and the scan's progress lines."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def __call__(self, run: ep.CheckRun, done: int, total: int) -> None:
        self.events.append(("check", run))

    def scan(self, progress: ScanProgress) -> None:
        self.events.append(("scan", progress))

    def of(self, kind: str) -> list:
        return [e for k, e in self.events if k == kind]


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("every", [0, 7, 997, 20_000])
def test_a_scan_in_pieces_counts_what_postgresql_counts(db, run_sql, conninfo, workers, every):
    run_sql("CREATE TABLE t (id int, a int, c int)")
    run_sql("INSERT INTO t SELECT g, CASE WHEN %s > 0 AND g %% %s = 0 THEN NULL ELSE g END, g %% 50 "
            "FROM generate_series(1, 20000) g", (every, max(every, 1)))
    run_sql("ANALYZE t")
    statement = "ALTER TABLE t ALTER COLUMN a SET NOT NULL;\nALTER TABLE t ADD CHECK (c < 49)"
    recorder = Recorder()
    report = ep.run_preflight(ep.MigrationPlan.from_sql(statement), db, explore=True, progress=recorder,
                              scan_workers=workers, **SMALL_PIECES)
    expected_nulls = run_sql("SELECT count(*) FROM t WHERE a IS NULL")[0][0]
    expected_bad = run_sql("SELECT count(*) FROM t WHERE NOT (c < 49)")[0][0]
    not_null, check = report.checks[0], report.checks[1]
    assert not_null.stats["violations"] == expected_nulls and not_null.stats["totalRows"] == 20_000
    assert not_null.stats["countedRows"] == 20_000
    assert check.stats["violations"] == expected_bad == 400
    scans = recorder.of("scan")
    assert len(scans) > 10, "the table was read in block ranges, each reported"
    assert scans[-1].rows_done == 20_000 and scans[-1].pieces_done == scans[-1].pieces_total
    assert "of ~20,000 rows" in scans[-1].line()
    assert_agrees(report, postgres_accepts(conninfo, statement.split(";\n")), statement)


def test_with_no_one_watching_a_large_table_is_read_in_one_query(db, run_sql, conninfo):
    """Pieces serve progress and the early answer; without a progress callback and with exact counts, the
    table is read in one query (PostgreSQL's own parallel scan), and counts the same."""
    _one_in_a_hundred_null(run_sql)
    statement = "ALTER TABLE t ALTER COLUMN a SET NOT NULL"
    report = ep.run_preflight(ep.MigrationPlan.from_sql(statement), db, **SMALL_PIECES)
    stats = report.results[0].stats
    assert stats["violations"] == 500 and stats["totalRows"] == 50_000 and "countedRows" not in stats
    watched = ep.run_preflight(ep.MigrationPlan.from_sql(statement), db, progress=Recorder(), **SMALL_PIECES)
    assert watched.results[0].stats["countedRows"] == 50_000, "with progress, the same table is read in pieces"
    assert_agrees(report, postgres_accepts(conninfo, [statement]), statement)


def _one_in_a_hundred_null(run_sql) -> None:
    run_sql("CREATE TABLE t (id int, a int)")
    run_sql("INSERT INTO t SELECT g, CASE WHEN g % 100 = 0 THEN NULL ELSE g END FROM generate_series(1, 50000) g")
    run_sql("ANALYZE t")


def test_the_first_blocking_answer_reaches_progress_before_the_scan_ends(db, run_sql):
    _one_in_a_hundred_null(run_sql)
    recorder = Recorder()
    report = ep.run_preflight(ep.MigrationPlan.from_sql("ALTER TABLE t ALTER COLUMN a SET NOT NULL"), db,
                              progress=recorder, scan_workers=1, **SMALL_PIECES)
    kinds = [k for k, _ in recorder.events]
    early = recorder.of("check")[0]
    assert early.outcome == "blocking" and early.stats["countedRows"] < 50_000 * 0.05
    assert early.sample_rows and all(row["a"] is None for row in early.sample_rows)
    assert early.message.startswith("at least ")
    # the early answer came after the first piece, and the scan went on to count every row
    assert kinds.index("check") == 1 and kinds[-1] == "check" and kinds.count("scan") > 10
    final = report.checks[0]
    assert final.stats["violations"] == 500 and final.stats["countedRows"] == 50_000
    assert final.sample_rows is None and "sampleRows" not in json.loads(report.contract_json())["checks"][0]


def test_counts_early_stops_at_the_first_piece_and_says_how_much_it_read(db, run_sql):
    _one_in_a_hundred_null(run_sql)
    recorder = Recorder()
    report = ep.run_preflight(ep.MigrationPlan.from_sql("ALTER TABLE t ALTER COLUMN a SET NOT NULL"), db,
                              progress=recorder, scan_workers=1, counts="early", **SMALL_PIECES)
    finding = report.results[0]
    assert report.status == "blocked" and finding.stats["countedEarly"] == 1
    assert finding.stats["countedRows"] < 50_000 * 0.05 < finding.stats["totalRows"]
    assert 0 < finding.stats["violations"] < 500
    assert "counts='exact'" in finding.message and finding.message.startswith("at least ")
    assert len(recorder.of("scan")) == 1


def test_a_partitioned_table_is_checked_partition_by_partition(db, run_sql, conninfo):
    run_sql("CREATE TABLE t (id int, a int) PARTITION BY RANGE (id)")
    for low, high in [(0, 1000), (1000, 5000), (5000, 100000)]:
        run_sql(f"CREATE TABLE t_{low} PARTITION OF t FOR VALUES FROM ({low}) TO ({high})")
    run_sql("INSERT INTO t SELECT g, CASE WHEN g % 1000 = 3 THEN NULL ELSE g END FROM generate_series(0, 9999) g")
    run_sql("ANALYZE t")
    statement = "ALTER TABLE t ALTER COLUMN a SET NOT NULL"
    report = ep.run_preflight(ep.MigrationPlan.from_sql(statement), db, progress=Recorder(), **SMALL_PIECES)
    stats = report.results[0].stats
    assert stats["partitions"] == 3 and stats["violations"] == 10
    assert (stats["rows[t_0]"], stats["rows[t_1000]"], stats["rows[t_5000]"]) == (1000, 4000, 5000)
    assert (stats["violations[t_0]"], stats["violations[t_1000]"], stats["violations[t_5000]"]) == (1, 4, 5)
    frame = report.partitions_frame(0)
    assert list(frame.columns) == ["partition", "rows", "violations"]
    assert frame.set_index("partition")["violations"].to_dict() == {"t_0": 1, "t_1000": 4, "t_5000": 5}
    assert_agrees(report, postgres_accepts(conninfo, [statement]), statement)


SLOW = "ALTER TABLE t ADD CHECK (length(repeat(md5(a::text), 400)) > 0)"


def _slow_table(run_sql, rows: int = 400_000) -> None:
    run_sql("CREATE TABLE t (a int)")
    run_sql("INSERT INTO t SELECT g FROM generate_series(1, %s) g", (rows,))
    run_sql("ANALYZE t")


def _running(conninfo: str, fragment: str) -> list[tuple]:
    """The target's active queries holding ``fragment``: never the rehearsal's, which runs the same statement on
    an empty copy in another database of the same server, so Ctrl-C is sent while the check itself runs."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        return conn.execute("SELECT pid, state, query FROM pg_stat_activity WHERE state = 'active' "
                            "AND datname = current_database() AND query LIKE %s AND pid <> pg_backend_pid()", (f"%{fragment}%",)).fetchall()


def _wait_running(conninfo: str, fragment: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not _running(conninfo, fragment):
        assert time.monotonic() < deadline, "the check never started"
        time.sleep(0.02)


@pytest.mark.parametrize("pieces", [False, True])
def test_cancel_stops_the_check_and_leaves_nothing_running_on_the_server(db, run_sql, conninfo, pieces):
    _slow_table(run_sql)
    cancel = ep.Cancel()
    outcome: list[BaseException | ep.PreflightReport] = []
    options = {"scan_chunk_rows": 20_000, "scan_workers": 2} if pieces else {"scan_chunk_rows": 10**9}

    def run() -> None:
        try:
            outcome.append(ep.run_preflight(ep.MigrationPlan.from_sql(SLOW), db, cancel=cancel, **options))
        except BaseException as exc:  # noqa: BLE001
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    _wait_running(conninfo, "repeat(md5")
    started = time.monotonic()
    cancel.cancel()
    thread.join(timeout=60)
    assert time.monotonic() - started < 10
    assert isinstance(outcome[0], ep.PreflightCancelled), outcome
    time.sleep(0.2)
    assert _running(conninfo, "repeat(md5") == []


def test_ctrl_c_in_the_cli_cancels_the_query_on_the_server(run_sql, conninfo, server_url, schema, tmp_path):
    _slow_table(run_sql)
    plan = tmp_path / "slow.sql"
    plan.write_text(SLOW + ";\n")
    url = f"{server_url}{'&' if '?' in server_url else '?'}options={quote(f'-c search_path={schema}')}"
    cli = subprocess.Popen([sys.executable, "-m", "erd_preflight.cli", "check", str(plan), "--db", url,
                            "--chunk-rows", str(10**9)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           # a suite started in the background inherits SIGINT ignored, as every child would: a
                           # user's terminal delivers it, so the CLI gets it as a user's would
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        try:
            _wait_running(conninfo, "repeat(md5", timeout=60)
        except AssertionError:
            cli.kill()
            raise AssertionError(cli.communicate())
        cli.send_signal(signal.SIGINT)
        out, err = cli.communicate(timeout=60)
    finally:
        cli.kill()
    assert cli.returncode == 130, (out, err)
    assert "cancelled" in err and "nothing was changed" in err
    time.sleep(0.2)
    assert _running(conninfo, "repeat(md5") == []


# --- a real streaming standby ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def standby(server_url):
    try:
        with standby_of(server_url) as url:
            yield url
    except RuntimeError as exc:
        if "binaries" not in str(exc) and "pg_basebackup" not in str(exc):
            raise
        pytest.skip(f"no standby of this server here: {exc}")


def _standby_conninfo(standby: str, schema: str) -> str:
    return psycopg.conninfo.make_conninfo(standby, options=f"-c search_path={schema}")


def test_the_data_checks_read_the_standby_and_the_report_says_where(db, run_sql, standby, schema, server_url):
    run_sql("CREATE TABLE t (a int)")
    run_sql("INSERT INTO t SELECT g FROM generate_series(1, 1000) g")
    caught_up(server_url, standby)
    replica = _standby_conninfo(standby, schema)
    plan = ep.MigrationPlan.from_sql("ALTER TABLE t ALTER COLUMN a SET NOT NULL")
    with psycopg.connect(standby, autocommit=True) as conn:
        conn.execute("SELECT pg_wal_replay_pause()")
        try:
            run_sql("INSERT INTO t VALUES (NULL)")  # on the primary only, while the standby does not replay
            on_primary = ep.run_preflight(plan, db)
            on_standby = ep.run_preflight(plan, db, read_from=replica)
        finally:
            conn.execute("SELECT pg_wal_replay_resume()")
    assert on_primary.status == "blocked"
    assert on_standby.status == "clear", "the standby had not replayed the NULL: its rows are what was read"
    stamp = on_standby.replica
    assert stamp is not None and stamp.lag_bytes > 0 and stamp.snapshots == 1 and stamp.conflicts == 0
    assert stamp.replay_lsn and "replayLsn" in on_standby.contract_json()
    caught_up(server_url, standby)
    after = ep.run_preflight(plan, db, read_from=replica)
    # "blocked" proves the NULL was replayed. The lag is not pinned to 0: the primary writes WAL of its own
    # (a running-xacts record every 15 s, autovacuum), and a record can land between catch-up and the stamp.
    assert after.status == "blocked" and after.replica.lag_bytes < 64 * 1024


def test_read_from_must_be_a_standby(db, run_sql, server_url, schema):
    run_sql("CREATE TABLE t (a int)")
    with pytest.raises(ep.ReplicaError, match="not a hot standby"):
        ep.run_preflight(ep.MigrationPlan.from_sql("ALTER TABLE t ALTER COLUMN a SET NOT NULL"), db,
                         read_from=psycopg.conninfo.make_conninfo(server_url, options=f"-c search_path={schema}"))


def test_a_recovery_conflict_runs_the_check_again_in_a_new_snapshot(db, run_sql, standby, schema, server_url):
    run_sql("CREATE TABLE t (a int); CREATE TABLE u (b int)")
    run_sql("INSERT INTO t SELECT g FROM generate_series(1, 100) g; INSERT INTO u SELECT g FROM generate_series(1, 100) g")
    caught_up(server_url, standby)
    with psycopg.connect(standby, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET max_standby_streaming_delay = 0")
        conn.execute("SELECT pg_reload_conf()")
    try:
        conflicted = []

        def progress(run: ep.CheckRun, done: int, total: int) -> None:
            if done == 1 and not conflicted:
                # The preflight's snapshot holds a lock on t; the primary takes an exclusive one, which the
                # standby must replay: it ends the preflight's session (a recovery conflict).
                run_sql("BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE; COMMIT")
                caught_up(server_url, standby)
                conflicted.append(True)

        plan = ep.MigrationPlan.from_sql("ALTER TABLE t ALTER COLUMN a SET NOT NULL;\n"
                                         "ALTER TABLE u ALTER COLUMN b SET NOT NULL")
        report = ep.run_preflight(plan, db, read_from=_standby_conninfo(standby, schema), progress=progress)
    finally:
        with psycopg.connect(standby, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM RESET max_standby_streaming_delay")
            conn.execute("SELECT pg_reload_conf()")
    assert report.status == "clear", report.summary()
    assert report.replica.conflicts == 1 and report.replica.snapshots == 2


def test_the_panel_runs_preflight_in_a_thread_and_its_cancel_button_stops_it(db, run_sql, conninfo, store):
    from erd_preflight.notebook.widgets import PreflightPanel

    _slow_table(run_sql)
    panel = PreflightPanel(ep.MigrationPlan.from_sql(SLOW), db, store_schema=store,
                           preflight_options=ep.PreflightOptions(scan_chunk_rows=10**9))
    panel.preflight_button.click()  # returns at once: the kernel is free while the check runs
    assert panel.worker is not None and panel.worker.is_alive()
    _wait_running(conninfo, "repeat(md5")
    assert not panel.cancel_button.disabled
    panel.cancel_button.click()
    panel.wait(timeout=60)
    assert not panel.worker.is_alive()
    assert "cancelled" in panel.progress_label.value and "PreflightCancelled" in panel.errors[-1]
    assert panel.cancel_button.disabled and not panel.preflight_button.disabled
    time.sleep(0.2)
    assert _running(conninfo, "repeat(md5") == []


def test_a_table_never_analyzed_is_still_read_in_pieces(db, run_sql):
    run_sql("CREATE TABLE t (a int) WITH (autovacuum_enabled = off)")
    run_sql("INSERT INTO t SELECT CASE WHEN g % 1000 = 0 THEN NULL ELSE g END FROM generate_series(1, 30000) g")
    assert run_sql("SELECT reltuples FROM pg_class WHERE oid = 't'::regclass")[0][0] <= 0
    recorder = Recorder()
    report = ep.run_preflight(ep.MigrationPlan.from_sql("ALTER TABLE t ALTER COLUMN a SET NOT NULL"), db,
                              progress=recorder, **SMALL_PIECES)
    assert report.results[0].stats["violations"] == 30 and report.results[0].stats["countedRows"] == 30_000
    assert len(recorder.of("scan")) > 5


@pytest.mark.parametrize("duplicate", [False, True])
def test_a_large_unique_key_is_judged_by_the_parallel_sort_of_hashes_as_postgresql_judges_it(db, run_sql, conninfo,
                                                                                           duplicate):
    run_sql("CREATE TABLE t (email text)")
    run_sql("INSERT INTO t SELECT 'user' || g || '@example.com' FROM generate_series(1, 20000) g")
    if duplicate:
        run_sql("INSERT INTO t VALUES ('user77@example.com')")
    run_sql("ANALYZE t")
    statement = "ALTER TABLE t ADD UNIQUE (email)"
    report = ep.run_preflight(ep.MigrationPlan.from_sql(statement), db, **SMALL_PIECES)
    assert assert_agrees(report, postgres_accepts(conninfo, [statement]), statement) == \
        ("blocked" if duplicate else "clear")
    assert report.checks[-1].stats["violations"] == (2 if duplicate else 0)
