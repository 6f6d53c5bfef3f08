"""tsj through PgBouncer in transaction mode, as Supabase's and Timescale Cloud's poolers
hand it out: the commands, AC6 and a notebook, on fresh databases behind the test pooler.

The session's PgBouncer (conftest) has ``max_prepared_statements = 0``, like PgBouncer
before 1.21; one with prepared-statement support (1.21+) is started here too.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from tsj_lab.config import Settings
from tsj_lab.db import clients
from tsj_lab import db
from tsj_lab.server import debs, process
from tsj_lab.lab import reports
from tsj_lab.provision import schema
from tsj_lab.server.cluster import Embedded
from tsj_lab.errors import EmbeddedError
from tsj_lab.server.pooler import PgBouncer

TSJ = [sys.executable, "-m", "tsj_lab.cli"]


def tsj(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TSJ, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TSJ_NO_PROGRESS": "1", **(env or {})})


@pytest.fixture(scope="module")
def bouncer_with_prepares(server: Embedded) -> Iterator[PgBouncer]:
    """PgBouncer 1.21+ behaviour: it manages protocol-level prepared statements."""
    b = PgBouncer(server, mode="transaction", prepared_statements=200, name="pgbouncer-prepared")
    b.start()
    yield b
    b.stop()


# -- the pooler itself -----------------------------------------------------------------


def test_second_setup_downloads_nothing(pooler: PgBouncer, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(debs, "run", lambda cmd, **kw: calls.append(cmd))
    assert pooler.ensure_binaries() is False
    assert calls == []
    assert "PgBouncer 1." in pooler.logfile.read_text()


def test_runs_unprivileged_on_loopback_with_a_secret_not_a_password(pooler: PgBouncer,
                                                                   server: Embedded) -> None:
    pid = pooler.pid()
    assert pid is not None
    owner = Path(f"/proc/{pid}").stat().st_uid
    if os.geteuid() == 0:
        assert pwd.getpwuid(owner).pw_name == process.UNPRIVILEGED
    assert "listen_addr = 127.0.0.1" in pooler.config.read_text()
    password = server.passfile.read_text().strip().rsplit(":", 1)[1]
    secret = pooler.auth_file.read_text()
    assert secret.startswith('"tsj" "SCRAM-SHA-256$4096:') and password not in secret
    assert pooler.auth_file.stat().st_mode & 0o777 == 0o600
    assert ":" not in urlsplit(pooler.url()).netloc.split("@")[0]  # no password in the URL


def test_bad_settings_fail_before_anything_starts(server: Embedded) -> None:
    with pytest.raises(ValueError, match="pool mode 'txn' is unknown"):
        PgBouncer(server, mode="txn")
    with pytest.raises(ValueError, match="must be >= 0"):
        PgBouncer(server, prepared_statements=-1)


def test_a_remembered_port_taken_meanwhile_moves(server: Embedded, pooler: PgBouncer) -> None:
    """A PgBouncer whose remembered port another one took starts on a free port instead."""
    other = PgBouncer(server, name="pgbouncer-moved")
    other.dir.mkdir(parents=True, exist_ok=True)
    taken = urlsplit(pooler.url()).port
    other.port_file.write_text(f"{taken}\n")
    try:
        url = other.start()
        assert urlsplit(url).port != taken
        with db.connect(url, autocommit=True) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        assert other.stop() is True
    assert other.pid() is None and other.stop() is False


def test_a_pooler_that_dies_at_start_says_why(server: Embedded) -> None:
    """A config PgBouncer refuses: one line with its own words and the log, no traceback."""
    bad = PgBouncer(server, name="pgbouncer-bad")
    bad._write_config = lambda port: bad.config.write_text(  # type: ignore[method-assign]
        f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\npool_mode = nonsense\n"
        f"logfile = {bad.logfile}\npidfile = {bad.pidfile}\n")
    with pytest.raises(EmbeddedError, match=r"pgbouncer did not start: .*pool_mode.*see .*pgbouncer.log"):
        bad.start()
    assert bad.pid() is None


# -- what tsj detects, and what a pooler without prepared statements breaks ---------------


def test_pooling_is_detected_with_and_without_prepared_statements(
        pooler: PgBouncer, bouncer_with_prepares: PgBouncer, target_url: str) -> None:
    direct = db.pooling(target_url)
    assert not direct.pooled and direct.prepares
    old = db.pooling(pooler.url())
    assert old.pooled and not old.prepares and old.server_port == direct.server_port
    new = db.pooling(bouncer_with_prepares.url())
    assert new.pooled and new.prepares
    with db.connect(pooler.url()) as conn:
        assert conn.prepare_threshold is None
    with db.connect(bouncer_with_prepares.url()) as conn:
        assert conn.prepare_threshold == 5  # psycopg's default: the pooler copes


def test_plain_psycopg_breaks_where_tsj_connections_do_not(pooler: PgBouncer) -> None:
    """The failure the issue saw ('_pg3_0 already exists'), then tsj's connections on it."""
    url = pooler.url()
    with pytest.raises(psycopg.errors.DuplicatePreparedStatement):
        for _ in range(20):  # each new client names its first statement _pg3_0 again
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("SELECT 1", prepare=True)
    for _ in range(20):
        with db.connect(url, autocommit=True) as conn:
            for _ in range(8):  # past psycopg's threshold of 5
                conn.execute("SELECT %s::int", (1,)).fetchone()


