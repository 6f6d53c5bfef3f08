"""Provisioning: idempotence, dry run, candles against raw ticks, validation, bad input.

Runs on the embedded server's timescale edition (built from source) and, for what only
Debian's apache build does (materialized-view candles), on the apache test instance.
The timescale-license DDL is also parsed with pglast.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql

from roles import drop_role, role_url

from tsj_lab.data import generate
from tsj_lab import queries
from tsj_lab.provision import schema
from tsj_lab.cli import main
from tsj_lab.config import with_params
from tsj_lab.domain import TickSpec
from tsj_lab.errors import SchemaError


@pytest.fixture(params=["timescale", "apache"])
def edition(request: pytest.FixtureRequest) -> tuple[str, Callable[..., str]]:
    """Each edition's name and its database factory."""
    factory = "make_db" if request.param == "timescale" else "make_apache_db"
    return request.param, request.getfixturevalue(factory)


def snapshot(url: str) -> list[tuple[str, str, bool]]:
    """Every relation of the public schema and whether tick_data is a hypertable."""
    with psycopg.connect(url, autocommit=True) as conn:
        rels = conn.execute(
            "SELECT c.relname::text, c.relkind::text, c.relispopulated FROM pg_class c "
            "WHERE c.relnamespace = 'public'::regnamespace ORDER BY 1").fetchall()
        hyper = conn.execute(
            "SELECT count(*) FROM timescaledb_information.hypertables").fetchone()
    return [*rels, ("hypertables", str(hyper[0]), True)]


def load_ticks(url: str, *, days: int = 1, start: str = "2026-01-05") -> int:
    # 2 symbols x 1 day at 20 s: 8,640 ticks, 3 per minute, so first/last matter.
    return generate.load(url,
                         TickSpec(["ES", "BTCUSD"], start, days=days, interval_ms=20_000, seed=7), workers=1,
                                  progress=False)


def count(url: str, query: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query).fetchone()[0]  # type: ignore[index]


# -- idempotence, dry run, validation -----------------------------------------------------


#: AC1-AC6 right after provisioning, by edition
PROVISIONED = {"timescale": ["ok"] * 6,
               "apache": ["ok", "ok", "unsupported", "ok", "unsupported", "ok"]}


def test_provision_twice_second_is_noop_and_validates(edition) -> None:
    name, make = edition
    url = make()
    first = schema.provision(url)
    assert first.changed and first.edition == f"timescaledb-{name}"
    assert {s.target for s in first.steps} >= {"tick_data", *schema.CANDLE_VIEWS}
    before = snapshot(url)
    second = schema.provision(url)
    assert not second.changed and second.steps == []
    assert second.summary().startswith("nothing to do")
    assert snapshot(url) == before

    rows = {r.ac: r for r in schema.validate(url)}
    assert [rows[ac].status for ac in ("AC1", "AC2", "AC3", "AC4", "AC5", "AC6")] == \
        PROVISIONED[name]
    # direct: each of the 50 clients is its own server connection
    assert rows["AC6"].mode == "native"
    assert "50 of 50 clients connected at once (direct), 50 server connections" in rows["AC6"].detail
    assert "500 queries, 0 errors" in rows["AC6"].detail
    assert schema.failed(list(rows.values())) == []
    if name == "apache":
        assert rows["AC4"].mode == "emulated" and "never refreshed" in rows["AC4"].detail
    else:  # the story's own queries agree
        assert "story's query: 1 row" in rows["AC2"].detail
        assert "story's query: 2 rows" in rows["AC3"].detail  # segmentby + orderby
        assert "story's query: 4 rows" in rows["AC4"].detail
        assert "policy job" in rows["AC3"].detail and "after 30 days;" in rows["AC3"].detail


