"""Shared fixtures: one embedded server for the whole test session (tests/ and notebooks/).

The server is a separate instance ('test') of the embedded TimescaleDB, so a test run
never touches the data of `make bench` or `make lab`. It is started in
``pytest_sessionstart`` (not a fixture) because nbval's notebook kernels inherit the
environment set here: TSJ_DATABASE_URL and TSJ_SOURCE_URL point at it.

A PgBouncer in transaction mode stands in front of it (TSJ_POOLER_URL), as Supabase's and
Timescale Cloud's poolers do, with ``max_prepared_statements = 0``: PgBouncer before 1.21,
the case psycopg's prepared statements break. tests/test_pooler.py runs the commands and
a notebook through it; notebook 04 compares direct and pooled clients through it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import sql

from tsj_lab.config import PROJECT_DIR, with_database
from tsj_lab.embedded import SOURCE_DB, TARGET_DB, Embedded, default_home
from tsj_lab.pooler import PgBouncer

_SERVER: Embedded | None = None
_POOLER: PgBouncer | None = None


def pytest_sessionstart(session: pytest.Session) -> None:
    global _SERVER, _POOLER
    # TSJ_TEST_INSTANCE lets two test runs on one machine use separate servers.
    instance = os.environ.get("TSJ_TEST_INSTANCE", "test").lower()
    _SERVER = Embedded(default_home(PROJECT_DIR / ".tsj"), instance=instance)
    _SERVER.start()
    os.environ["TSJ_DATABASE_URL"] = _SERVER.url(TARGET_DB)
    os.environ["TSJ_SOURCE_URL"] = _SERVER.url(SOURCE_DB)
    os.environ.pop("TIMESCALE_DATABASE_URL", None)
    _POOLER = PgBouncer(_SERVER, mode="transaction", prepared_statements=0)
    os.environ["TSJ_POOLER_URL"] = _POOLER.start()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _SERVER is not None and not os.environ.get("TSJ_TEST_KEEP_SERVER"):
        if _POOLER is not None:
            _POOLER.stop()
        _SERVER.stop()


@pytest.fixture(scope="session")
def server() -> Embedded:
    assert _SERVER is not None
    return _SERVER


@pytest.fixture(scope="session")
def pooler() -> PgBouncer:
    """The test server's PgBouncer: transaction mode, no prepared-statement support."""
    assert _POOLER is not None
    return _POOLER


@pytest.fixture(scope="session")
def target_url(server: Embedded) -> str:
    """The shared test target (TimescaleDB, apache edition)."""
    return server.url(TARGET_DB)


@pytest.fixture(scope="session")
def source_url(server: Embedded) -> str:
    """The shared plain-PostgreSQL source database."""
    return server.url(SOURCE_DB)


@pytest.fixture
def make_db(server: Embedded) -> Iterator[Callable[..., str]]:
    """A factory of fresh databases, dropped after the test: ``make_db(timescale=True)``."""
    made: list[str] = []
    admin = server.url("postgres")

    def make(*, timescale: bool = True, prefix: str = "t") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        made.append(name)
        url = with_database(server.url(TARGET_DB), name)
        if timescale:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        return url

    yield make
    with psycopg.connect(admin, autocommit=True) as conn:
        for name in made:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