# -- AC6 -----------------------------------------------------------------------------


def test_ac6_through_the_pooler_reports_both_sides(pooler: PgBouncer) -> None:
    got = clients.run(pooler.url(), clients=50, queries_per_client=4)
    assert got.ok, got.describe()
    assert got.via == "pooler" and got.connected == 50 and got.queries == 200
    # 50 clients on PgBouncer's default_pool_size of 20 server connections, at most
    assert 1 <= got.server_connections <= pooler.pool_size
    assert got.qps > 0 and got.p95_ms > 0


def test_ac6_refused_by_the_pooler_names_its_cause(server: Embedded) -> None:
    small = PgBouncer(server, name="pgbouncer-small", max_clients=10)
    small.start()
    try:
        row = schema._check_pool(small.url(), size=15, timeout=5)
    finally:
        small.stop()
    assert row.status == "fail" and row.mode == "pooler", row
    assert "opened 10 of 15 connections" in row.detail, row.detail
    assert "max_client_conn" in row.detail, row.detail


# -- the commands and a notebook through the pooler ---------------------------------------


def leave_prepared_statements(url: str, *, clients: int) -> None:
    """What another psycopg app on the same pooler leaves behind: '_pg3_0' prepared on each
    server connection. A client that prepares its own '_pg3_0' there then fails."""
    import threading

    barrier = threading.Barrier(clients, timeout=30)

    def client() -> None:
        with psycopg.connect(url) as conn:  # one transaction: one server connection each
            try:
                conn.execute("SELECT 1", prepare=True)
            except psycopg.errors.DuplicatePreparedStatement:
                conn.rollback()  # that server connection has one already
            barrier.wait()  # all at once: every server connection of the pool gets one
            conn.commit()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


@contextmanager
def _fresh_pair(server: Embedded, pooler: PgBouncer) -> Iterator[tuple[str, str]]:
    """A fresh target (extension created) and source, reached only through the pooler."""
    import uuid

    from psycopg import sql

    from tsj_lab.config import with_database

    admin = server.url("postgres")
    names = [f"pool_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    with psycopg.connect(admin, autocommit=True) as conn:
        for name in names:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    target = pooler.through(with_database(server.url(), names[0]))
    source = pooler.through(with_database(server.url(), names[1]))
    with psycopg.connect(with_database(server.url(), names[0]), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    for url in (target, source):
        leave_prepared_statements(url, clients=pooler.pool_size)
    try:
        yield target, source
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            for name in names:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(name)))


@pytest.fixture(scope="module")
def pooled_pair(server: Embedded, pooler: PgBouncer) -> Iterator[tuple[str, str]]:
    """A fresh, empty target and source, reached only through the transaction-mode pooler."""
    with _fresh_pair(server, pooler) as pair:
        yield pair


@pytest.fixture(scope="module")
def loaded_pair(server: Embedded, pooler: PgBouncer) -> Iterator[tuple[str, str]]:
    """A pair of its own, provisioned, loaded and migrated through the pooler, so that the
    tests that read data do not depend on another test having loaded it."""
    from tsj_lab import migrate
    from tsj_lab.data import generate
    from tsj_lab.domain import TickSpec

    with _fresh_pair(server, pooler) as (target, source):
        schema.provision(target)
        generate.ensure_source(source, TickSpec(("ES", "NQ"), "2026-01-05", interval_ms=2000))
        assert migrate.run(source, target, include_expired=True, batch_size=5000).ok
        leave_prepared_statements(target, clients=pooler.pool_size)
        yield target, source


