"""Remediations lose nothing: every row one deletes, and every row it overwrites as it was, is kept on the run in the
same statement, and ``run.restore(position)`` puts it back. PostgreSQL is the oracle: after remediate then restore,
each table equals its state before, row by row (PostgreSQL's own text of every row, as a multiset), on both
servers. The preview's counts are what the statement then does."""

from __future__ import annotations

from collections import Counter
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import erd_preflight as ep
from erd_preflight.cli import main as cli_main
from tests.oracle import examples

# Values whose text is easy to lose on a round trip: json formatting, arrays, NaN and -0, bytes, time zones, a
# generated column (computed, never inserted) and an identity ALWAYS column (inserted only with OVERRIDING).
TYPES = """
CREATE TABLE parent (
    id int {pk}, email text, doc json, tags int[], score float8, raw bytea, at timestamptz,
    n int GENERATED ALWAYS AS (length(email)) STORED, serial_no int GENERATED ALWAYS AS IDENTITY);
CREATE TABLE child (id int {child_pk}, parent_id int, note text);
INSERT INTO parent (id, email, doc, tags, score, raw, at) VALUES
    (1, 'a@x', '{"b": 1,   "a": [1, 2]}', '{1,NULL,3}', 'NaN', '\\x00ff', '2026-01-01 10:00:00.123456+02'),
    (2, 'a@x', '  {"dup": 1, "dup": 2}', '{}', '-0', NULL, NULL),
    (3, NULL, NULL, NULL, 1e-300, '\\x', '-infinity'),
    (4, 'b@x', '[]', '{{1,2},{3,4}}', 'Infinity', '\\x01', '2026-06-01'),
    DUPLICATE
    (5, NULL, '"s"', '{5}', 0.1, '\\x02', '2026-06-02');
INSERT INTO child VALUES (10, 1, 'ok'), (11, 2, 'dup parent'), (12, 99, 'orphan'), (13, NULL, 'none'),
    (14, 98, 'orphan too'), (15, 98, 'orphan too');
"""

PLANS = {
    "dedupe": "ALTER TABLE parent ADD CONSTRAINT parent_email_key UNIQUE (email)",
    "backfill": "ALTER TABLE parent ALTER COLUMN email SET NOT NULL",
    "delete_orphans": "ALTER TABLE child ADD CONSTRAINT child_parent_fkey FOREIGN KEY (parent_id) REFERENCES parent (id)",
    "null_orphans": "ALTER TABLE child ADD CONSTRAINT child_parent_fkey FOREIGN KEY (parent_id) REFERENCES parent (id)",
}


def types(primary_key: bool, kind: str = "dedupe") -> str:
    """The tables, with a primary key on the table the remediation changes or not (parent: then a row of it twice).
    A foreign key needs its parent's key: the orphan remediations change the child, keyed or not."""
    twice = "(4, 'b@x', '[]', '{{1,2},{3,4}}', 'Infinity', '\\x01', '2026-06-01'),"
    parent_key = primary_key or "orphans" in kind
    return TYPES.replace("{pk}", "PRIMARY KEY" if parent_key else "").replace(
        "DUPLICATE", "" if parent_key else twice).replace("{child_pk}", "PRIMARY KEY" if primary_key else "")


def rows_of(conninfo: str, *tables: str) -> dict[str, Counter[str]]:
    """Each table as PostgreSQL's text of its rows, counted (a table without a key may hold equal rows)."""
    with psycopg.connect(conninfo) as conn:
        return {t: Counter(r[0] for r in conn.execute(f"SELECT x::text FROM {t} AS x")) for t in tables}


def remediation(run: ep.MigrationRun, kind: str) -> ep.Remediation:
    run.preflight(explore=True)
    return next(r for r in run.remediations() if r.kind == kind)


def start(db: ep.Database, plan: str, **options: Any) -> ep.MigrationRun:
    return ep.MigrationRun.start(ep.MigrationPlan.from_sql(plan), db, options=ep.ApplyOptions(**options)) \
        if options else ep.MigrationRun.start(ep.MigrationPlan.from_sql(plan), db)


