"""The migration folders of Prisma, Diesel, Atlas, Liquibase and Django: each read in its tool's own order, minus
what its history table (on a real server) marks as applied, its transaction directives honoured by the phases,
the CLI accepting it (auto-detected, and as TOOL:PATH), and the command that records an apply in its history."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest

import erd_preflight as ep
from erd_preflight.plan.phases import compile_phases


def cli(*args: str, url: str, cwd: Path | None = None, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    command = shutil.which("erd-preflight", path=str(Path(sys.executable).parent))
    assert command
    environment = {k: v for k, v in os.environ.items() if k not in ("ERD_PREFLIGHT_URL", "DATABASE_URL")}
    environment.update(env or {})
    return subprocess.run([command, *args, "--db", url], capture_output=True, text=True, timeout=300, cwd=cwd,
                          env=environment)


@pytest.fixture
def url(server_url: str, schema: str) -> str:
    return f"{server_url}{'&' if '?' in server_url else '?'}options={quote(f'-c search_path={schema}')}"


@pytest.fixture
def customers(run_sql) -> None:
    """A table as the first migration of each project made it, with two rows of NULL email."""
    run_sql("CREATE TABLE customer (id bigint PRIMARY KEY, email text, region text)")
    run_sql("INSERT INTO customer SELECT g, CASE WHEN g % 5 = 0 THEN NULL ELSE 'c' || g || '@x' END, 'eu' "
            "FROM generate_series(1, 10) g")


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    return root


def steps_of(plan: ep.MigrationPlan) -> list[tuple[str | None, str]]:
    return [(plan.origin_of(i), step.kind) for i, step in enumerate(plan.steps, start=1)]


def phase_by_step(plan: ep.MigrationPlan) -> dict[int, str]:
    return {s.step: s.phase for s in compile_phases(plan).statements}


# --- Prisma ---------------------------------------------------------------------------------------------


def prisma_project(root: Path) -> Path:
    return write(root, {
        "prisma/schema.prisma": 'datasource db {\n  provider = "postgresql"\n  url = env("DATABASE_URL")\n}\n',
        "prisma/migrations/migration_lock.toml": 'provider = "postgresql"\n',
        "prisma/migrations/20240101000000_init/migration.sql": """
            -- CreateTable
            CREATE TABLE "customer" ("id" BIGINT NOT NULL, "email" TEXT, "region" TEXT,
                CONSTRAINT "customer_pkey" PRIMARY KEY ("id"));
        """,
        "prisma/migrations/20240215093000_add_orders/migration.sql": """
            -- CreateTable
            CREATE TABLE "order" ("id" SERIAL NOT NULL, "customer_id" BIGINT NOT NULL,
                CONSTRAINT "order_pkey" PRIMARY KEY ("id"));
        """,
        "prisma/migrations/20240301120000_require_email/migration.sql": """
            -- AlterTable
            ALTER TABLE "customer" ALTER COLUMN "email" SET NOT NULL;
        """,
        "prisma/migrations/20240302120000_unique_email/migration.sql": """
            -- CreateIndex
            CREATE UNIQUE INDEX "customer_email_key" ON "customer"("email");
        """,
    })


PRISMA_HISTORY = """
CREATE TABLE _prisma_migrations (id varchar(36) PRIMARY KEY, checksum varchar(64) NOT NULL,
    finished_at timestamptz, migration_name varchar(255) NOT NULL, logs text, rolled_back_at timestamptz,
    started_at timestamptz NOT NULL DEFAULT now(), applied_steps_count int NOT NULL DEFAULT 0);
INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name, rolled_back_at, applied_steps_count) VALUES
  ('a', 'x', now(), '20240101000000_init', NULL, 1),
  ('b', 'x', NULL, '20240215093000_add_orders', now(), 0),
  ('c', 'x', now(), '20240215093000_add_orders', NULL, 1);
