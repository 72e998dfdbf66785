"""The erd-preflight command, run as a subprocess against a real PostgreSQL, over each exit code."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import psycopg
import pytest

import erd_preflight as ep

MIGRATION = """
ALTER TABLE users ALTER COLUMN email SET NOT NULL;
CREATE INDEX CONCURRENTLY users_email_idx ON users (email);
"""


@pytest.fixture
def conninfo(server_url: str, schema: str) -> str:
    """A URL (what the CLI takes) whose search_path is the test schema."""
    from urllib.parse import quote

    return f"{server_url}{'&' if '?' in server_url else '?'}options={quote(f'-c search_path={schema}')}"


@pytest.fixture
def users(run_sql: Callable[..., Any]) -> None:
    run_sql("CREATE TABLE users (id int PRIMARY KEY, email text); "
            "INSERT INTO users SELECT g, CASE WHEN g % 5 = 0 THEN NULL ELSE 'u' || g END FROM generate_series(1, 50) g")


def cli(*args: str, url: str | None = None, env: dict[str, str] | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    command = shutil.which("erd-preflight", path=str(Path(sys.executable).parent))
    assert command, "the erd-preflight console script is not installed next to this Python"
    environment = {k: v for k, v in os.environ.items() if k not in ("ERD_PREFLIGHT_URL", "DATABASE_URL")}
    environment.update(env or {})
    argv = [command, *args] + (["--db", url] if url else [])
    return subprocess.run(argv, capture_output=True, text=True, timeout=180, env=environment, cwd=cwd)


def test_check_clear_exits_0_and_blocked_exits_1_with_a_readable_report(tmp_path, conninfo, users, run_sql):
    plan = tmp_path / "0007_users.sql"
    plan.write_text(MIGRATION)
    blocked = cli("check", str(plan), url=conninfo)
    assert blocked.returncode == 1, blocked.stderr
    assert "preflight BLOCKED" in blocked.stdout
    assert "[FAIL] step 1 from 0007_users.sql NOT_NULL_PRECHECK" in blocked.stdout
    assert "  NOT_NULL_PRECHECK: 10 violating rows; the first 3 shown:\n    id email\n     5  NULL\n" in blocked.stdout
    assert ("[skip] step 2 from 0007_users.sql LARGE_TABLE_WARNING" not in blocked.stdout
            or "--explore runs every check" in blocked.stdout)
    assert "Traceback" not in blocked.stderr
    run_sql("UPDATE users SET email = 'x' || id WHERE email IS NULL")
    clear = cli("check", str(plan), url=conninfo)
    assert clear.returncode == 0, clear.stdout + clear.stderr
    assert "preflight CLEAR" in clear.stdout and "[ok  ] step 1 from 0007_users.sql NOT_NULL_PRECHECK" in clear.stdout


def test_check_of_a_plan_with_a_step_left_for_a_person_says_so_and_exits_4(tmp_path, conninfo, users):
    """"preflight CLEAR" with exit 0 read as all clear in CI, where only apply then refused: the headline names the
    step, and the exit code is one of its own that a CI job can fail on."""
    plan = tmp_path / "0008_backfill.sql"
    plan.write_text("DO $$ BEGIN UPDATE users SET email = lower(email); END $$;\n")
    result = cli("check", str(plan), url=conninfo)
    assert result.returncode == 4, result.stdout + result.stderr
    assert "preflight CLEAR, but step 1 needs your acknowledgement before apply" in result.stdout
    refused = cli("apply", str(plan), url=conninfo)
    assert refused.returncode == 1 and "ACKNOWLEDGEMENT_REQUIRED" in refused.stdout + refused.stderr
    assert "4 clear but a step needs your acknowledgement before apply" in " ".join(cli("--help").stdout.split())


def test_check_json_prints_exactly_the_contract_json_valid_against_the_schema(tmp_path, conninfo, users):
    plan = tmp_path / "0007_users.sql"
    plan.write_text(MIGRATION)
    result = cli("check", str(plan), "--json", "--explore", url=conninfo)
    assert result.returncode == 1
    document = json.loads(result.stdout)
    jsonschema.validate(document, ep.report_json_schema())
    assert document["status"] == "blocked" and document["results"][0]["checkId"] == "NOT_NULL_PRECHECK"
    assert set(document) >= {"status", "results", "createdAt"}
    assert ep.PreflightReport.model_validate(document).contract_json() == result.stdout.strip()


def test_the_url_comes_from_erd_preflight_url_then_database_url(tmp_path, conninfo, users):
    plan = tmp_path / "p.sql"
    plan.write_text("ALTER TABLE users ADD COLUMN note text;")
    assert cli("check", str(plan), env={"ERD_PREFLIGHT_URL": conninfo}).returncode == 0
    assert cli("check", str(plan), env={"DATABASE_URL": conninfo}).returncode == 0
    nowhere = "postgresql://nobody@127.0.0.1:1/nothing"
    assert cli("check", str(plan), env={"ERD_PREFLIGHT_URL": conninfo, "DATABASE_URL": nowhere}).returncode == 0


def test_usage_and_connection_errors_exit_2_in_two_lines_without_a_traceback(tmp_path, conninfo, users):
    plan = tmp_path / "p.sql"
    plan.write_text("ALTER TABLE users ADD COLUMN note text;")
    no_db = cli("check", str(plan))
    assert no_db.returncode == 2 and "no database: pass --db" in no_db.stderr
    down = cli("check", str(plan), url="postgresql://nobody@127.0.0.1:1/nothing")
    assert down.returncode == 2 and "cannot connect" in down.stderr
    assert len(down.stderr.strip().splitlines()) <= 2 and "Traceback" not in down.stderr
    bad = tmp_path / "bad.sql"
    bad.write_text("ALTER TABLE users ADD COLUMN;")
    parse = cli("check", str(bad), url=conninfo)
    assert parse.returncode == 2 and "line 1" in parse.stderr and "Traceback" not in parse.stderr
    missing = cli("check", str(tmp_path / "nope.sql"), url=conninfo)
    assert missing.returncode == 2 and f"no such file: {tmp_path / 'nope.sql'}" in missing.stderr
    assert cli("frobnicate").returncode == 2
    debug = cli("check", str(plan), "--debug", url="postgresql://nobody@127.0.0.1:1/nothing")
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_apply_refused_exits_1_applied_exits_0_and_runs_lists_the_record(tmp_path, conninfo, store, users, run_sql):
    plan = tmp_path / "0007_users.sql"
    plan.write_text(MIGRATION)
    refused = cli("apply", str(plan), "--store-schema", store, url=conninfo)
    assert refused.returncode == 1, refused.stderr
    assert "Apply refused" in refused.stdout and "BLOCKED: NOT_NULL_PRECHECK" in refused.stdout
    assert run_sql("SELECT attnotnull FROM pg_attribute WHERE attrelid = 'users'::regclass "
                   "AND attname = 'email'") == [(False,)]
    run_sql("UPDATE users SET email = 'x' || id WHERE email IS NULL")
    applied = cli("apply", str(plan), "--store-schema", store, url=conninfo)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert 'phase A step 1 [ran] ALTER TABLE "users" ALTER COLUMN "email" SET NOT NULL\n' in applied.stdout
    assert ('phase B step 2 [applied] CREATE INDEX CONCURRENTLY "users_email_idx" ON "users" ("email")\n'
            in applied.stdout), "each statement whole, never cut"
    assert "phase A: one transaction; its statements are applied when it commits" in applied.stdout
    assert "phase A committed: 1 statement applied" in applied.stdout
    assert "phase A step 1 [applied]" not in applied.stdout, "each statement is printed once"
    assert applied.stdout.strip().endswith("applied")
    listed = cli("runs", "--store-schema", store, url=conninfo)
    assert listed.returncode == 0
    lines = listed.stdout.splitlines()
    assert any("applied" in line and "0007_users.sql" in line for line in lines)
    assert any("blocked" in line for line in lines)
    assert "None" not in listed.stdout and "error" not in lines[0], "no error column when no run failed"


def test_apply_that_fails_exits_3_and_names_the_record(tmp_path, conninfo, store, users, run_sql):
    # A row that violates the plan arrives after the preflight, between check and apply: a trigger plants it
    # as the apply's own first statement runs, so PostgreSQL refuses the constraint in phase A.
    plan = tmp_path / "0008.sql"
    plan.write_text("ALTER TABLE users ADD COLUMN note text NOT NULL DEFAULT '';\n"
                    "ALTER TABLE users ADD CONSTRAINT users_id_small CHECK (id < 100);")
    run_sql("""
        CREATE FUNCTION plant() RETURNS event_trigger LANGUAGE plpgsql AS $$
        BEGIN INSERT INTO users VALUES (1000, 'late'); END $$;
        CREATE EVENT TRIGGER plant_row ON ddl_command_end WHEN TAG IN ('ALTER TABLE') EXECUTE FUNCTION plant();
    """)
    try:
        # The event trigger runs in the rehearsal too, and its row makes step 2 depend on rows: a person's call.
        failed = cli("apply", str(plan), "--store-schema", store, "--acknowledge", "2", url=conninfo)
    finally:
        run_sql("DROP EVENT TRIGGER IF EXISTS plant_row")
    assert failed.returncode == 3, failed.stdout + failed.stderr
    assert "Traceback" not in failed.stderr and "erd-preflight runs" in failed.stderr
    with psycopg.connect(conninfo) as conn:
        status = conn.execute(f'SELECT status FROM "{store}".migration_run ORDER BY id DESC LIMIT 1').fetchone()
    assert status == ("failed",)
    assert run_sql("SELECT count(*) FROM users WHERE id = 1000") == [(0,)]  # phase A rolled back whole


def test_check_reads_a_folder_and_an_alembic_project(tmp_path, conninfo, server_url, users, run_sql):
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "V1__note.sql").write_text("ALTER TABLE users ADD COLUMN note text;")
    (folder / "V2__require_email.sql").write_text("ALTER TABLE users ALTER COLUMN email SET NOT NULL;")
    result = cli("check", str(folder), url=conninfo)
    assert result.returncode == 1 and "from V2__require_email.sql" in result.stdout

    from test_sources import ALEMBIC_REVISIONS, alembic_project

    ini = alembic_project(tmp_path / "alembic", server_url.replace("postgresql://", "postgresql+psycopg://", 1),
                          ALEMBIC_REVISIONS)
    run_sql("CREATE TABLE accounts (id int PRIMARY KEY, email text); INSERT INTO accounts VALUES (1, NULL);"
            "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY); INSERT INTO alembic_version "
            "VALUES ('b2')")
    result = cli("check", f"alembic:{ini}", url=conninfo)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "from revision c3 (require email)" in result.stdout


def readme_block(marker: str) -> str:
    """The code block after ``<!-- marker -->`` in the README or a page of docs/."""
    root = Path(__file__).resolve().parents[1]
    text = next(t for t in (p.read_text() for p in [root / "README.md", *sorted((root / "docs").glob("*.md"))])
                if f"<!-- {marker} -->" in t)
    after = text.split(f"<!-- {marker} -->", 1)[1]
    return after.split("```", 2)[1].split("\n", 1)[1]


def test_the_readme_ci_snippet_is_valid_workflow_yaml_and_its_check_commands_run(tmp_path, conninfo, users):
    import yaml

    workflow = yaml.safe_load(readme_block("ci-example"))
    job = workflow["jobs"]["preflight"]
    assert "postgres" in job["services"] and job["env"]["DATABASE_URL"].startswith("postgresql://")
    commands = [step["run"] for step in job["steps"] if "erd-preflight" in step.get("run", "")]
    assert commands and any("pip install" in step.get("run", "") for step in job["steps"])
    (tmp_path / "migrations").mkdir()
    (tmp_path / "migrations" / "V1__require_email.sql").write_text(MIGRATION)
    bin_dir = str(Path(sys.executable).parent)
    for command in commands:
        result = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=180,
                                env={**os.environ, "DATABASE_URL": conninfo, "PATH": f"{bin_dir}:{os.environ['PATH']}"})
        assert result.returncode == 1, f"{command}: {result.stderr}"  # the planted NULLs block it
    ep.PreflightReport.model_validate_json((tmp_path / "preflight.json").read_text())


def test_the_readme_alembic_example_runs_and_names_the_blocking_revision(tmp_path, conninfo, server_url, run_sql):
    from test_sources import ALEMBIC_REVISIONS, alembic_project

    alembic_project(tmp_path, server_url.replace("postgresql://", "postgresql+psycopg://", 1), ALEMBIC_REVISIONS)
    run_sql("CREATE TABLE accounts (id int PRIMARY KEY, email text); INSERT INTO accounts VALUES (1, NULL);"
            "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY); INSERT INTO alembic_version "
            "VALUES ('a1')")
    command = readme_block("alembic-example").strip().splitlines()[0]
    bin_dir = str(Path(sys.executable).parent)
    result = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=180,
                            env={**os.environ, "DATABASE_URL": conninfo, "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    assert result.returncode == 1, result.stderr
    assert "from revision c3 (require email)" in result.stdout


# --- the CLI's words, exactly -----------------------------------------------------------------------------


def test_a_check_not_run_names_the_cli_flag_not_the_python_argument(tmp_path, conninfo, users, run_sql):
    run_sql("CREATE UNIQUE INDEX users_email_key ON users (email)")
    plan = tmp_path / "p.sql"
    plan.write_text("ALTER TABLE users ALTER COLUMN email SET NOT NULL;\nALTER TABLE users ADD CHECK (id > 0);")
    result = cli("check", str(plan), url=conninfo)
    assert result.returncode == 1
    assert ("[skip] step 2 from p.sql CHECK_CONSTRAINT_PRECHECK: not run: preflight stopped at the first blocking "
            "result (step 1); --explore runs every check") in result.stdout
    assert "explore=True" not in result.stdout


def test_a_duplicate_sample_counts_groups_and_rows_apart_and_one_value_is_singular(tmp_path, conninfo, run_sql):
    run_sql("CREATE TABLE people (id int, email text); "
            "INSERT INTO people VALUES (1, 'a@x'), (2, 'a@x'), (3, 'b@x')")
    plan = tmp_path / "p.sql"
    plan.write_text("ALTER TABLE people ADD CONSTRAINT people_email_key UNIQUE (email);")
    result = cli("check", str(plan), url=conninfo)
    assert result.returncode == 1
    assert "p.sql: 1 step · preflight BLOCKED · 1 of 1 check ran · 1 blocking · 0 warnings" in result.stdout
    assert "1 value of (email) occurs more than once in " in result.stdout and "people, in 2 rows" in result.stdout
    assert "UNIQUE_PRECHECK: 1 duplicate group (2 rows in it); all shown:" in result.stdout
    run_sql("INSERT INTO people VALUES (4, 'b@x'), (5, 'c@x'), (6, 'c@x'), (7, 'c@x')")
    again = cli("check", str(plan), url=conninfo)
    assert "3 values of (email) occur more than once in " in again.stdout and "people, in 7 rows" in again.stdout
    assert "UNIQUE_PRECHECK: 3 duplicate groups (7 rows in them); all shown:" in again.stdout


def test_a_missing_plan_and_an_unreachable_server_are_one_clear_line_each(tmp_path, conninfo):
    missing = cli("check", "nope.sql", url=conninfo, cwd=tmp_path)
    assert missing.returncode == 2 and missing.stderr == "erd-preflight: no such file: nope.sql\n"
    plan = tmp_path / "p.sql"
    plan.write_text("SELECT 1;")
    down = cli("check", str(plan), url="postgresql://nobody@127.0.0.1:1/nothing")
    first = down.stderr.splitlines()[0]
    assert first.startswith("erd-preflight: cannot connect to postgresql://nobody@127.0.0.1:1/nothing: ")
    assert first.endswith(" Check the URL and that the server accepts connections.")
    assert "?." not in first and ".." not in first
    # without a database either, the missing file is what is said first: it is the first thing to fix
    missing = cli("check", "nope.sql", cwd=tmp_path)
    assert missing.returncode == 2 and missing.stderr == "erd-preflight: no such file: nope.sql\n"
    missing = cli("check", "prisma:gone", cwd=tmp_path)
    assert missing.returncode == 2 and missing.stderr == "erd-preflight: no such file or folder: gone\n"


def test_help_reads_as_plain_text_and_a_bom_file_is_read_as_psql_reads_it(tmp_path, conninfo):
    shown = cli("--help")
    assert shown.returncode == 0 and "``" not in shown.stdout and "erd-preflight: the same preflight" in shown.stdout
    plan = tmp_path / "0001_windows.sql"
    plan.write_bytes("\ufeffCREATE TABLE windows_saved (id int);\n".encode())
    clear = cli("check", str(plan), url=conninfo)
    assert clear.returncode == 0, clear.stderr
    plan.write_text("\\set ON_ERROR_STOP on\nCREATE TABLE windows_saved (id int);\n")
    meta = cli("check", str(plan), url=conninfo)
    assert meta.returncode == 2 and '"\\set" at line 1 is a psql meta-command' in meta.stderr, meta.stderr



def test_the_cli_asks_for_a_confirmation_in_its_own_flags_not_the_apis_arguments():
    from erd_preflight.cli import _in_cli_words

    said = _in_cli_words("step 1 builds an index on large table barlock.t (~2,000,000 rows) without CONCURRENTLY, "
                         "blocking writes for the whole build: confirm with "
                         "apply(confirm_large_non_concurrent=['barlock.t']) or build it CONCURRENTLY.")
    assert "--confirm-large barlock.t" in said and "apply(" not in said
    said = _in_cli_words("Review the step, then acknowledge it: apply(acknowledge=[3]), or --acknowledge 3 in the CLI.")
    assert said.endswith("acknowledge it: --acknowledge 3.")