@pytest.mark.parametrize("primary_key", [True, False], ids=["primary key", "no key"])
@pytest.mark.parametrize("kind", list(PLANS))
def test_each_remediation_then_restore_gives_back_every_row_as_it_was(db, run_sql, conninfo, kind, primary_key):
    run_sql(types(primary_key, kind))
    before = rows_of(conninfo, "parent", "child")
    run = start(db, PLANS[kind])
    chosen = remediation(run, kind)
    preview = run.preview(chosen)
    changed = run.remediate(chosen, **({"value": "filled@x"} if kind == "backfill" else {}))
    assert changed == preview.rows > 0
    assert rows_of(conninfo, "parent", "child") != before
    position = len(run.record.applied_sql) - 1
    entry = run.record.applied_sql[position]
    assert entry.model_extra["kept"] == changed, entry
    assert run.restore(position) == changed
    assert rows_of(conninfo, "parent", "child") == before
    assert run.record.applied_sql[-1].phase == "restore" and run.record.applied_sql[-1].outcome == "applied"
    with pytest.raises(ep.RestoreRefused, match="restored already"):
        run.restore(position)


def test_restore_refuses_when_an_overwritten_row_has_changed_since(db, run_sql, conninfo):
    run_sql(types(True, "null_orphans"))
    run = start(db, PLANS["null_orphans"])
    assert run.remediate(remediation(run, "null_orphans")) == 3
    run_sql("UPDATE child SET note = 'edited by someone' WHERE id = 14")
    now = rows_of(conninfo, "child")
    with pytest.raises(ep.RestoreRefused, match="1 of the 3 rows .* have changed since"):
        run.restore(len(run.record.applied_sql) - 1)
    assert rows_of(conninfo, "child") == now  # nothing put back, not even the two unchanged rows
    assert run.record.applied_sql[-1].outcome == "rolled_back"


def test_restore_refuses_rows_a_constraint_now_forbids(db, run_sql, conninfo):
    run_sql("CREATE TABLE parent (id int PRIMARY KEY, email text); "
            "INSERT INTO parent VALUES (1, 'a'), (2, 'a'), (3, 'b')")
    run = start(db, "ALTER TABLE parent ADD UNIQUE (email)")
    assert run.remediate(remediation(run, "dedupe")) == 1
    run_sql("INSERT INTO parent VALUES (2, 'someone else')")
    now = rows_of(conninfo, "parent")
    with pytest.raises(ep.RestoreRefused, match=r"a constraint now forbids the rows of \S*parent: duplicate key value"):
        run.restore(len(run.record.applied_sql) - 1)
    assert rows_of(conninfo, "parent") == now


def test_the_keep_limit_refuses_and_keep_false_runs_without_keeping(db, run_sql, conninfo):
    run_sql("CREATE TABLE parent (id int, email text); INSERT INTO parent VALUES (1, 'a'), (2, 'a'), (3, 'a')")
    before = rows_of(conninfo, "parent")
    run = start(db, "ALTER TABLE parent ADD UNIQUE (email)", keep_limit_bytes=10)
    dedupe = remediation(run, "dedupe")
    assert not run.preview(dedupe).keeps
    with pytest.raises(ep.KeepTooLarge, match="above keep_limit_bytes .* keep=False"):
        run.remediate(dedupe)
    assert rows_of(conninfo, "parent") == before
    assert run.record.applied_sql[-1].outcome == "rolled_back"
    assert run.remediate(dedupe, keep=False) == 2
    assert run.record.applied_sql[-1].model_extra.get("not_kept") is True
    with pytest.raises(ep.RestoreRefused, match="keep=False"):
        run.restore(len(run.record.applied_sql) - 1)


def test_the_preview_counts_what_the_statement_then_does_with_each_foreign_key(db, run_sql, conninfo):
    run_sql("""
        CREATE TABLE parent (id int PRIMARY KEY, email text);
        INSERT INTO parent SELECT g, 'e' || (g % 4) FROM generate_series(1, 12) g;
        CREATE TABLE gone_too (id int, parent_id int REFERENCES parent ON DELETE CASCADE);
        CREATE TABLE nulled (id int, parent_id int REFERENCES parent ON DELETE SET NULL);
        CREATE TABLE plain (id int, parent_id int);
        INSERT INTO gone_too SELECT g, g FROM generate_series(1, 12) g;
        INSERT INTO nulled SELECT g, 13 - g FROM generate_series(1, 12) g;
        INSERT INTO plain SELECT g, g % 12 + 1 FROM generate_series(1, 24) g;
    """)
    run = start(db, "ALTER TABLE parent ADD UNIQUE (email);\n"
                    "ALTER TABLE plain ADD CONSTRAINT plain_parent_fkey FOREIGN KEY (parent_id) REFERENCES parent (id)")
    dedupe = remediation(run, "dedupe")
    preview = run.preview(dedupe)
    effects = {e.table.split(".")[-1].strip('"'): e for e in preview.references}
    assert (effects["gone_too"].action, effects["nulled"].action, effects["plain"].action) == \
        ("cascade", "set null", "orphan")
    assert effects["plain"].step == 2
    assert "become orphans" in preview.summary() and "step 2" in preview.summary()
    counts = {t: sum(rows_of(conninfo, t)[t].values()) for t in ("gone_too", "plain")}
    with psycopg.connect(conninfo) as conn:
        nulls = conn.execute("SELECT count(*) FROM nulled WHERE parent_id IS NULL").fetchone()[0]
    assert run.remediate(dedupe) == preview.rows == 8
    assert counts["gone_too"] - sum(rows_of(conninfo, "gone_too")["gone_too"].values()) == effects["gone_too"].rows == 8
    with psycopg.connect(conninfo) as conn:
        assert conn.execute("SELECT count(*) FROM nulled WHERE parent_id IS NULL").fetchone()[0] - nulls == \
            effects["nulled"].rows == 8
        assert conn.execute("SELECT count(*) FROM plain WHERE parent_id NOT IN (SELECT id FROM parent)"
                            ).fetchone()[0] == effects["plain"].rows == 16


