"""``rehearse_on``: the plan run by PostgreSQL on a full copy of the target, on the real rows, never on the target.

The copy is a real ``pg_basebackup`` of the test server, started on this machine as a primary of its own: it
shares the target's system identifier and OIDs, so only the live advisory-lock test tells the two apart. The
verdicts are checked against the oracle: the same statements on the target, in a transaction rolled back.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql
from sqlalchemy.engine import make_url

import erd_preflight as ep
from erd_preflight import CopyRefused
from erd_preflight.report.frames import lock_lines
from standby import copy_of, standby_of


def _oracle(url: str, text: str) -> str | None:
    """PostgreSQL's own verdict on the target: the SQLSTATE it refuses ``text`` with, None when it applies."""
    with psycopg.connect(url) as conn:
        try:
            conn.execute(text)
        except psycopg.Error as exc:
            return exc.sqlstate or "?"
        finally:
            conn.rollback()
    return None


@pytest.fixture(scope="module")
def target(server_url: str) -> Iterator[tuple[str, str, str]]:
    """(target URL, copy URL, schema): a schema with rows on the test server, and a physical copy of the server
    made after they were written."""
    name = f"copy_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        s = sql.Identifier(name)
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(s))
        conn.execute(sql.SQL("CREATE TABLE {}.items (id int PRIMARY KEY, qty int NOT NULL CHECK (qty >= 0))").format(s))
        conn.execute(sql.SQL("INSERT INTO {}.items SELECT g, g % 7 FROM generate_series(1, 2000) g").format(s))
        conn.execute("CHECKPOINT")
    try:
        try:
            with copy_of(server_url) as url:
                yield server_url, url, name
        except RuntimeError as exc:  # pragma: no cover - a machine that cannot run a second server
            pytest.skip(f"no physical copy here: {exc}")
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


def _db(url: str) -> ep.Database:
    return ep.connect(url)


def _do(schema: str, change: str) -> str:
    return f"DO $$ BEGIN UPDATE {schema}.items SET qty = {change}; END $$;"


def test_a_physical_copy_shares_the_targets_identity_yet_is_told_apart(target: tuple[str, str, str]) -> None:
    url, copy, schema = target
    ids = []
    for u in (url, copy):
        with psycopg.connect(u) as conn:
            ids.append(conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone())
    assert ids[0] == ids[1]  # what a physical copy shares: no identifier tells it from its source
    plan = ep.MigrationPlan.from_sql(_do(schema, "qty + 1"))
    report = ep.run_preflight(plan, _db(url), rehearse_on=copy)
    assert _oracle(url, _do(schema, "qty + 1")) is None
    assert report.status == "clear" and report.steps_to_acknowledge == []
    assert any("ran without error on the copy" in c.message for c in report.checks), [c.message for c in report.checks]


def test_rehearse_on_the_target_itself_is_refused_before_anything_runs(target: tuple[str, str, str]) -> None:
    url, _, schema = target
    plan = ep.MigrationPlan.from_sql(f"CREATE TABLE {schema}.made_by_the_plan (id int)")
    for same in (url, psycopg.conninfo.make_conninfo(url, application_name="another_name")):
        with pytest.raises(CopyRefused, match="is the target itself"):
            ep.run_preflight(plan, _db(url), rehearse_on=same)


def test_a_step_postgresql_refuses_on_the_copys_rows_blocks_with_its_error(target: tuple[str, str, str]) -> None:
    url, copy, schema = target
    text = _do(schema, "qty - 5")  # rows with qty < 5 break the CHECK
    without = ep.run_preflight(ep.MigrationPlan.from_sql(text), _db(url))
    assert without.status == "clear" and without.steps_to_acknowledge == [1]  # read-only: a person decides
    report = ep.run_preflight(ep.MigrationPlan.from_sql(text), _db(url), rehearse_on=copy)
    assert _oracle(url, text) == "23514"
    assert report.status == "blocked"
    assert "SQLSTATE 23514" in report.results[0].message and "on the copy" in report.results[0].message


def test_concurrent_builds_are_timed_for_real_on_the_copy_then_dropped(target: tuple[str, str, str]) -> None:
    url, copy, schema = target
    plan = ep.MigrationPlan.from_sql(f"CREATE INDEX CONCURRENTLY items_qty ON {schema}.items (qty)")
    report = ep.run_preflight(plan, _db(url), rehearse_on=copy)
    assert report.locks is not None
    timed = [s for s in report.locks.statements if s.timed]
    assert timed and all("CONCURRENTLY" in s.sql for s in timed), report.locks.statements
    assert "(timed on the copy)" in "\n".join(lock_lines(report))
    for u in (url, copy):  # the copy's index was dropped; the target never had one
        with psycopg.connect(u) as conn:
            assert conn.execute("SELECT count(*) FROM pg_class WHERE relname = 'items_qty'").fetchone() == (0,)