@pytest.mark.slow
def test_commands_through_transaction_pooler(pooled_pair: tuple[str, str],
                                             pooler: PgBouncer) -> None:
    target, source = pooled_pair
    assert db.pooling(target).pooled and not db.pooling(target).prepares
    res = tsj("provision", "--target", target)
    assert res.returncode == 0, res.stderr
    ac6 = next(ln for ln in res.stdout.splitlines() if ln.startswith("AC6"))
    assert " ok " in ac6 and "through a pooler" in ac6 and "0 errors" in ac6, ac6
    res = tsj("generate", "--into", "source", "--source", source, "--symbols", "ES,NQ",
              "--start", "2026-01-05", "--interval-ms", "2000", "--workers", "2")
    assert res.returncode == 0 and "loaded 86,400 ticks" in res.stdout, res.stdout + res.stderr
    res = tsj("migrate", "--source", source, "--target", target, "--workers", "2",
              "--batch-size", "5000", "--include-expired")  # January 2026: past retention
    assert res.returncode == 0 and "verified 2 symbol-day(s)" in res.stdout, res.stdout + res.stderr
    assert "source through a pooler" in res.stdout and "transaction mode is enough" in res.stdout
    res = tsj("refresh", "--target", target)
    assert res.returncode == 0, res.stderr
    # the suite runs many statements per step: psycopg would prepare them; a pooler without
    # prepared-statement support would then fail with '_pg3_0 already exists'
    for _ in range(2):
        res = tsj("check", "--target", target, "--source", source, "--sample", "2")
        assert res.returncode == 0, res.stdout + res.stderr
        assert "fail" not in res.stdout.splitlines()[-1], res.stdout
    res = tsj("validate", "--target", target)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.slow
@pytest.mark.parametrize("notebook", ["03_integrity", "05_candles"])
def test_notebook_through_transaction_pooler(notebook: str, loaded_pair: tuple[str, str],
                                             tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel reaches both databases only through the pooler (05: ADBC's fetch path)."""
    target, source = loaded_pair
    monkeypatch.setenv("TSJ_DATABASE_URL", target)
    monkeypatch.setenv("TSJ_SOURCE_URL", source)
    report = reports.run(notebook, settings=Settings.load(),
                         parameters={"target": "target", "source": "source"},
                         reports_dir=tmp_path)
    assert report.status == "ok"
    statuses = {c["status"] for c in report.summary.get("checks", [])}
    assert "fail" not in statuses, report.summary["checks"]
    if notebook == "05_candles":  # it drew candles from the ticks migrated through the pooler
        assert {m["name"] for m in report.summary["metrics"]} >= {"return_pct", "volume"}


def test_check_through_pooler_with_prepared_statements(loaded_pair: tuple[str, str],
                                                       bouncer_with_prepares: PgBouncer) -> None:
    """PgBouncer 1.21+: tsj keeps psycopg's prepared statements, and they work."""
    target, source = (bouncer_with_prepares.through(u) for u in loaded_pair)
    res = tsj("check", "--target", target, "--source", source)
    assert res.returncode == 0, res.stdout + res.stderr
    rows = schema.validate(target, pool_size=50)
    assert [r.status for r in rows if r.ac in ("AC1", "AC2", "AC6")] == ["ok"] * 3, rows


def test_control_without_detection_check_fails_as_reported(
        loaded_pair: tuple[str, str], pooler: PgBouncer, monkeypatch: pytest.MonkeyPatch) -> None:
    """With tsj's pooler detection overridden (prepares kept), the suite fails as the issue
    saw it: so the passing runs above are the fix at work, not a lenient pooler."""
    from tsj_lab import checks
    from tsj_lab.errors import SchemaError

    target, source = loaded_pair
    found = db.pooling(target)
    monkeypatch.setitem(db.conn._POOLING, target, db.Pooling(True, found.server_port, True))
    leave_prepared_statements(target, clients=pooler.pool_size)
    with pytest.raises(SchemaError, match=r'check step .* prepared statement "_pg3_\d+" already exists'):
        checks.run(target, source_url=source, progress=False)


def test_a_statement_mode_pooler_is_named_with_the_fix(server: Embedded) -> None:
    """Statement mode refuses transactions: one line that says so and names the port to use."""
    stmt = PgBouncer(server, mode="statement")
    url = stmt.start()
    try:
        res = tsj("check", "--target", url)
    finally:
        stmt.stop()
    assert res.returncode == 1 and res.stderr.count("\n") == 1, res.stderr
    assert "a pooler in statement mode" in res.stderr and "transaction-mode" in res.stderr
    assert "Traceback" not in res.stderr


def test_a_running_pooler_with_other_settings_is_restarted(server: Embedded) -> None:
    first = PgBouncer(server, name="pgbouncer-restart", prepared_statements=0)
    url = first.start()
    pid = first.pid()
    try:
        assert PgBouncer(server, name="pgbouncer-restart", prepared_statements=0).start() == url
        assert first.pid() == pid  # same settings: left running
        again = PgBouncer(server, name="pgbouncer-restart", prepared_statements=50)
        again.start()
        assert again.pid() not in (None, pid)
        assert "max_prepared_statements = 50" in again.config.read_text()
    finally:
        first.stop()