def test_a_foreign_key_that_forbids_the_delete_is_named_before_and_the_remediation_changes_nothing(
        db, run_sql, conninfo):
    run_sql("CREATE TABLE parent (id int PRIMARY KEY, email text); INSERT INTO parent VALUES (1, 'a'), (2, 'a');"
            "CREATE TABLE held (parent_id int REFERENCES parent); INSERT INTO held VALUES (2)")
    run = start(db, "ALTER TABLE parent ADD UNIQUE (email)")
    dedupe = remediation(run, "dedupe")
    (effect,) = run.preview(dedupe).references
    assert (effect.action, effect.rows) == ("block", 1) and "fails on them" in effect.sentence
    before = rows_of(conninfo, "parent", "held")
    with pytest.raises(ep.RunStateError, match="violates foreign key constraint"):
        run.remediate(dedupe)
    assert rows_of(conninfo, "parent", "held") == before


@pytest.mark.parametrize(("survivor", "kept"), [("first", {1, 4}), ("oldest:joined", {2, 6}),
                                                 ("newest:joined", {3, 5}), ("most_referenced", {3, 6})])
def test_dedupe_keeps_the_row_the_chosen_rule_names(db, run_sql, conninfo, survivor, kept):
    run_sql("CREATE TABLE parent (id int PRIMARY KEY, email text, joined date);"
            "INSERT INTO parent VALUES (1, 'a', '2024-02-01'), (2, 'a', '2024-01-01'), (3, 'a', '2024-03-01'),"
            "(4, 'b', NULL), (5, 'b', '2023-01-01'), (6, 'b', '2022-01-01');"
            "CREATE TABLE child (parent_id int); INSERT INTO child VALUES (3), (3), (1), (6)")
    run = start(db, "ALTER TABLE parent ADD UNIQUE (email);\n"
                    "ALTER TABLE child ADD FOREIGN KEY (parent_id) REFERENCES parent (id)")
    dedupe = remediation(run, "dedupe")
    preview = run.preview(dedupe, survivor=survivor)
    assert {r["id"] for r in preview.sample if r["this row"] == "kept"} == kept
    assert run.remediate(dedupe, survivor=survivor) == 4
    with psycopg.connect(conninfo) as conn:
        assert {r[0] for r in conn.execute("SELECT id FROM parent")} == kept
    with pytest.raises(ValueError, match="has no column 'nope'"):
        run.preview(dedupe, survivor="newest:nope")
    with pytest.raises(ValueError, match="has no column 'nope'"):
        run.remediate(dedupe, survivor="newest:nope")
    assert run.record.applied_sql[-1].outcome == "rolled_back"  # not left "running", as if a crash had cut it


rows = st.lists(st.tuples(st.none() | st.integers(0, 3), st.none() | st.sampled_from(["a", "b", "c"])), max_size=8)