def test_dry_run_prints_sql_and_touches_nothing(edition) -> None:
    url = edition[1]()
    before = snapshot(url)
    result = schema.provision(url, dry_run=True)
    assert result.dry_run and not result.changed and len(result.sql) == len(result.steps)
    assert any("create_hypertable(" in s for s in result.sql)
    assert any('CREATE MATERIALIZED VIEW IF NOT EXISTS "candle_1h"' in s for s in result.sql)
    assert snapshot(url) == before


# -- candles ----------------------------------------------------------------------------


def test_continuous_aggregates_equal_recompute_and_outlive_retention(
        make_db: Callable[..., str]) -> None:
    url = make_db()
    schema.provision(url)
    today = datetime.now(UTC).date()
    old, recent = (today - timedelta(days=95)).isoformat(), today - timedelta(days=3)
    assert load_ticks(url, start=old) + load_ticks(url, start=recent.isoformat()) == 2 * 8_640
    # a session in +05:30 must still get UTC-aligned buckets
    kolkata = with_params(url, options="-cTimeZone=Asia/Kolkata")
    done = schema.refresh_candles(kolkata)
    assert [r.view for r in done] == list(schema.CANDLE_VIEWS)
    assert {r.how for r in done} == {"window"}
    for view in schema.CANDLE_VIEWS:
        assert schema.candle_differences(url, view) == 0, view
        assert schema.candle_differences(url, view, against="candle_1m") == 0, view
    assert count(url, "SELECT count(*) FROM candle_1h "
                      "WHERE extract(epoch FROM bucket)::bigint % 3600 <> 0") == 0
    assert count(url, "SELECT count(*) FROM candle_1h") == 2 * 48

    # a tick below the materialized watermark shows only after a refresh
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO tick_data (time, symbol, last_price, volume) "
                     f"VALUES ('{old} 10:00:00.5+00', 'ES', 1, 1)")
    assert schema.candle_differences(url, "candle_1m") == 2
    schema.refresh_candles(url)
    for view in schema.CANDLE_VIEWS:
        assert schema.candle_differences(url, view) == 0, view

    # retention drops the old day's chunk; a back-fill over history keeps its candles,
    # where an unbounded refresh would delete them (TimescaleDB #2198)
    assert len(schema.apply_retention(url)) == 1
    done = schema.refresh_candles(url)
    assert [r.how for r in done] == ["window"] * 4
    assert count(url, f"SELECT count(*) FROM candle_1h WHERE bucket < '{old}'::date + 1") == 48
    assert count(url, "SELECT sum(tick_count) FROM candle_1m") == 2 * 8_640 + 1
    since = datetime.combine(recent, datetime.min.time(), UTC)
    for view in schema.CANDLE_VIEWS:
        assert schema.candle_differences(url, view, since=since) == 0, view
    # the control: a window reaching the dropped day deletes its candles
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CALL refresh_continuous_aggregate('candle_1m', NULL, NULL)")
    assert count(url, f"SELECT count(*) FROM candle_1m WHERE bucket < '{old}'::date + 1") == 0


def test_materialized_views_equal_recompute_from_ticks_and_from_1m(
        make_apache_db: Callable[..., str]) -> None:
    url = make_apache_db()
    schema.provision(url)
    assert load_ticks(url) == 8_640
    # a session in +05:30 must still get UTC-aligned buckets
    kolkata = with_params(url, options="-cTimeZone=Asia/Kolkata")
    done = schema.refresh_candles(kolkata)
    assert [r.view for r in done] == list(schema.CANDLE_VIEWS)
    assert {r.how for r in done} == {"full"}
    for view in schema.CANDLE_VIEWS:
        assert schema.candle_differences(url, view) == 0, view
        assert schema.candle_differences(url, view, against="candle_1m") == 0, view
    assert count(url, "SELECT sum(tick_count) FROM candle_1h") == 8_640
    assert count(url, "SELECT count(*) FROM candle_1h "
                      "WHERE extract(epoch FROM bucket)::bigint % 3600 <> 0") == 0
    assert count(url, "SELECT count(*) FROM candle_1h") == 48

    # a new tick makes the views stale (the comparison sees it); a refresh fixes them
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO tick_data (time, symbol, last_price, volume) "
                     "VALUES ('2026-01-05 10:00:00.5+00', 'ES', 1, 1)")
    assert schema.candle_differences(url, "candle_1m") == 2
    assert {r.how for r in schema.refresh_candles(url)} == {"full concurrently"}
    for view in schema.CANDLE_VIEWS:
        assert schema.candle_differences(url, view) == 0, view

    # without its unique index a populated view cannot refresh concurrently: one line
    # with the fix, which provisioning then applies
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP INDEX candle_5m_symbol_bucket_idx")
    with pytest.raises(SchemaError, match=r"refresh of 'candle_5m' failed: .*concurrently; "
                                          r"run 'tsj provision'"):
        schema.refresh_candles(url)
    assert [s.target for s in schema.provision(url).steps] == ["candle_5m_symbol_bucket_idx"]
    assert len(schema.refresh_candles(url)) == 4


