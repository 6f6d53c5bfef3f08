"""Shared fixtures: one embedded server for the whole test session (tests/ and notebooks/).

The server is a separate instance ('test') of the embedded TimescaleDB, timescale edition
(built from source, with the Timescale License half), so a test run never touches the
data of `make bench` or `make lab`. It runs what the user configured (TSJ_PG_MAJOR,
TSJ_TIMESCALEDB_VERSION; production's PostgreSQL 18 + TimescaleDB 2.24.0 by default): the
CI's version matrix (`make test-matrix`) sets them per leg. It starts on first need: the
``server`` fixture (and every fixture built on it) or a notebook cell (nbval, whose kernels
find it through TSJ_DATABASE_URL and TSJ_SOURCE_URL once it runs). Pure tests start
nothing. What only the apache edition does
(Debian's build) is tested on a second instance, started on first use by
``apache_server``.

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

from tsj_lab.config import PROJECT_DIR, Settings, with_database
from tsj_lab.server.cluster import SOURCE_DB, TARGET_DB, Embedded, default_home
from tsj_lab.server.pooler import PgBouncer

_SERVER: Embedded | None = None
_APACHE: Embedded | None = None
_POOLER: PgBouncer | None = None
_LIVE: Embedded | None = None
# TSJ_TEST_INSTANCE lets two test runs on one machine use separate servers; under
# pytest-xdist (make test runs four workers) each worker has its own ('test-gw0', ...).
_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
_INSTANCE = os.environ.get("TSJ_TEST_INSTANCE", "test").lower() + (f"-{_WORKER}" if _WORKER else "")
# the versions, the build's source archive and the apt mirror as a user configured them
# (not the connection settings: the suite points those at its own server)
_SERVER_VARS = ("TSJ_PG_MAJOR", "TSJ_TIMESCALEDB_VERSION", "TSJ_TIMESCALEDB_SOURCE",
                "TSJ_APT_MIRROR")
_SETTINGS = Settings.load(dotenv=None, env={k: v for k, v in os.environ.items()
                                             if k in _SERVER_VARS})


def _start_server() -> Embedded:
    """The worker's test server and its PgBouncer, started on first need (a worker that
    runs only pure tests starts none); the environment then points at them, which is how
    nbval's notebook kernels and the subprocesses of the CLI tests find them."""
    global _SERVER, _POOLER
    if _SERVER is not None:
        return _SERVER
    server = Embedded(default_home(PROJECT_DIR / ".tsj"), instance=_INSTANCE,
                      pg_major=_SETTINGS.pg_major,
                      timescaledb_version=_SETTINGS.timescaledb_version,
                      timescaledb_source=_SETTINGS.timescaledb_source,
                      apt_mirror=_SETTINGS.apt_mirror)
    if not server.installed:
        print(f"\nsetting up the test server ({server.flavor}): TimescaleDB builds from "
              "source once (1-3 minutes on 2 cores)", flush=True)
    server.start()
    _SERVER = server
    os.environ["TSJ_DATABASE_URL"] = server.url(TARGET_DB)
    os.environ["TSJ_SOURCE_URL"] = server.url(SOURCE_DB)
    os.environ.pop("TIMESCALE_DATABASE_URL", None)
    os.environ.pop("TSJ_EDITION", None)
    _POOLER = PgBouncer(server, mode="transaction", prepared_statements=0)
    os.environ["TSJ_POOLER_URL"] = _POOLER.start()
    return server


#: where the environment points before the test server runs: nowhere. A test that reaches
#: a database through the environment without asking for one fails on this address
#: instead of silently starting (or using) the embedded server of `make bench`.
_NOWHERE = "postgresql://no-test-server-yet@127.0.0.1:9/ask-for-the-server-fixture"


def pytest_sessionstart(session: pytest.Session) -> None:
    if _SERVER is None:
        for var in ("TSJ_DATABASE_URL", "TSJ_SOURCE_URL", "TSJ_POOLER_URL"):
            os.environ[var] = _NOWHERE
    if _LIVE is None:  # the live run's instance: set by _live_instance, on first use
        os.environ["TSJ_LIVE_URL"] = _NOWHERE


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Notebooks (nbval) reach the servers through the environment, not a fixture: start
    them for them, before the kernel starts (it inherits the URLs). Tests ask for
    ``server`` or ``live_server`` (or a fixture built on them)."""
    if type(item).__name__ == "IPyNbCell":
        _start_server()
        if item.path.stem == "07_live":
            _live_instance()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("TSJ_TEST_KEEP_SERVER"):
        return
    if _POOLER is not None:
        _POOLER.stop()
    for server in (_SERVER, _APACHE, _LIVE):
        if server is not None:
            server.stop()


@pytest.fixture(scope="session")
def server() -> Embedded:
    """The test server: the timescale edition (started on first use)."""
    return _start_server()


@pytest.fixture(scope="session")
def apache_server() -> Embedded:
    """A second test server on Debian's apache-only TimescaleDB, started on first use."""
    global _APACHE
    if _APACHE is None:
        _APACHE = Embedded(default_home(PROJECT_DIR / ".tsj"), instance=_INSTANCE,
                           edition="apache", pg_major=_SETTINGS.pg_major,
                           apt_mirror=_SETTINGS.apt_mirror)
        _APACHE.start()
    return _APACHE


def _live_instance() -> Embedded:
    """A third instance with TimescaleDB's job scheduler on, started on first use (the live
    run's tests and notebook; every other test runs where no scheduler runs)."""
    global _LIVE
    if _LIVE is None:
        _LIVE = Embedded(default_home(PROJECT_DIR / ".tsj"), instance=f"{_INSTANCE}-live",
                         pg_major=_SETTINGS.pg_major,
                         timescaledb_version=_SETTINGS.timescaledb_version,
                         timescaledb_source=_SETTINGS.timescaledb_source,
                         apt_mirror=_SETTINGS.apt_mirror, background_workers=8)
        _LIVE.start()
        os.environ["TSJ_LIVE_URL"] = _LIVE.url(TARGET_DB)
    return _LIVE



@pytest.fixture(scope="session")
def live_server() -> Embedded:
    """The test instance with the job scheduler on (TSJ_LIVE_URL names its tsj database)."""
    return _live_instance()


@pytest.fixture(scope="session")
def pooler(server: Embedded) -> PgBouncer:
    """The test server's PgBouncer: transaction mode, no prepared-statement support."""
    assert _POOLER is not None
    return _POOLER


@pytest.fixture(scope="session")
def target_url(server: Embedded) -> str:
    """The shared test target (TimescaleDB, timescale edition)."""
    return server.url(TARGET_DB)


@pytest.fixture(scope="session")
def source_url(server: Embedded) -> str:
    """The shared plain-PostgreSQL source database."""
    return server.url(SOURCE_DB)


def _database_factory(server: Embedded) -> Iterator[Callable[..., str]]:
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


@pytest.fixture
def make_db(server: Embedded) -> Iterator[Callable[..., str]]:
    """A factory of fresh databases on the timescale edition, dropped after the test:
    ``make_db(timescale=True)`` (False: plain PostgreSQL, no extension)."""
    yield from _database_factory(server)


@pytest.fixture
def make_apache_db(apache_server: Embedded) -> Iterator[Callable[..., str]]:
    """The same factory on the apache-edition server."""
    yield from _database_factory(apache_server)