"""


def test_prisma_reads_folders_in_name_order_and_skips_what_finished_and_was_not_rolled_back(
        tmp_path, db, run_sql, customers, url):
    project = prisma_project(tmp_path / "shop")
    run_sql(PRISMA_HISTORY)
    plan = ep.MigrationPlan.from_dir(project, db=db)
    assert steps_of(plan) == [("20240301120000_require_email/migration.sql", "set_not_null"),
                              ("20240302120000_unique_email/migration.sql", "create_index")]
    assert any("(prisma): 2 applied migration(s)" in n for n in plan.notes)
    assert plan.record_hint == ("npx prisma migrate resolve --applied 20240301120000_require_email\n"
                                "npx prisma migrate resolve --applied 20240302120000_unique_email")
    report = ep.run_preflight(plan, db)
    assert report.status == "blocked" and "from 20240301120000_require_email/migration.sql" in \
        report.results[0].message
    result = cli("check", f"prisma:{project}", url=url)
    assert result.returncode == 1 and "from 20240301120000_require_email/migration.sql" in result.stdout, result.stderr
    assert cli("check", str(project / "prisma" / "migrations"), url=url).returncode == 1  # auto-detected


def test_prisma_refuses_a_migration_that_started_and_did_not_finish(tmp_path, db, run_sql):
    project = prisma_project(tmp_path / "shop")
    run_sql(PRISMA_HISTORY)
    run_sql("INSERT INTO _prisma_migrations (id, checksum, migration_name) VALUES ('d', 'x', "
            "'20240301120000_require_email')")
    with pytest.raises(ep.PlanError, match=r"started and did not finish.*prisma migrate resolve --rolled-back "
                                           r"20240301120000_require_email"):
        ep.MigrationPlan.from_tool("prisma", project, db=db)


# --- Diesel ---------------------------------------------------------------------------------------------


def diesel_project(root: Path) -> Path:
    return write(root, {
        "diesel.toml": "[print_schema]\nfile = \"src/schema.rs\"\n",
        "migrations/00000000000000_diesel_initial_setup/up.sql": """
            CREATE OR REPLACE FUNCTION diesel_manage_updated_at(_tbl regclass) RETURNS VOID AS $$
            BEGIN
                EXECUTE format('CREATE TRIGGER set_updated_at BEFORE UPDATE ON %s
                                FOR EACH ROW EXECUTE PROCEDURE diesel_set_updated_at()', _tbl);
            END;
            $$ LANGUAGE plpgsql;
        """,
        "migrations/00000000000000_diesel_initial_setup/down.sql": "DROP FUNCTION diesel_manage_updated_at;\n",
        "migrations/2024-01-01-000000_create_customer/up.sql": "CREATE TABLE customer (id bigint PRIMARY KEY);\n",
        "migrations/2024-01-01-000000_create_customer/down.sql": "DROP TABLE customer;\n",
        "migrations/2024-03-01-120000_region_index/up.sql":
            "CREATE INDEX CONCURRENTLY customer_region_idx ON customer (region);\n",
        "migrations/2024-03-01-120000_region_index/metadata.toml": "run_in_transaction = false\n",
        "migrations/2024-03-01-120000_region_index/down.sql": "DROP INDEX customer_region_idx;\n",
        "migrations/2024-02-10-083000_require_region/up.sql": """
            ALTER TABLE customer ALTER COLUMN region SET NOT NULL;
            ALTER TABLE customer ADD CONSTRAINT customer_region_known CHECK (region IN ('eu', 'us'));
        """,
        "migrations/2024-02-10-083000_require_region/down.sql": "ALTER TABLE customer DROP CONSTRAINT x;\n",
        "migrations/2024-04-01-000000_vacuum/up.sql": "ANALYZE customer;\n",
        "migrations/2024-04-01-000000_vacuum/metadata.toml": "run_in_transaction = false\n",
    })


def test_diesel_orders_by_version_skips_applied_versions_and_honours_run_in_transaction_false(
        tmp_path, db, run_sql, customers, url):
    project = diesel_project(tmp_path / "api")
    run_sql("CREATE TABLE __diesel_schema_migrations (version varchar(50) PRIMARY KEY, "
            "run_on timestamp NOT NULL DEFAULT now()); INSERT INTO __diesel_schema_migrations (version) VALUES "
            "('00000000000000'), ('20240101000000')")
    plan = ep.MigrationPlan.from_dir(project, db=db)
    assert [o for o, _ in steps_of(plan)] == ["2024-02-10-083000_require_region/up.sql"] * 2 + [
        "2024-03-01-120000_region_index/up.sql", "2024-04-01-000000_vacuum/up.sql"]
    assert plan.outside_transaction == (3, 4)
    phases = phase_by_step(plan)
    assert phases[1] == phases[2] == "A" and phases[3] == "B"
    assert phases[4] == "B", "ANALYZE of a run_in_transaction = false migration runs alone, outside a transaction"
    assert any("runs outside a transaction (diesel's directive)" in n for n in plan.notes)
    assert plan.record_hint.endswith(
        "INSERT INTO \"__diesel_schema_migrations\" (version) VALUES ('20240210083000'), ('20240301120000'), "
        "('20240401000000');")
    inside = plan.model_copy(update={"steps": tuple(s.model_copy(update={"outside_transaction": False})
                                                   for s in plan.steps)})
    assert inside.fingerprint != plan.fingerprint, "how a step runs is part of the plan"
    assert ep.run_preflight(plan, db).status == "clear"
    result = cli("check", f"diesel:{project}", url=url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2024-02-10-083000_require_region/up.sql" in result.stdout


def test_a_diesel_migration_outside_a_transaction_is_applied_outside_one(tmp_path, db, run_sql, customers, store):
    project = diesel_project(tmp_path / "api")
    run_sql("CREATE TABLE __diesel_schema_migrations (version varchar(50) PRIMARY KEY); "
            "INSERT INTO __diesel_schema_migrations VALUES ('00000000000000'), ('20240101000000')")
    plan = ep.MigrationPlan.from_dir(project, db=db)
    run = ep.MigrationRun.start(plan, db, store_schema=store)
    assert run.preflight().status == "clear"
    # stored with its steps: the run loaded again applies them the same way, under the same fingerprint
    loaded = ep.MigrationRun.load(run.id, db, store_schema=store)
    assert loaded.plan.outside_transaction == plan.outside_transaction == (3, 4)
    assert loaded.plan.fingerprint == plan.fingerprint == run.record.plan_fingerprint
    record = loaded.apply()
    assert record.status == "applied"
    ran = {(s.phase, s.sql.split()[0]) for s in record.applied_sql}
    assert ("B", "ANALYZE") in ran and ("B", "CREATE") in ran
    assert run_sql("SELECT indisvalid FROM pg_index WHERE indexrelid = 'customer_region_idx'::regclass") == [(True,)]
    assert run_sql("SELECT count(*) FROM __diesel_schema_migrations") == [(2,)], "another tool's table is not written"


# --- Atlas ----------------------------------------------------------------------------------------------


def atlas_project(root: Path) -> Path:
    files = {
        "migrations/20240101000000_init.sql": "CREATE TABLE customer (id bigint PRIMARY KEY, email text);\n",
        "migrations/20240201000000_region.sql": "ALTER TABLE customer ADD COLUMN region text;\n",
        "migrations/20240301000000_email_index.sql": """
            -- atlas:txmode none

            CREATE UNIQUE INDEX CONCURRENTLY customer_email_key ON customer (email);
        """,
        "migrations/20240401000000_require_email.sql": "ALTER TABLE customer ALTER COLUMN email SET NOT NULL;\n",
    }
    write(root, files)
    sums = "\n".join(f"{Path(n).name} h1:AAAA{i}=" for i, n in enumerate(sorted(files)))
    (root / "migrations" / "atlas.sum").write_text(f"h1:TOTAL=\n{sums}\n")
    return root / "migrations"


ATLAS_HISTORY = """
CREATE TABLE atlas_schema_revisions (version varchar PRIMARY KEY, description varchar NOT NULL, type bigint NOT NULL
    DEFAULT 2, applied bigint NOT NULL DEFAULT 0, total bigint NOT NULL DEFAULT 0, executed_at timestamptz NOT NULL
    DEFAULT now(), execution_time bigint NOT NULL DEFAULT 0, error text, error_stmt text, hash varchar NOT NULL
    DEFAULT '', partial_hashes jsonb, operator_version varchar NOT NULL DEFAULT 'Atlas CLI v0.20.0');
INSERT INTO atlas_schema_revisions (version, description, applied, total) VALUES
  ('20240101000000', 'init', 1, 1), ('20240201000000', 'region', 1, 1);
"""


def test_atlas_reads_the_files_atlas_sum_lists_honours_txmode_none_and_skips_applied_revisions(
        tmp_path, db, run_sql, customers, url):
    folder = atlas_project(tmp_path / "svc")
    run_sql(ATLAS_HISTORY)
    plan = ep.MigrationPlan.from_dir(folder, db=db)
    assert steps_of(plan) == [("20240301000000_email_index.sql", "create_index"),
                              ("20240401000000_require_email.sql", "set_not_null")]
    assert plan.outside_transaction == (1,) and phase_by_step(plan)[1] == "B"
    assert plan.record_hint == f'atlas migrate set 20240401000000 --dir file://{folder} --url "$DATABASE_URL"'
    report = ep.run_preflight(plan, db, explore=True)
    assert [r.check_id for r in report.results if r.severity == "blocking"] == ["NOT_NULL_PRECHECK"]
    result = cli("check", f"atlas:{folder}", "--explore", url=url)
    assert result.returncode == 1 and "from 20240401000000_require_email.sql" in result.stdout, result.stderr


def test_atlas_refuses_a_folder_whose_sum_does_not_list_a_file_and_a_revision_left_half_applied(
        tmp_path, db, run_sql):
    folder = atlas_project(tmp_path / "svc")
    (folder / "20240501000000_extra.sql").write_text("SELECT 1;\n")
    with pytest.raises(ep.PlanError, match=r"20240501000000_extra.sql is not in atlas.sum.*atlas migrate hash"):
        ep.MigrationPlan.from_tool("atlas", folder)
    (folder / "20240501000000_extra.sql").unlink()
    run_sql(ATLAS_HISTORY)
    run_sql("INSERT INTO atlas_schema_revisions (version, description, applied, total, error) VALUES "
            "('20240301000000', 'email_index', 0, 1, 'could not create unique index')")
    with pytest.raises(ep.PlanError, match=r"version 20240301000000 stopped after 0 of 1 statements"):
        ep.MigrationPlan.from_tool("atlas", folder, db=db)


# --- Liquibase ------------------------------------------------------------------------------------------


def liquibase_project(root: Path) -> Path:
    write(root, {
        "db/changelog/db.changelog-master.xml": """
            <?xml version="1.0" encoding="UTF-8"?>
            <databaseChangeLog xmlns="http://www.liquibase.org/xml/ns/dbchangelog"
                xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
                xsi:schemaLocation="http://www.liquibase.org/xml/ns/dbchangelog
                  http://www.liquibase.org/xml/ns/dbchangelog/dbchangelog-4.20.xsd">
              <include file="changes/001-customer.sql" relativeToChangelogFile="true"/>
              <include file="db/changelog/changes/002-email.sql"/>
              <includeAll path="later/" relativeToChangelogFile="true"/>
            </databaseChangeLog>
        """,
        "db/changelog/changes/001-customer.sql": """
            --liquibase formatted sql

            --changeset alice:1
            CREATE TABLE customer (id bigint PRIMARY KEY, email text);
            --rollback DROP TABLE customer;

            --changeset alice:2
            ALTER TABLE customer ADD COLUMN region text;
        """,
        "db/changelog/changes/002-email.sql": """
            --liquibase formatted sql

            --changeset bob:email-index runInTransaction:false
            CREATE INDEX CONCURRENTLY customer_email_idx ON customer (email);
            --rollback DROP INDEX customer_email_idx;

            --changeset bob:oracle-only dbms:oracle
            ALTER TABLE customer MODIFY email VARCHAR2(200);

            --changeset bob:require-email context:prod
            ALTER TABLE customer ALTER COLUMN email SET NOT NULL;
        """,
        "db/changelog/later/010-region.sql": """
            --liquibase formatted sql
            --changeset carol:region-check
            ALTER TABLE customer ADD CONSTRAINT customer_region_known CHECK (region IN ('eu', 'us'));
        """,
    })
    return root / "db" / "changelog" / "db.changelog-master.xml"


LIQUIBASE_HISTORY = """
CREATE TABLE databasechangelog (id varchar(255) NOT NULL, author varchar(255) NOT NULL, filename varchar(255) NOT NULL,
    dateexecuted timestamp NOT NULL DEFAULT now(), orderexecuted int NOT NULL, exectype varchar(10) NOT NULL,
    md5sum varchar(35), description varchar(255), comments varchar(255), tag varchar(255),
    liquibase varchar(20), contexts varchar(255), labels varchar(255), deployment_id varchar(10));
INSERT INTO databasechangelog (id, author, filename, orderexecuted, exectype) VALUES
  ('1', 'alice', 'db/changelog/changes/001-customer.sql', 1, 'EXECUTED'),
  ('2', 'alice', 'db/changelog/changes/001-customer.sql', 2, 'EXECUTED');
"""


def test_liquibase_reads_changesets_in_changelog_order_and_skips_those_databasechangelog_ran(
        tmp_path, db, run_sql, customers, url):
    root = liquibase_project(tmp_path / "app")
    run_sql(LIQUIBASE_HISTORY)
    plan = ep.MigrationPlan.from_tool("liquibase", root, db=db)
    assert [o for o, _ in steps_of(plan)] == [
        "changes/002-email.sql changeset bob:email-index", "changes/002-email.sql changeset bob:require-email",
        "later/010-region.sql changeset carol:region-check"]
    assert plan.outside_transaction == (1,) and phase_by_step(plan)[1] == "B"
    assert any("bob:oracle-only: dbms oracle, not run on PostgreSQL: left out" in n for n in plan.notes)
    assert any("bob:require-email: context prod; included" in n for n in plan.notes)
    assert plan.record_hint == f"liquibase changelog-sync --changelog-file={root}"
    assert "DROP INDEX" not in plan.sql(), "--rollback lines are not part of the upgrade"
    report = ep.run_preflight(plan, db)
    assert report.status == "blocked" and "changeset bob:require-email" in report.results[0].message
    result = cli("check", str(root), url=url)  # a changelog file, recognised
    assert result.returncode == 1 and "changeset bob:require-email" in result.stdout, result.stderr


def test_liquibase_marks_mark_ran_as_run_and_a_formatted_sql_root_changelog_reads_alone(tmp_path, db, run_sql):
    root = liquibase_project(tmp_path / "app")
    run_sql(LIQUIBASE_HISTORY)
    run_sql("INSERT INTO databasechangelog (id, author, filename, orderexecuted, exectype) VALUES "
            "('email-index', 'bob', 'changes/002-email.sql', 3, 'MARK_RAN')")
    plan = ep.MigrationPlan.from_tool("liquibase", root.parent, db=db)  # the folder: its master changelog
    assert plan.origin_of(1) == "changes/002-email.sql changeset bob:require-email"
    alone = ep.MigrationPlan.from_tool("liquibase", root.parent / "later" / "010-region.sql")
    assert [s.kind for s in alone.steps] == ["add_check"]
    yaml_root = root.parent / "db.changelog-master.yaml"
    yaml_root.write_text("databaseChangeLog:\n  - include:\n      file: later/010-region.sql\n"
                         "      relativeToChangelogFile: true\n")
    assert ep.MigrationPlan.from_tool("liquibase", yaml_root).origin_of(1) == \
        "later/010-region.sql changeset carol:region-check"


def test_the_folders_read_before_say_how_to_record_an_apply_in_their_tools_history(tmp_path):
    flyway = write(tmp_path / "flyway", {"V1__a.sql": "CREATE TABLE a (x int);\n",
                                         "V2__b.sql": "CREATE TABLE b (x int);\n"})
    assert ep.MigrationPlan.from_dir(flyway).record_hint.startswith(
        f"flyway -locations=filesystem:{flyway} -target=2 -skipExecutingMigrations=true migrate")
    golang = write(tmp_path / "golang", {"0001_a.up.sql": "CREATE TABLE a (x int);\n",
                                         "0002_b.up.sql": "CREATE TABLE b (x int);\n"})
    assert ep.MigrationPlan.from_dir(golang).record_hint == f'migrate -path {golang} -database "$DATABASE_URL" force 2'
    dbmate = write(tmp_path / "dbmate", {"20240101000000_a.sql": "-- migrate:up\nCREATE TABLE a (x int);\n"})
    assert ep.MigrationPlan.from_dir(dbmate).record_hint.endswith(
        "INSERT INTO schema_migrations (version) VALUES ('20240101000000');")


# --- Django ---------------------------------------------------------------------------------------------


def django_project(root: Path, server_url: str, schema: str) -> Path:
    parts = urlsplit(server_url)
    database = {"ENGINE": "django.db.backends.postgresql", "NAME": parts.path.lstrip("/") or "postgres",
                "USER": parts.username or "postgres", "PASSWORD": parts.password or "",
                "HOST": parts.hostname or dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p).get(
                    "host", ""),
                "PORT": str(parts.port or ""), "OPTIONS": {"options": f"-c search_path={schema}"}}
    return write(root, {
        "manage.py": """
            import os
            import sys

            if __name__ == "__main__":
                os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shopsite.settings")
                from django.core.management import execute_from_command_line
                execute_from_command_line(sys.argv)
        """,
        "shopsite/__init__.py": "",
        "shopsite/settings.py": f"""
            SECRET_KEY = "test"
            INSTALLED_APPS = ["shop"]
            DATABASES = {{"default": {json.dumps(database)}}}
            DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
            USE_TZ = True
        """,
        "shop/__init__.py": "",
        "shop/models.py": """
            from django.db import models


            class Customer(models.Model):
                email = models.CharField(max_length=100)
                region = models.TextField(null=True)

                class Meta:
                    db_table = "customer"
        """,
        "shop/migrations/__init__.py": "",
        "shop/migrations/0001_initial.py": """
            from django.db import migrations, models


            class Migration(migrations.Migration):
                initial = True
                dependencies = []
                operations = [
                    migrations.CreateModel(name="Customer", fields=[
                        ("id", models.BigAutoField(primary_key=True, serialize=False)),
                        ("email", models.CharField(max_length=100, null=True)),
                        ("region", models.TextField(null=True)),
                    ], options={"db_table": "customer"}),
                ]
        """,
        "shop/migrations/0002_email_required.py": """
            from django.db import migrations, models


            class Migration(migrations.Migration):
                dependencies = [("shop", "0001_initial")]
                operations = [migrations.AlterField(model_name="customer", name="email",
                                                    field=models.CharField(max_length=100))]
        """,
        "shop/migrations/0003_region_index.py": """
            from django.db import migrations


            class Migration(migrations.Migration):
                atomic = False
                dependencies = [("shop", "0002_email_required")]
                operations = [migrations.RunSQL(
                    "CREATE INDEX CONCURRENTLY customer_region_idx ON customer (region)",
                    reverse_sql="DROP INDEX customer_region_idx")]
        """,
    })


def test_django_renders_each_unapplied_migration_with_sqlmigrate_in_the_graphs_order(
        tmp_path, db, run_sql, customers, server_url, schema, url):
    pytest.importorskip("django")
    project = django_project(tmp_path / "site", server_url, schema)
    run_sql("CREATE TABLE django_migrations (id bigserial PRIMARY KEY, app varchar(255) NOT NULL, "
            "name varchar(255) NOT NULL, applied timestamptz NOT NULL DEFAULT now()); "
            "INSERT INTO django_migrations (app, name) VALUES ('shop', '0001_initial')")
    plan = ep.MigrationPlan.from_tool("django", project / "manage.py", db=db)
    origins = [o for o, _ in steps_of(plan)]
    assert origins[0] == "shop.0002_email_required" and origins[-1] == "shop.0003_region_index"
    assert "shop.0001_initial" not in origins
    last = len(plan.steps)
    assert plan.outside_transaction == (last,) and phase_by_step(plan)[last] == "B"
    assert plan.record_hint == f"python {project / 'manage.py'} migrate --fake shop 0003_region_index"
    report = ep.run_preflight(plan, db)
    assert report.status == "blocked" and "from shop.0002_email_required" in report.results[0].message
    result = cli("check", str(project), url=url)  # a folder holding manage.py, recognised
    assert result.returncode == 1 and "from shop.0002_email_required" in result.stdout, result.stderr


# --- after an apply: the tool's own history -------------------------------------------------------------


def test_after_an_apply_the_cli_prints_how_to_record_it_and_writes_no_other_tools_table(
        tmp_path, run_sql, url, store, customers):
    project = prisma_project(tmp_path / "shop")
    run_sql(PRISMA_HISTORY)
    run_sql("UPDATE customer SET email = 'filled' || id WHERE email IS NULL")
    result = cli("apply", str(project), "--store-schema", store, url=url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ("record it in the migration tool's own history (erd-preflight never writes it):\n"
            "  npx prisma migrate resolve --applied 20240301120000_require_email\n"
            "  npx prisma migrate resolve --applied 20240302120000_unique_email\n") in result.stdout
    assert run_sql("SELECT count(*) FROM _prisma_migrations") == [(3,)]