def test_a_copy_whose_schema_differs_is_refused_saying_what_differs(target: tuple[str, str, str]) -> None:
    url, copy, schema = target
    with psycopg.connect(copy, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER TABLE {}.items ADD COLUMN note text").format(sql.Identifier(schema)))
    try:
        with pytest.raises(CopyRefused, match=r"does not hold the target's schema: column .*note text \(only on the copy\)"):
            ep.run_preflight(ep.MigrationPlan.from_sql(_do(schema, "qty + 1")), _db(url), rehearse_on=copy)
    finally:
        with psycopg.connect(copy, autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER TABLE {}.items DROP COLUMN note").format(sql.Identifier(schema)))


def test_a_standby_is_refused_as_a_copy(target: tuple[str, str, str]) -> None:
    url, _, schema = target
    try:
        with standby_of(url) as standby:
            with pytest.raises(CopyRefused, match="is a standby"):
                ep.run_preflight(ep.MigrationPlan.from_sql(_do(schema, "qty + 1")), _db(url), rehearse_on=standby)
    except RuntimeError as exc:  # pragma: no cover
        pytest.skip(f"no standby here: {exc}")


# --- the oracle, on generated rows: a copy in another database of the same server (CREATE DATABASE ... TEMPLATE)

_PLANS = [
    "DO $$ BEGIN UPDATE t SET v = v - 3; END $$;",  # the CHECK decides, row by row
    "DO $$ BEGIN INSERT INTO t SELECT id + 100, v FROM t WHERE v > 2; END $$;",  # the primary key decides
    "CREATE FUNCTION bump() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN NEW.v := NEW.v * 2; RETURN NEW; END $f$;"
    " CREATE TRIGGER t_bump BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION bump(); UPDATE t SET v = v + 1;",
]


def _with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture
def databases(server_url: str) -> Iterator[tuple[str, Any]]:
    name = f"erd_src_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    source = _with_database(server_url, name)
    with psycopg.connect(source, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL CHECK (v >= 0 AND v < 12))")

    def copy() -> str:
        copied = f"erd_cp_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(copied),
                                                                          sql.Identifier(name)))
        made.append(copied)
        return _with_database(server_url, copied)

    made: list[str] = []
    try:
        yield source, copy
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            for dropped in [*made, name]:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dropped)))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.integers(0, 11), max_size=12), plan=st.sampled_from(_PLANS))
def test_a_copys_verdict_agrees_with_postgresql_on_the_target(databases: tuple[str, Any], values: list[int],
                                                             plan: str) -> None:
    source, copy = databases
    with psycopg.connect(source, autocommit=True) as conn:
        conn.execute("TRUNCATE t")
        for i, v in enumerate(values):
            conn.execute("INSERT INTO t VALUES (%s, %s)", (i, v))
    copy_url = copy()  # no session on the source while it is the template
    report = ep.run_preflight(ep.MigrationPlan.from_sql(plan), _db(source), rehearse_on=copy_url)
    refused = _oracle(source, plan)
    assert report.steps_to_acknowledge == [], [c.message for c in report.checks]
    assert (report.status == "blocked") == (refused is not None), (refused, [c.message for c in report.checks])
    if refused is not None:
        assert f"SQLSTATE {refused}" in report.results[0].message
        assert "on the target's own server" in report.results[0].message


def test_the_cli_decides_on_the_copy_and_refuses_the_target_as_its_own_copy(target: tuple[str, str, str],
                                                                          tmp_path: Path) -> None:
    url, copy, schema = target
    plan = tmp_path / "plan.sql"
    plan.write_text(_do(schema, "qty + 1"))
    command = shutil.which("erd-preflight", path=str(Path(sys.executable).parent))
    assert command
    alone = subprocess.run([command, "check", str(plan), "--db", url], capture_output=True, text=True, timeout=300)
    assert alone.returncode == 4, alone.stdout + alone.stderr  # read-only: a person decides the DO block
    decided = subprocess.run([command, "check", str(plan), "--db", url, "--rehearse-on", copy],
                             capture_output=True, text=True, timeout=300)
    assert decided.returncode == 0, decided.stdout + decided.stderr
    assert "preflight CLEAR" in decided.stdout
    refused = subprocess.run([command, "check", str(plan), "--db", url, "--rehearse-on", url],
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "is the target itself" in refused.stdout + refused.stderr, refused


def test_a_statement_over_rehearse_on_timeout_leaves_its_step_for_a_person_saying_so(target: tuple[str, str, str]
                                                                                    ) -> None:
    url, copy, schema = target
    text = f"DO $$ BEGIN PERFORM pg_sleep(2); UPDATE {schema}.items SET qty = qty + 1; END $$;"
    report = ep.run_preflight(ep.MigrationPlan.from_sql(text), _db(url), rehearse_on=copy, rehearse_on_timeout=0.5)
    assert report.status == "clear" and report.steps_to_acknowledge == [1]
    message = next(r.message for r in report.results if r.stats and r.stats.get("acknowledgeStep") == 1)
    assert "longer than rehearse_on_timeout" in message, message