def test_refresh_without_views_says_provision(make_db: Callable[..., str]) -> None:
    with pytest.raises(SchemaError, match="candle view 'candle_1m' not found; run 'tsj provision'"):
        schema.refresh_candles(make_db())


def test_retention_drops_old_chunks(make_db: Callable[..., str]) -> None:
    url = make_db()
    schema.provision(url)
    old = (datetime.now(UTC) - timedelta(days=120)).date().isoformat()
    load_ticks(url, start=old, days=2)
    load_ticks(url, start=datetime.now(UTC).date().isoformat())
    would = schema.apply_retention(url, dry_run=True)
    assert len(would) == 2
    assert count(url, "SELECT count(*) FROM tick_data") == 3 * 8_640
    assert schema.apply_retention(url) == would
    assert count(url, "SELECT count(*) FROM tick_data") == 8_640
    assert schema.apply_retention(url, older_than=timedelta(days=90)) == []


# -- bad input --------------------------------------------------------------------------


def test_provision_creates_the_extension_the_server_offers(make_db: Callable[..., str]) -> None:
    url = make_db(timescale=False)
    rows = schema.validate(url, pool_size=2)
    assert [r.status for r in rows] == ["ok", "fail", "fail", "fail", "fail", "ok"]
    assert "run 'tsj provision'" in rows[1].detail and "CREATE EXTENSION" in rows[1].detail
    dry = schema.provision(url, dry_run=True)
    assert [s.query for s in dry.steps] == ["schema.create_extension"]
    assert "planned once it exists" in dry.summary()
    assert count(url, "SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'") == 0
    result = schema.provision(url)
    assert result.steps[0].query == "schema.create_extension" and len(result.steps) == 15
    assert result.edition == "timescaledb-timescale"
    assert [r.status for r in schema.validate(url, pool_size=2)] == ["ok"] * 6


