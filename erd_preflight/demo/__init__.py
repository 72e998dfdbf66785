"""The demo runbook: a shop schema with planted violations, preflighted from a .sql migration.

Run it with ``python -m erd_preflight.demo`` (embedded PostgreSQL) or ``python -m erd_preflight.demo URL``.
"""

from __future__ import annotations

from importlib import resources

from psycopg import sql

from ..db import Database, connect

DEMO_SCHEMA = "erd_preflight_demo"


def migration_sql() -> str:
    return resources.files(__package__).joinpath("0042_orders.sql").read_text()


def schema_sql() -> str:
    return resources.files(__package__).joinpath("schema.sql").read_text()


def load_demo_schema(db: Database, schema: str = DEMO_SCHEMA) -> None:
    """(Re)create ``schema`` holding the demo tables with their planted violations."""
    with db.connection() as conn:
        with conn.transaction():
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
            conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
            conn.execute(schema_sql())


def demo_database(url: str | None = None, schema: str = DEMO_SCHEMA) -> Database:
    """A database whose search_path starts at the demo schema, loaded fresh."""
    base = connect(url)
    db = connect(base.engine.url.render_as_string(hide_password=False),
                 connect_args={"options": f"-c search_path={schema}"})
    load_demo_schema(db, schema)
    return db
