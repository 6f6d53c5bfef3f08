"""The preflight before a migration: each item against the embedded source as its owner,
and against a Supabase-like restricted role (RLS, a statement_timeout, no REPLICATION)."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import psycopg
import pytest

from roles import drop_role, role_url

from tsj_lab import migrate
from tsj_lab.cli import main
from tsj_lab.data import generate
from tsj_lab.domain import TickSpec
from tsj_lab.errors import PreflightError, SchemaError
from tsj_lab.migrate import preflight
from tsj_lab.provision import schema
from tsj_lab.server.pooler import PgBouncer

SOURCE_ITEMS = ["server", "role", "row_security", "statement_timeout",
                "idle_in_transaction_session_timeout", "size", "index", "replication",
                "wal_level", "replication_slots", "pooler"]
TARGET_ITEMS = ["server", "hypertable", "role", "row_security", "statement_timeout",
                "idle_in_transaction_session_timeout", "pooler"]


def _pair(make_db: Callable[..., str]) -> tuple[str, str]:
    src, tgt = make_db(timescale=False), make_db(timescale=True)
    schema.create_source(src)
    schema.provision(tgt)
    generate.load(src, TickSpec(("ES", "NQ"), "2024-01-02", days=2, interval_ms=60_000),
                  workers=1)
    _exec(src, "ANALYZE tick_data")  # the size line's row estimate
    return src, tgt


def _exec(url: str, *statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for stmt in statements:
            conn.execute(stmt)


def _items(pf: preflight.Preflight, side: str) -> dict[str, preflight.Item]:
    return {i.item: i for i in pf.items if i.side == side}


def test_the_owner_of_the_embedded_source_passes_with_every_item(make_db, capsys) -> None:
    src, tgt = _pair(make_db)
    pf = preflight.check(src, tgt)
    assert [i.item for i in pf.items if i.side == "source"] == SOURCE_ITEMS
    assert [i.item for i in pf.items if i.side == "target"] == TARGET_ITEMS
    assert not pf.blockers, pf.blockers
    s, t = _items(pf, "source"), _items(pf, "target")
    assert s["server"].status == "ok" and s["server"].value.startswith("PostgreSQL 1")
    assert "SELECT on tick_data yes" in s["role"].value and "superuser yes" in s["role"].value
    assert s["row_security"].value == "off" and s["pooler"].value == "direct"
    assert s["statement_timeout"].value == "0 (none)" and s["statement_timeout"].status == "ok"
    assert "~5,760 rows, 2 day(s) with ticks, ~2,880 rows a day" in s["size"].value
    assert s["index"].status == "ok" and s["wal_level"].value in ("replica", "logical")
    assert "TimescaleDB" in t["server"].value and t["hypertable"].status == "ok"
    assert "INSERT, DELETE, CREATE on tick_data yes" in t["role"].value
    # the dry run prints the table before the counts, and writes nothing
    assert main(["migrate", "--source", src, "--target", tgt, "--include-expired",
                 "--dry-run"]) == 0
    out = capsys.readouterr().out
    for item in SOURCE_ITEMS + TARGET_ITEMS:
        assert f"  {item}  " in out or f"  {item} " in out, item
    assert out.index("preflight: ") < out.index("2024-01-02  ES") < out.index("nothing was written")


def test_a_restricted_supabase_role_gets_each_item_and_the_blocker(make_db, server,
                                                                  capsys) -> None:
    """SELECT only, RLS that shows it one symbol, Supabase's statement_timeout, an idle
    limit, no REPLICATION: the preflight names each, and the migration refuses to start."""
    src, tgt = _pair(make_db)
    role, password, as_role = role_url(src, server)
    _exec(src, f'GRANT SELECT ON tick_data TO "{role}"',
          "ALTER TABLE tick_data ENABLE ROW LEVEL SECURITY",
          f"""CREATE POLICY only_es ON tick_data FOR SELECT TO "{role}" USING (symbol = 'ES')""")
    _exec(server.url("postgres"), f"""ALTER ROLE "{role}" SET statement_timeout = '150ms'""",
          f"""ALTER ROLE "{role}" SET idle_in_transaction_session_timeout = '2s'""")
    try:
        pf = preflight.check(as_role, tgt)
        s = _items(pf, "source")
        assert list(s) == SOURCE_ITEMS
        assert s["role"].status == "ok" and s["role"].value == (
            f"'{role}': SELECT on tick_data yes, superuser no, BYPASSRLS no, REPLICATION no")
        rls = s["row_security"]
        assert rls.status == "blocker" and f"filters tick_data for role '{role}'" in rls.value
        assert "BYPASSRLS" in rls.fix and "'postgres' role" in rls.fix
        st = s["statement_timeout"]
        assert st.status == "warn" and st.value == f"150 ms for role '{role}'"
        assert f"""ALTER ROLE "{role}" SET statement_timeout = '15min'""" in st.fix
        assert s["idle_in_transaction_session_timeout"].value == f"0:00:02 for role '{role}'"
        assert s["replication"].status == "warn" and "REPLICATION" in s["replication"].fix
        assert [b.item for b in pf.blockers] == ["row_security"]
        with pytest.raises(SchemaError, match="row-level security filters table 'tick_data' "
                                              f"on the source for role '{role}'"):
            pf.require()
        # the dry run prints the table, then stops in one line; nothing is counted or written
        cli = ["migrate", "--source", as_role, "--target", tgt, "--include-expired"]
        assert main([*cli, "--dry-run"]) == 1
        out, err = capsys.readouterr()
        assert "row_security" in out and "blocker" in out and "150 ms" in out
        assert err.count("\n") == 1 and "row-level security" in err and "Traceback" not in err
        assert password not in out + err
        assert main(cli) == 1
        assert "row-level security" in capsys.readouterr().err
        with psycopg.connect(tgt) as conn:
            assert conn.execute("SELECT count(*) FROM tick_data").fetchone() == (0,)
        # the fix it names: BYPASSRLS; the timeout stays a warning, and the run is exact
        _exec(server.url("postgres"), f'ALTER ROLE "{role}" BYPASSRLS')
        pf = preflight.check(as_role, tgt)
        assert not pf.blockers and _items(pf, "source")["row_security"].value == (
            "on, bypassed by this role (BYPASSRLS)")
        res = migrate.run(as_role, tgt, include_expired=True, batch_size=1000)
        assert res.ok and res.copied_rows == 2 * 2 * 1440
    finally:
        drop_role(server, role, src)


def test_a_role_without_select_or_the_target_rights_is_a_blocker(make_db, server) -> None:
    src, tgt = _pair(make_db)
    role, _password, src_role = role_url(src, server)
    tgt_role = src_role.replace(urlsplit(src).path, urlsplit(tgt).path)
    _exec(tgt, f'GRANT SELECT ON tick_data TO "{role}"')
    try:
        pf = preflight.check(src_role, tgt_role)
        blockers = {(b.side, b.item): b for b in pf.blockers}
        assert set(blockers) == {("source", "role"), ("target", "role")}
        assert blockers[("source", "role")].fix == f'GRANT SELECT ON tick_data TO "{role}"'
        assert "INSERT, DELETE, CREATE on tick_data no" in blockers[("target", "role")].value
        with pytest.raises(PreflightError, match=r"source role: .*SELECT on tick_data no.*"
                                                 r"GRANT SELECT.*and 1 more blocker"):
            migrate.run(src_role, tgt_role, include_expired=True)
    finally:
        drop_role(server, role, src, tgt)


def test_through_a_pooler_the_item_says_so(make_db, pooler: PgBouncer) -> None:
    src, tgt = _pair(make_db)
    pf = preflight.check(pooler.through(src), pooler.through(tgt))
    for side in ("source", "target"):
        item = _items(pf, side)["pooler"]
        assert item.status == "ok" and item.value.startswith("a pooler on port"), item
        assert "prepared statements off" in item.value
    assert not pf.blockers