def test_a_role_that_may_not_create_the_extension_is_told_how(make_db: Callable[..., str],
                                                              server, capsys) -> None:
    url = make_db(timescale=False)
    role, password, as_role = role_url(url, server)
    try:
        with psycopg.connect(url, autocommit=True) as conn:  # PG 15+: no CREATE by default
            conn.execute(sql.SQL("REVOKE CREATE ON DATABASE {} FROM PUBLIC").format(
                sql.Identifier(urlsplit(url).path.lstrip("/"))))
        with pytest.raises(SchemaError, match=r"provisioning cannot create it \(permission "
                                              r"denied.*CREATE EXTENSION timescaledb;"):
            schema.provision(as_role)
        assert main(["provision", "--target", as_role]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("tsj: error:") and "\n" not in err and "CREATE EXTENSION" in err
        assert password not in err
        assert main(["validate", "--target", as_role]) == 1  # AC2-AC5 are failed rows
        assert "fail" in capsys.readouterr().out
    finally:
        drop_role(server, role, url)


def test_plain_table_with_rows_is_refused_then_migrated(make_db: Callable[..., str]) -> None:
    url = make_db()
    schema.create_source(url)
    rows = load_ticks(url)
    before = snapshot(url)
    with pytest.raises(SchemaError, match=r"plain table with 8640 rows.*--migrate-data"):
        schema.provision(url)
    with pytest.raises(SchemaError, match="--migrate-data"):
        schema.provision(url, dry_run=True)
    assert snapshot(url) == before
    result = schema.provision(url, migrate_data=True)
    assert "schema.create_hypertable_migrate_data" in [s.query for s in result.steps]
    assert count(url, "SELECT count(*) FROM tick_data") == rows
    assert count(url, "SELECT count(*) FROM timescaledb_information.chunks") == 1


def test_missing_privileges_are_named(make_db: Callable[..., str], server) -> None:
    url = make_db()
    role, password = f"r_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    admin = server.url("postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(password)))
    parts = urlsplit(url)
    role_url = f"postgresql://{role}:{password}@127.0.0.1:{parts.port}{parts.path}"
    try:
        with pytest.raises(SchemaError, match=rf"role '{role}' lacks CREATE on schema 'public'"):
            schema.provision(role_url)
        schema.create_source(url)  # tick_data now exists, owned by the superuser
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(role)))
        with pytest.raises(SchemaError, match=rf"role '{role}' does not own table 'public.tick_data'"):
            schema.provision(role_url)
        assert count(url, "SELECT count(*) FROM timescaledb_information.hypertables") == 0
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_retention_by_a_role_not_owning_tick_data_is_one_line(make_db: Callable[..., str],
                                                              server) -> None:
    url = make_db()
    schema.provision(url)
    load_ticks(url, start=(datetime.now(UTC) - timedelta(days=120)).date().isoformat())
    role, password = f"r_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    admin = server.url("postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(password)))
    parts = urlsplit(url)
    try:
        role_url = f"postgresql://{role}:{password}@127.0.0.1:{parts.port}{parts.path}"
        assert len(schema.apply_retention(role_url, dry_run=True)) == 1
        with pytest.raises(SchemaError, match=r"dropping chunks of 'tick_data' refused: .*owner"):
            schema.apply_retention(role_url)
        assert count(url, "SELECT count(*) FROM tick_data") == 8_640
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_pool_short_of_connections_is_a_failed_row(make_db: Callable[..., str], server) -> None:
    url = make_db()
    role, password = f"r_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    admin = server.url("postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} CONNECTION LIMIT 3").format(
            sql.Identifier(role), sql.Literal(password)))
    parts = urlsplit(url)
    try:
        rows = schema.validate(f"postgresql://{role}:{password}@127.0.0.1:{parts.port}{parts.path}",
                               pool_size=5, pool_timeout=2)
        ac6 = rows[-1]
        assert ac6.ac == "AC6" and ac6.status == "fail", ac6
        # the cause is the server's own word, and the fix names the limit
        assert "3 of 5 connections" in ac6.detail, ac6.detail
        assert "too many connections for role" in ac6.detail, ac6.detail
        assert "raise max_connections (server: 200)" in ac6.detail
        assert password not in ac6.detail
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


BAD = "postgresql://nobody@127.0.0.1:1/none"