@settings(max_examples=examples(3), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parents=rows, children=rows, kind=st.sampled_from(list(PLANS)), primary_key=st.booleans())
def test_remediate_then_restore_is_the_identity_on_generated_rows(db, run_sql, conninfo, parents, children, kind,
                                                                  primary_key):
    """Equal rows, NULL keys, no key at all: what the remediation removed comes back, and nothing else changes."""
    referenced = "REFERENCES" in PLANS[kind] or primary_key  # a foreign key needs a unique parent key
    run_sql("DROP TABLE IF EXISTS parent, child; CREATE TABLE parent (id int {}, email text);"
            "CREATE TABLE child (id int, parent_id int, note text)".format("PRIMARY KEY" if referenced else ""))
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for number, (ident, email) in enumerate(parents):
            conn.execute("INSERT INTO parent VALUES (%s, %s)", (number if referenced else ident, email))
        for ident, note in children:
            conn.execute("INSERT INTO child VALUES (%s, %s, %s)", (len(note or ""), ident, note))
    before = rows_of(conninfo, "parent", "child")
    run = start(db, PLANS[kind])
    run.preflight(explore=True)
    found = [r for r in run.remediations() if r.kind == kind]
    if not found:
        return  # nothing to remediate: the rows already satisfy the plan
    preview = run.preview(found[0])
    changed = run.remediate(found[0], **({"value": "filled"} if kind == "backfill" else {}))
    assert changed == preview.rows
    if changed:
        assert run.restore(len(run.record.applied_sql) - 1) == changed
    assert rows_of(conninfo, "parent", "child") == before


def test_the_cli_previews_a_remediation_runs_it_and_restores_it(db, run_sql, conninfo, server_url, schema, capsys):
    from urllib.parse import quote

    run_sql("CREATE TABLE parent (id int PRIMARY KEY, email text); INSERT INTO parent VALUES (1, 'a'), (2, 'a');"
            "CREATE TABLE child (parent_id int); INSERT INTO child VALUES (2), (2)")
    before = rows_of(conninfo, "parent", "child")
    run = start(db, "ALTER TABLE parent ADD UNIQUE (email);\n"
                    "ALTER TABLE child ADD FOREIGN KEY (parent_id) REFERENCES parent (id)")
    finding = remediation(run, "dedupe").finding
    url = f"{server_url}{'&' if '?' in server_url else '?'}options={quote(f'-c search_path={schema}')}"
    assert cli_main(["remediate", str(run.id), str(finding), "dedupe", "--db", url]) == 2  # stdin is no terminal
    assert "confirm with --yes" in capsys.readouterr().err
    assert rows_of(conninfo, "parent", "child") == before
    assert cli_main(["remediate", str(run.id), str(finding), "dedupe", "--survivor", "most_referenced", "--yes",
                     "--db", url]) == 0
    out = capsys.readouterr().out
    assert "dedupe deletes 1 rows of" in out and "keeping one row of each group: the one the most rows" in out
    assert "2 rows of" not in out  # the kept row is the referenced one: no orders orphaned
    position = len(run.refresh().applied_sql) - 1
    assert f"erd-preflight restore {run.id} {position} puts them back" in out
    assert cli_main(["restore", str(run.id), str(position), "--db", url]) == 0
    assert "put back 1 row." in capsys.readouterr().out
    assert rows_of(conninfo, "parent", "child") == before
    assert cli_main(["restore", str(run.id), str(position), "--db", url]) == 2
    assert "restored already" in capsys.readouterr().err


def test_a_store_of_version_1_gains_the_kept_rows_table(db, run_sql):
    """A store made by an earlier release (version 1: migration_run only) is brought up to date when a run starts."""
    from erd_preflight.run import store as store_module

    ep.MigrationRun.start(ep.MigrationPlan.from_sql("SELECT 1"), db, store_schema="erd_keep_v1")
    try:
        run_sql("DROP TABLE erd_keep_v1.remediation_rows; COMMENT ON TABLE erd_keep_v1.migration_run IS "
                "'erd_preflight migration runs: plans, preflight reports, gate decisions, applied SQL. store version 1'")
        store_module._ensured.clear()
        ep.MigrationRun.start(ep.MigrationPlan.from_sql("SELECT 1"), db, store_schema="erd_keep_v1")
        assert run_sql("SELECT to_regclass('erd_keep_v1.remediation_rows') IS NOT NULL, "
                       "obj_description('erd_keep_v1.migration_run'::regclass)")[0] == \
            (True, store_module._COMMENT.format(store_module.STORE_VERSION))
    finally:
        run_sql("DROP SCHEMA erd_keep_v1 CASCADE")
        store_module._ensured.clear()


