"""Pool, probe, engine and the one-line connection errors, against the embedded server."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import psycopg
import pytest

from tsj_lab.db import connections
from tsj_lab import db
from tsj_lab.config import Settings, with_database
from tsj_lab.server.cluster import Embedded
from tsj_lab.errors import ConnectError


def _password(server: Embedded) -> str:
    return server.passfile.read_text().strip().rsplit(":", 1)[1]


def _with_password(url: str, password: str) -> str:
    return url.replace("tsj@", f"tsj:{password}@", 1).split("?", 1)[0]


def test_probe_target_and_plain_source(server, target_url: str, source_url: str) -> None:
    caps = db.probe_url(target_url)
    assert caps.postgres_version_num // 10000 == server.pg_major
    assert caps.timescaledb_version == server.timescaledb_version and caps.license == "timescale"
    assert caps.edition == "timescaledb-timescale"
    plain = db.probe_url(source_url)
    assert plain.timescaledb_version is None and plain.license is None
    assert plain.edition == "postgresql" and plain.timescaledb_available


def test_probe_the_apache_edition(apache_server) -> None:
    caps = db.probe_url(apache_server.url())
    assert caps.license == "apache" and caps.edition == "timescaledb-apache"
    # Debian's package: forky's 2.31 for PostgreSQL 18, trixie's 2.19 for 17
    assert caps.timescaledb_version.startswith({18: "2.31", 17: "2.19"}[apache_server.pg_major])


def test_pool_serves_fifty_concurrent_clients(target_url: str) -> None:
    p = db.pool(target_url, min_size=2, max_size=50)
    try:
        def work(i: int) -> int:
            with p.connection() as conn:
                return conn.execute("SELECT %s::int, pg_sleep(0.05)", (i,)).fetchone()[0]

        with ThreadPoolExecutor(50) as ex:
            assert sorted(ex.map(work, range(50))) == list(range(50))
        assert p.get_stats()["pool_max"] == 50
    finally:
        p.close()


def test_pool_sizes_are_validated() -> None:
    with pytest.raises(ValueError, match="min=3 max=1"):
        db.pool("postgresql://u@127.0.0.1/x", min_size=3, max_size=1)


def test_engine_reads_into_pandas(target_url: str) -> None:
    eng = db.engine(target_url)
    try:
        df = pd.read_sql("SELECT 1 AS one, 'x' AS two", eng)
        assert df.to_dict("records") == [{"one": 1, "two": "x"}]
    finally:
        eng.dispose()


def test_wrong_password_is_one_line_and_redacted(server: Embedded, target_url: str) -> None:
    bad = _with_password(target_url, "Wr0ngSecret")
    with pytest.raises(ConnectError) as err:
        db.connect(bad)
    msg = str(err.value)
    assert "password was refused" in msg and "\n" not in msg
    assert "Wr0ngSecret" not in msg and "tsj:***@" in msg


def test_real_password_never_in_errors(server: Embedded, target_url: str) -> None:
    good = _with_password(target_url, _password(server))
    missing = with_database(good, "no_such_db")
    with pytest.raises(ConnectError, match="database does not exist") as err:
        db.connect(missing)
    assert _password(server) not in str(err.value)


def test_unreachable_host_names_the_fix() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connection refused
        with pytest.raises(ConnectError, match="nothing accepts connections there; start the server"):
            db.connect(f"postgresql://u:pw@127.0.0.1:{port}/x")


def test_resolve_url_uses_configured_target() -> None:
    s = Settings(target_url="postgresql://u:pw@h:5/db", source_url="postgresql://u@h/src")
    assert connections.resolve_url("target", settings=s) == "postgresql://u:pw@h:5/db"
    assert connections.resolve_url("source", settings=s) == "postgresql://u@h/src"
    with pytest.raises(ValueError, match="connection name 'other'"):
        connections.resolve_url("other", settings=s)


def test_a_command_probes_each_database_once(make_db, capsys) -> None:
    """The CLI resolves one Endpoint per database and hands it down: provisioning (plan,
    apply, the AC1-AC6 validation), the migration and the integrity suite probe the target
    once, and open no more connections than they need (the AC6 pool's 50 clients aside:
    that pool is what AC6 measures). Before: provision 3 probes, migrate 8 target and 5
    source connections."""
    from tsj_lab.cli import main
    from tsj_lab.data import generate
    from tsj_lab.domain import TickSpec

    tgt, src = make_db(timescale=False), make_db(timescale=False)
    generate.ensure_source(src, TickSpec(("ES",), "2024-01-02", days=1, interval_ms=60_000))
    key = {}
    for u in (tgt, src):
        with psycopg.connect(u, autocommit=True) as conn:
            key[u] = db.url_of(conn)

    def counts(*argv: str) -> tuple[int, dict[tuple[str, str], int]]:
        db.COUNTS.clear()
        rc = main(list(argv))
        capsys.readouterr()
        return rc, {(k, "target" if u == key[tgt] else "source"): n
                    for (k, u), n in db.COUNTS.items() if u in key.values()}

    rc, seen = counts("provision", "--target", tgt)  # creates the extension: probed again
    assert rc == 0 and seen[("probe", "target")] == 2 and seen[("connect", "target")] == 2, seen
    rc, seen = counts("provision", "--target", tgt)  # nothing to do now
    assert rc == 0 and seen == {("probe", "target"): 1, ("connect", "target"): 2}, seen
    # one connection per side for the run's single steps (preflight, plan, setup, history,
    # refresh, verification) and one pair for the one worker's batches
    rc, seen = counts("migrate", "--target", tgt, "--source", src, "--include-expired")
    assert rc == 0 and seen == {("probe", "target"): 1, ("connect", "target"): 2,
                                ("connect", "source"): 2}, seen
    rc, seen = counts("migrate", "--target", tgt, "--source", src, "--include-expired")
    assert rc == 0 and seen == {("probe", "target"): 1, ("connect", "target"): 1,
                                ("connect", "source"): 1}, seen  # nothing left to copy
    rc, seen = counts("check", "--target", tgt, "--source", src)
    assert rc in (0, 1) and seen == {("probe", "target"): 1, ("connect", "target"): 1,
                                     ("connect", "source"): 1}, seen