@pytest.mark.parametrize("call, message", [
    (lambda: schema.apply_retention(BAD, older_than="ninety days"), "not an interval"),
    (lambda: schema.apply_retention(BAD, older_than="0 days"), "positive whole number"),
    (lambda: schema.apply_retention(BAD, older_than=timedelta(0)), "must be positive"),
    (lambda: schema.refresh_candles(BAD, start=datetime(2026, 1, 2, tzinfo=UTC),
                                    end=datetime(2026, 1, 1, tzinfo=UTC)),
     "is not before"),
    (lambda: schema.refresh_candles(BAD, start=datetime(2026, 1, 2)), "no time zone"),
    (lambda: schema.candle_differences(BAD, "candle_2m"), "unknown"),
    (lambda: schema.validate(BAD, pool_size=0), "at least 1"),
    (lambda: schema.validate(BAD, pool_timeout=0), "positive"),
])
def test_bad_values_fail_before_connecting(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


# -- CLI --------------------------------------------------------------------------------


def test_cli_provision_dry_run_then_provision_then_noop(make_db: Callable[..., str], capsys) -> None:
    url = make_db()
    assert main(["provision", "--target", url, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would apply 14 statements" in out and "CREATE MATERIALIZED VIEW" in out
    assert "tsj provision: postgresql://" in out  # the (redacted) target is named
    assert main(["provision", "--target", url, "--no-validate"]) == 0
    assert "applied 14 statements" in capsys.readouterr().out
    assert main(["provision", "--target", url]) == 0
    out = capsys.readouterr().out
    assert "nothing to do" in out and "AC6" in out


# -- the timescale-license DDL ----------------------------------------------------------


def timescale_blocks() -> list[str]:
    return [n for n in queries.names() if queries.get(n).file == "schema_timescale.sql"]


def test_timescale_ddl_parses_one_statement_per_block() -> None:
    pglast = pytest.importorskip("pglast")
    names = set(timescale_blocks()) - {"schema_timescale.continuous"}  # a WITH clause
    assert {"schema_timescale.add_candle_policy", "schema_timescale.enable_columnstore"} <= names
    for name in names:
        text = re.sub(r"%\((\w+)\)s", "NULL", queries.text(name))  # psycopg parameters
        stmts = pglast.parse_sql(text)
        assert len(stmts) == 1, name


@pytest.mark.parametrize("continuous", [False, True])
def test_every_candle_view_comes_from_one_of_two_blocks_and_parses(continuous: bool) -> None:
    pglast = pytest.importorskip("pglast")
    for candle in schema.CANDLES:
        block, parts = schema.candle_ddl(candle, continuous=continuous)
        assert block == ("schema.create_candles" if candle.name == "1m"
                         else "schema.create_candle_rollup")
        text = queries.compose(block, **dict(parts)).as_string(None)
        assert len(pglast.parse_sql(text)) == 1
        assert f"time_bucket('{candle.interval}'::interval" in text
        assert ("timescaledb.continuous" in text) is continuous
        assert f'CREATE MATERIALIZED VIEW IF NOT EXISTS "{candle.view}" ' in text
    flat = schema.candle_ddl(schema.CANDLES[3], continuous=True, flat=True, view="f",
                             materialized_only=True)
    text = queries.compose(flat[0], **dict(flat[1])).as_string(None)
    assert "FROM tick_data" in text and "materialized_only = true" in text


@pytest.fixture
def scoped_url(make_db: Callable[..., str]) -> str:
    """A database whose tick store lives in its own schema, the extension's (public)
    after it on the search_path, as a shared Timescale Cloud database may be laid out."""
    url = make_db()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA ticks")
    return with_params(url, options="-csearch_path=ticks,public")


def test_timescale_edition_in_its_own_schema(scoped_url: str) -> None:
    first = schema.provision(scoped_url)
    assert first.edition == "timescaledb-timescale" and first.changed
    assert not schema.provision(scoped_url).changed
    rows = {r.ac: r for r in schema.validate(scoped_url)}
    assert all(r.status == "ok" for r in rows.values()), rows
    load_ticks(scoped_url, start=(datetime.now(UTC).date() - timedelta(days=2)).isoformat())
    assert {r.how for r in schema.refresh_candles(scoped_url)} == {"window"}
    for view in schema.CANDLE_VIEWS:
        assert schema.candle_differences(scoped_url, view) == 0, view
        assert schema.candle_differences(scoped_url, view, against="candle_1m") == 0, view
    assert count(scoped_url, "SELECT count(*) FROM ticks.candle_1h") == 48
    assert count(scoped_url, "SELECT count(*) FROM pg_class WHERE relname = 'tick_data' "
                             "AND relnamespace = 'public'::regnamespace") == 0


def test_policies_other_than_the_storys_are_replaced_and_said(make_db: Callable[..., str]) -> None:
    url = make_db()
    schema.provision(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CALL remove_columnstore_policy('tick_data')")
        conn.execute("CALL add_columnstore_policy('tick_data', after => INTERVAL '7 days')")
        conn.execute("SELECT remove_retention_policy('tick_data')")
        conn.execute("SELECT add_retention_policy('tick_data', INTERVAL '30 days')")
        conn.execute("SELECT remove_continuous_aggregate_policy('candle_5m')")
        conn.execute("SELECT add_continuous_aggregate_policy('candle_5m', INTERVAL '3 days', "
                     "INTERVAL '1 hour', INTERVAL '1 hour')")
    rows = {r.ac: r for r in schema.validate(url, pool_size=2)}
    assert [rows[ac].status for ac in ("AC3", "AC4", "AC5")] == ["fail"] * 3
    assert "after 7 days" in rows["AC3"].detail and "drops after 30 days" in rows["AC5"].detail
    assert "candle_5m (start 3 days, end 1 hour, every 1 hour)" in rows["AC4"].detail
    result = schema.provision(url)
    said = [s.action for s in result.steps]
    assert said == [
        "remove columnstore policy after 7 days (the story's is 30 days)",
        "add columnstore policy after 30 days",
        "remove retention policy after 30 days (the story's is 90 days)",
        "add retention policy (90 days)",
        "remove refresh policy (start 3 days, end 1 hour, every 1 hour)",
        "add refresh policy (start 2 hours, end 5 minutes, every 5 minutes)"]
    assert [r.status for r in schema.validate(url, pool_size=2)] == ["ok"] * 6


def test_a_table_made_with_tsdb_hypertable_gets_the_storys_settings(
        make_db: Callable[..., str]) -> None:
    """2.23+: CREATE TABLE ... WITH (tsdb.hypertable) adds a columnstore policy of its own
    (after the chunk interval, 7 days by default): provisioning replaces it and says so."""
    url = make_db()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE tick_data (time timestamptz NOT NULL, symbol text NOT NULL, "
                     "bid_price numeric(20,8), ask_price numeric(20,8), last_price "
                     "numeric(20,8), volume bigint, source text, trade_id uuid, account_id uuid"
                     ") WITH (tsdb.hypertable, tsdb.partition_column = 'time', "
                     "tsdb.segmentby = 'symbol')")
        auto = conn.execute("SELECT config ->> 'compress_after' FROM timescaledb_information.jobs "
                            "WHERE proc_name = 'policy_compression'").fetchall()
    assert auto == [("7 days",)]
    said = [s.action for s in schema.provision(url).steps]
    assert said[:4] == ["set chunk interval 7 days -> 1 day (new chunks; existing ones keep theirs)",
                        "create index (symbol, time DESC)",
                        "set columnstore settings other than the story's to segmentby symbol, "
                        "orderby time DESC (chunks compressed from now on)",
                        "remove columnstore policy after 7 days (the story's is 30 days)"]
    rows = schema.validate(url, pool_size=2)
    assert [r.status for r in rows] == ["ok"] * 6, [r.detail for r in rows]


def _state(**over: object) -> schema._State:
    empty = dict(has_table=True, is_hypertable=True, chunk_interval=schema.CHUNK_INTERVAL,
                 compression_enabled=False, compress_story=False, views=frozenset(),
                 indexes=frozenset(),
                 compress_after=None, drop_after=None, candle_policies=())
    return schema._State(**(empty | over))  # type: ignore[arg-type]


@pytest.mark.parametrize("kinds, enable, policy", [
    ({"add_columnstore_policy": "p", "add_compression_policy": "f"},  # 2.18 .. 2.24
     "schema_timescale.enable_columnstore", "schema_timescale.add_columnstore_policy"),
    ({"add_compression_policy": "f"}, "schema_timescale.enable_compression",
     "schema_timescale.add_compression_policy"),
])
def test_timescale_plan_follows_the_servers_api(kinds: dict[str, str], enable: str,
                                                policy: str) -> None:
    steps = [s.query for s in schema._timescale_steps(_state(), kinds)]
    assert steps[:3] == [enable, policy, "schema_timescale.add_retention_policy"]
    creates = ["schema.create_candles"] + ["schema.create_candle_rollup"] * 3
    assert steps[3:] == [q for c in creates for q in (c, "schema_timescale.add_candle_policy")]
    done = _state(compression_enabled=True, compress_story=True,
                  compress_after=schema.COMPRESS_AFTER,
                  drop_after=schema.RETENTION, views=frozenset(schema.CANDLE_VIEWS),
                  candle_policies=tuple(schema.CANDLE_POLICIES.items()))
    assert schema._timescale_steps(done, kinds) == []


def test_dry_run_for_the_timescale_license_on_the_apache_server(
        make_apache_db: Callable[..., str], capsys) -> None:
    url = make_apache_db()
    schema.provision(url)  # tick_data and its index exist: only the license's own DDL remains
    before = snapshot(url)
    result = schema.provision(url, dry_run=True, for_license="timescale")
    assert result.edition == "timescaledb-timescale"
    # 2.19 has the procedure add_columnstore_policy: the columnstore API is chosen
    assert [s.query for s in result.steps][:3] == [
        "schema_timescale.enable_columnstore", "schema_timescale.add_columnstore_policy",
        "schema_timescale.add_retention_policy"]
    assert not [s for s in result.steps if s.query.startswith("schema.create_candle")]  # exist
    assert snapshot(url) == before
    with pytest.raises(ValueError, match="needs dry_run"):
        schema.provision(url, for_license="timescale")
    assert main(["provision", "--target", url, "--license", "timescale"]) == 1
    assert "add --dry-run" in capsys.readouterr().err
    assert main(["provision", "--target", make_apache_db(), "--dry-run",
                 "--license", "timescale"]) == 0
    out = capsys.readouterr().out
    assert "WITH (timescaledb.continuous, timescaledb.materialized_only = false)" in out
    assert "CALL add_columnstore_policy('tick_data', after => INTERVAL '30 days'" in out


def test_provision_runs_on_the_one_connection_it_is_handed(make_db: Callable[..., str]) -> None:
    url = make_db(timescale=False)  # the extension, the DDL and the check: all on conn
    with psycopg.connect(url, autocommit=True, application_name="tsj-handed") as conn:
        pid = conn.info.backend_pid
        seen: set[int] = set()
        real_execute = psycopg.Connection.execute

        def execute(self: psycopg.Connection, *args: object, **kwargs: object) -> object:
            seen.add(self.info.backend_pid)
            return real_execute(self, *args, **kwargs)  # type: ignore[arg-type]

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(psycopg.Connection, "execute", execute)
            result = schema.provision(conn)
        assert result.changed and result.steps[0].query == "schema.create_extension"
        assert seen == {pid} and not conn.closed  # no connection of its own; conn left open
        assert result.target == f"postgresql://{conn.info.user}@127.0.0.1:{conn.info.port}/" \
                                f"{conn.info.dbname}"
        assert not schema.provision(conn).changed
    with psycopg.connect(url) as conn, pytest.raises(ValueError, match="autocommit"):
        schema.provision(conn)


def test_candle_policies_cover_two_buckets_as_timescaledb_requires() -> None:
    """The story's 1 hour / 1 minute pair is valid for candle_1m only: on candle_1h its
    window is less than one bucket, and provisioning refuses it before any statement."""
    schema.check_candle_policies()  # the chosen ones
    story = schema.CandlePolicy(timedelta(hours=1), timedelta(minutes=1), timedelta(minutes=1))
    schema.check_candle_policies({"candle_1m": story})
    with pytest.raises(ValueError, match=r"candle_1h .* covers 0\.98 buckets of 1 hour; "
                                         r"TimescaleDB needs at least 2"):
        schema.check_candle_policies({"candle_1h": story})
