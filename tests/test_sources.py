"""Plans from where migrations already live: folders of numbered files (with the tools' history tables read
read-only from a real database) and Alembic projects."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import erd_preflight as ep


def write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


FLYWAY_TEN = {f"V{n}__step_{n}.sql": f"ALTER TABLE items ADD COLUMN c{n} int;\n" for n in range(1, 11)}


def test_flyway_folder_of_ten_with_three_in_history_plans_the_seven_pending_in_version_order(
        tmp_path, db, run_sql):
    folder = write(tmp_path / "flyway", {**FLYWAY_TEN, "U3__undo_step_3.sql": "ALTER TABLE items DROP COLUMN c3;"})
    run_sql("""
        CREATE TABLE items (id int);
        CREATE TABLE flyway_schema_history (installed_rank int PRIMARY KEY, version varchar(50),
            description varchar(200), type varchar(20), script varchar(1000), success boolean NOT NULL);
        INSERT INTO flyway_schema_history VALUES
            (1, '1', 'step 1', 'SQL', 'V1__step_1.sql', true),
            (2, '2', 'step 2', 'SQL', 'V2__step_2.sql', true),
            (3, '10', 'step 10', 'SQL', 'V10__step_10.sql', true),
            (4, '3', 'step 3', 'SQL', 'V3__step_3.sql', false);
    """)
    plan = ep.MigrationPlan.from_dir(folder, db=db)
    assert [s.column for s in plan.steps] == ["c3", "c4", "c5", "c6", "c7", "c8", "c9"]
    assert plan.origins == tuple(f"V{n}__step_{n}.sql" for n in range(3, 10))
    assert any("V10__step_10.sql: already applied" in n for n in plan.notes)
    assert any("U3__undo_step_3.sql" in n and "not part of an upgrade" in n for n in plan.notes)
    # without the database, every upgrade file, V3 before V10
    everything = ep.MigrationPlan.from_dir(folder)
    assert [o for o in everything.origins] == [f"V{n}__step_{n}.sql" for n in range(1, 11)]
    # the history table is only read: the preflight of the pending plan is clear and nothing changed
    assert ep.run_preflight(plan, db).status == "clear"
    assert run_sql("SELECT count(*) FROM flyway_schema_history") == [(4,)]


def test_golang_migrate_up_files_after_the_current_version_and_a_dirty_version_is_refused(tmp_path, db, run_sql):
    folder = write(tmp_path / "gm", {
        "000001_create.up.sql": "CREATE TABLE things (id int);",
        "000001_create.down.sql": "DROP TABLE things;",
        "000002_name.up.sql": "ALTER TABLE things ADD COLUMN name text;",
        "000002_name.down.sql": "ALTER TABLE things DROP COLUMN name;",
        "000010_require_name.up.sql": "ALTER TABLE things ALTER COLUMN name SET NOT NULL;",
    })
    run_sql("CREATE TABLE things (id int); CREATE TABLE schema_migrations (version bigint NOT NULL PRIMARY KEY, "
            "dirty boolean NOT NULL); INSERT INTO schema_migrations VALUES (1, false)")
    plan = ep.MigrationPlan.from_dir(folder, db=db)
    assert plan.origins == ("000002_name.up.sql", "000010_require_name.up.sql")
    run_sql("UPDATE schema_migrations SET dirty = true")
    with pytest.raises(ep.PlanError, match="version 1 is dirty"):
        ep.MigrationPlan.from_dir(folder, db=db)


def test_dbmate_reads_the_up_section_only_and_skips_listed_versions(tmp_path, db, run_sql):
    folder = write(tmp_path / "dbmate", {
        "20240101120000_create.sql": "-- migrate:up\nCREATE TABLE notes (id int);\n\n-- migrate:down\nDROP TABLE notes;\n",
        "20240301090000_body.sql": "-- migrate:up\nALTER TABLE notes ADD COLUMN body text;\n-- migrate:down\n"
                                   "ALTER TABLE notes DROP COLUMN body;\n",
        "20240201000000_title.sql": "-- migrate:up\nALTER TABLE notes ADD COLUMN title text;\n-- migrate:down\n"
                                    "ALTER TABLE notes DROP COLUMN title;\n",
    })
    run_sql("CREATE TABLE notes (id int); CREATE TABLE schema_migrations (version varchar(128) PRIMARY KEY); "
            "INSERT INTO schema_migrations VALUES ('20240101120000')")
    plan = ep.MigrationPlan.from_dir(folder, db=db)
    assert plan.origins == ("20240201000000_title.sql", "20240301090000_body.sql")
    assert [s.kind for s in plan.steps] == ["add_column", "add_column"]


def test_goose_reads_the_up_section_only_and_skips_what_its_history_says_is_applied(tmp_path, db, run_sql):
    """Found while checking byte-order marks: a goose file, numbered like any other, was read whole, so its Down
    section (DROP TABLE) was part of the plan, after the Up section it undoes."""
    folder = write(tmp_path / "goose", {
        "00001_create.sql": "-- +goose Up\nCREATE TABLE notes (id int);\n-- +goose Down\nDROP TABLE notes;\n",
        "00002_title.sql": "-- +goose Up\n-- +goose StatementBegin\nALTER TABLE notes ADD COLUMN title text;\n"
                           "-- +goose StatementEnd\n\n-- +goose Down\nALTER TABLE notes DROP COLUMN title;\n",
        "00003_body.sql": "-- +goose Up\nALTER TABLE notes ADD COLUMN body text;\n-- +goose Down\n"
                          "ALTER TABLE notes DROP COLUMN body;\n",
    })
    plan = ep.MigrationPlan.from_dir(folder, history=False)
    assert [s.kind for s in plan.steps] == ["create_table", "add_column", "add_column"], plan.steps
    run_sql("CREATE TABLE notes (id int); CREATE TABLE goose_db_version (id serial PRIMARY KEY, version_id bigint, "
            "is_applied boolean); INSERT INTO goose_db_version (version_id, is_applied) VALUES (0, true), (1, true), "
            "(2, true), (2, false)")  # 2 was applied, then rolled back
    plan = ep.MigrationPlan.from_dir(folder, db=db)
    assert plan.origins == ("00002_title.sql", "00003_body.sql")
    assert "goose_db_version" in plan.record_hint and "(3, true)" in plan.record_hint


def test_a_file_with_a_down_section_and_no_up_marker_is_refused(tmp_path):
    folder = write(tmp_path / "half", {"00001_x.sql": "CREATE TABLE a (id int);\n-- +goose Down\nDROP TABLE a;\n"})
    with pytest.raises(ep.PlanError, match="down section but no up section"):
        ep.MigrationPlan.from_dir(folder, history=False)


def test_a_byte_order_mark_is_read_as_psql_and_flyway_read_it(tmp_path, db):
    """Windows editors start a UTF-8 file with a byte-order mark; PostgreSQL's parser read it as part of the first
    word ("syntax error at or near \ufeffALTER")."""
    bom = "\ufeff"
    assert [s.kind for s in ep.MigrationPlan.from_sql(bom + "ALTER TABLE t ADD COLUMN a int").steps] == ["add_column"]
    flyway, goose = tmp_path / "flyway", tmp_path / "goose"
    flyway.mkdir()
    goose.mkdir()
    (flyway / "V1__a.sql").write_bytes((bom + "ALTER TABLE t ADD COLUMN a int;\n").encode())
    (goose / "00001_b.sql").write_bytes((bom + "-- +goose Up\nALTER TABLE t ADD COLUMN b int;\n-- +goose Down\n"
                                         "ALTER TABLE t DROP COLUMN b;\n").encode())
    assert [s.kind for s in ep.MigrationPlan.from_dir(flyway, history=False).steps] == ["add_column"]
    assert [s.kind for s in ep.MigrationPlan.from_dir(goose, history=False).steps] == ["add_column"]


def test_a_psql_meta_command_is_named_as_one(tmp_path):
    for text, line in [("\\set ON_ERROR_STOP on\nALTER TABLE t ADD COLUMN a int;", 1),
                       ("CREATE TABLE a (id int);\n  \\connect other\n", 2)]:
        with pytest.raises(ep.PlanError, match=r"psql meta-command, not SQL: preflight reads SQL") as caught:
            ep.MigrationPlan.from_sql(text)
        assert caught.value.line == line
    with pytest.raises(ep.PlanError, match="syntax error"):  # a backslash inside a statement is SQL's error
        ep.MigrationPlan.from_sql("SELECT 1 \\ 2")


def test_a_parse_error_in_a_folder_names_the_file_line_and_column(tmp_path):
    folder = write(tmp_path / "bad", {"V1__ok.sql": "ALTER TABLE t ADD COLUMN a int;",
                                      "V2__bad.sql": "\n\nALTER TABLE t ADD COLUMN;\n"})
    with pytest.raises(ep.PlanError, match=r"V2__bad.sql: .*line 3") as caught:
        ep.MigrationPlan.from_dir(folder)
    assert caught.value.__cause__.line == 3


def test_files_without_an_order_and_duplicate_versions_are_refused(tmp_path):
    with pytest.raises(ep.PlanError, match="cannot tell where notes.sql goes"):
        ep.MigrationPlan.from_dir(write(tmp_path / "a", {"V1__x.sql": "SELECT 1;", "notes.sql": "SELECT 2;"}))
    with pytest.raises(ep.PlanError, match="same version 1.1"):
        ep.MigrationPlan.from_dir(write(tmp_path / "b", {"V1.1__x.sql": "SELECT 1;", "V1_1__y.sql": "SELECT 2;"}))


def test_findings_name_the_file_their_step_came_from(tmp_path, db, run_sql: Callable[..., Any]):
    run_sql("CREATE TABLE users (id int, email text); INSERT INTO users VALUES (1, NULL), (2, 'a')")
    folder = write(tmp_path / "m", {"V1__add_name.sql": "ALTER TABLE users ADD COLUMN name text;",
                                    "V2__require_email.sql": "ALTER TABLE users ALTER COLUMN email SET NOT NULL;"})
    report = ep.run_preflight(ep.MigrationPlan.from_dir(folder), db)
    [finding] = report.blockers
    assert "from V2__require_email.sql" in finding.message
    assert [c.step_summary for c in report.checks if c.check_id == "NOT_NULL_PRECHECK"][0].endswith(
        "(from V2__require_email.sql)")


# --- Alembic -----------------------------------------------------------------------------------------------

REVISION = '''"""{doc}"""
import sqlalchemy as sa
from alembic import op

revision = {revision!r}
down_revision = {down!r}
branch_labels = None
depends_on = None


def upgrade():
{body}


def downgrade():
    pass
'''


def alembic_project(folder: Path, url: str, revisions: list[tuple[str, str, str]], scripts: str = "migrations") -> Path:
    """A real Alembic project made by `alembic init` (its scripts in ``scripts``), with ``revisions`` as (id, doc,
    upgrade body)."""
    from alembic import command
    from alembic.config import Config

    folder.mkdir(parents=True, exist_ok=True)
    ini = folder / "alembic.ini"
    config = Config(str(ini))
    command.init(config, str(folder / scripts))
    text = ini.read_text().replace("driver://user:pass@localhost/dbname", url.replace("%", "%%"))
    ini.write_text(text)
    down = None
    for revision, doc, body in revisions:
        (folder / scripts / "versions" / f"{revision}.py").write_text(
            REVISION.format(doc=doc, revision=revision, down=down, body=body))
        down = revision
    return ini


ALEMBIC_REVISIONS = [
    ("a1", "create accounts", "    op.create_table('accounts', sa.Column('id', sa.Integer, primary_key=True),\n"
                              "                    sa.Column('email', sa.Text))"),
    ("b2", "add plan column", "    op.add_column('accounts', sa.Column('plan', sa.Text, server_default='free'))"),
    ("c3", "require email", "    op.alter_column('accounts', 'email', nullable=False)"),
]


def test_alembic_pending_revisions_are_preflighted_without_running_and_the_blocked_one_is_named(
        tmp_path, db, schema, server_url, run_sql):
    url = server_url.replace("postgresql://", "postgresql+psycopg://", 1)
    ini = alembic_project(tmp_path / "proj", url, ALEMBIC_REVISIONS)
    # a1 is applied (the table exists and alembic_version says so), with NULL emails planted
    run_sql("CREATE TABLE accounts (id int PRIMARY KEY, email text); "
            "INSERT INTO accounts SELECT g, CASE WHEN g % 4 = 0 THEN NULL ELSE 'a' || g END FROM generate_series(1, 40) g;"
            "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY); "
            "INSERT INTO alembic_version VALUES ('a1')")
    plan = ep.MigrationPlan.from_alembic(ini, db=db)
    assert [s.kind for s in plan.steps] == ["add_column", "set_not_null"]
    assert plan.origins == ("revision b2 (add plan column)", "revision c3 (require email)")
    assert plan.record_hint == f"alembic -c {ini} stamp c3"  # after an apply: Alembic's own history
    report = ep.run_preflight(plan, db)
    [blocker] = report.blockers
    assert blocker.check_id == "NOT_NULL_PRECHECK" and "from revision c3 (require email)" in blocker.message
    # nothing ran: no plan column, alembic_version untouched
    assert run_sql("SELECT count(*) FROM information_schema.columns WHERE table_schema = current_schema() "
                   "AND table_name = 'accounts' AND column_name = 'plan'") == [(0,)]
    assert run_sql("SELECT version_num FROM alembic_version") == [("a1",)]
    # an explicit range needs no database
    everything = ep.MigrationPlan.from_alembic(ini, "base:head")
    assert [s.kind for s in everything.steps] == ["create_table", "add_column", "set_not_null"]
    assert everything.origins[0] == "revision a1 (create accounts)"


def test_an_alembic_revision_that_reads_the_database_at_upgrade_gets_a_clear_error_naming_it(tmp_path, server_url):
    url = server_url.replace("postgresql://", "postgresql+psycopg://", 1)
    ini = alembic_project(tmp_path / "proj", url, ALEMBIC_REVISIONS[:1] + [
        ("d4", "backfill from data", "    rows = op.get_bind().execute(sa.text('SELECT id FROM accounts')).fetchall()\n"
                                     "    op.execute('SELECT 1')"),
    ])
    with pytest.raises(ep.PlanError, match=r"revision d4 \(backfill from data\) cannot be rendered to SQL offline"):
        ep.MigrationPlan.from_alembic(ini, "base:head")