def test_rows_a_foreign_keys_action_deletes_or_overwrites_are_kept_and_restored_too(db, run_sql, conninfo):
    """ON DELETE CASCADE two tables deep, SET NULL, a table that references itself, a row two keys reach: the
    dedupe deletes parents, PostgreSQL deletes and overwrites rows of four other tables, and restore gives back
    every one of them as it was."""
    run_sql("""
        CREATE TABLE parent (id int PRIMARY KEY, email text);
        INSERT INTO parent SELECT g, 'e' || (g % 3) FROM generate_series(1, 9) g;
        CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent ON DELETE CASCADE,
                            other_id int REFERENCES parent ON DELETE CASCADE);
        INSERT INTO child SELECT g, g % 9 + 1, (g + 4) % 9 + 1 FROM generate_series(1, 18) g;
        CREATE TABLE grandchild (child_id int REFERENCES child ON DELETE CASCADE, note text);
        INSERT INTO grandchild SELECT g % 18 + 1, 'n' || g FROM generate_series(1, 36) g;
        CREATE TABLE nulled (parent_id int REFERENCES parent ON DELETE SET NULL, tag text);
        INSERT INTO nulled SELECT g % 9 + 1, 't' || g FROM generate_series(1, 9) g;
        CREATE TABLE tree (id int PRIMARY KEY, up int REFERENCES tree ON DELETE CASCADE, parent_id int
                           REFERENCES parent ON DELETE CASCADE);
        INSERT INTO tree VALUES (1, NULL, 4), (2, 1, NULL), (3, 2, NULL), (4, NULL, 1);
    """)
    tables = ("parent", "child", "grandchild", "nulled", "tree")
    before = rows_of(conninfo, *tables)
    run = start(db, "ALTER TABLE parent ADD UNIQUE (email)")
    dedupe = remediation(run, "dedupe")
    preview = run.preview(dedupe)
    assert preview.keeps and any(e.depth == 2 and "grandchild" in e.table for e in preview.references)
    assert run.remediate(dedupe) == 6
    after = rows_of(conninfo, *tables)
    assert all(after[t] != before[t] for t in tables), "every table lost or changed rows"
    entry = run.record.applied_sql[-1]
    lost = sum((before[t] - after[t]).total() for t in tables if t != "parent")
    assert entry.model_extra["kept_reached"] == lost
    assert run.restore(len(run.record.applied_sql) - 1) == 6 + lost
    assert rows_of(conninfo, *tables) == before


def test_a_set_default_action_the_run_cannot_keep_refuses_unless_told_not_to_keep(db, run_sql, conninfo):
    run_sql("CREATE TABLE parent (id int PRIMARY KEY, email text); INSERT INTO parent VALUES (0, 'z'), (1, 'a'), "
            "(2, 'a'); CREATE TABLE child (parent_id int DEFAULT 0 REFERENCES parent ON DELETE SET DEFAULT);"
            "INSERT INTO child VALUES (2)")
    before = rows_of(conninfo, "parent", "child")
    run = start(db, "ALTER TABLE parent ADD UNIQUE (email)")
    dedupe = remediation(run, "dedupe")
    assert not run.preview(dedupe).keeps and "SET DEFAULT" in run.preview(dedupe).summary()
    with pytest.raises(ep.KeepRefused, match="ON DELETE SET DEFAULT.*keep=False"):
        run.remediate(dedupe)
    assert rows_of(conninfo, "parent", "child") == before
    assert run.remediate(dedupe, keep=False) == 1


def test_a_survivor_rule_for_a_remediation_that_is_no_dedupe_is_refused_not_ignored(db, run_sql):
    run_sql(types(True, "null_orphans"))
    run = start(db, PLANS["null_orphans"])
    orphans = remediation(run, "null_orphans")
    for call in (run.preview, run.remediate):
        with pytest.raises(ValueError, match="'null_orphans' is not a dedupe"):
            call(orphans, survivor="most_referenced")


def test_a_trigger_on_the_remediated_rows_is_named_before_and_recorded_as_not_kept(db, run_sql, conninfo):
    """What a trigger changes elsewhere is outside what the run keeps: the preview says so, and the record too."""
    run_sql("CREATE TABLE parent (id int PRIMARY KEY, email text); INSERT INTO parent VALUES (1, 'a'), (2, 'a');"
            "CREATE TABLE audit (gone int);"
            "CREATE FUNCTION note_gone() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN INSERT INTO audit VALUES (OLD.id); RETURN OLD; END $$;"
            "CREATE TRIGGER parent_audit AFTER DELETE ON parent FOR EACH ROW EXECUTE FUNCTION note_gone()")
    run = start(db, "ALTER TABLE parent ADD UNIQUE (email)")
    dedupe = remediation(run, "dedupe")
    assert "trigger parent_audit of" in run.preview(dedupe).summary()
    assert "what they change elsewhere is not kept" in run.preview(dedupe).summary()
    assert run.remediate(dedupe) == 1
    assert run.record.applied_sql[-1].model_extra["triggers_not_kept"] == ["trigger parent_audit"]
