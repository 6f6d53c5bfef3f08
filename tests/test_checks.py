"""The integrity suite: nothing on clean generated data, exactly the planted rows otherwise.

One small generated data set (two symbols, three days at 60 s: a few thousand ticks) is
built once as a template database; each test works on its own copy (CREATE DATABASE ...
TEMPLATE), plants anomalies with plain SQL, and runs the suite.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from tsj_lab import checks
from tsj_lab.data import generate
from tsj_lab import queries
from tsj_lab.provision import schema
from tsj_lab.checks import CheckResult
from tsj_lab.cli import main
from tsj_lab.config import with_database
from tsj_lab.domain import TickSpec
from tsj_lab.server.cluster import TARGET_DB, Embedded

SYMBOLS = ["ES", "BTCUSD"]  # CME hours (daily halt, weekend) and 24x7
DAYS = 3
INTERVAL_MS = 60_000
# Recent days, so no chunk is past the 90-day retention, and none in the future.
START = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=DAYS + 1)
DAY2 = dt.datetime.combine(START + dt.timedelta(days=1), dt.time(), dt.UTC)


def _load(url: str) -> int:
    return generate.load(url, TickSpec(SYMBOLS, START, DAYS, INTERVAL_MS, sessions=True),
                         progress=False, workers=1)


@pytest.fixture(scope="module")
def template(server: Embedded) -> Iterator[tuple[str, str]]:
    """Names of a provisioned, loaded, refreshed target and a plain source with the same rows."""
    admin = server.url("postgres")
    names = (f"chk_tpl_{uuid.uuid4().hex[:8]}", f"chk_tsrc_{uuid.uuid4().hex[:8]}")
    with psycopg.connect(admin, autocommit=True) as conn:
        for name in names:
            conn.execute(f'CREATE DATABASE "{name}"')
    target, source = (with_database(server.url(TARGET_DB), n) for n in names)
    with psycopg.connect(target, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    schema.provision(target)
    schema.create_source(source)
    assert _load(target) == _load(source) > 2000
    schema.refresh_candles(target)
    # A template must have no session: TimescaleDB's scheduler connects to every database
    # with the extension, so close the templates to new sessions and end the open ones.
    with psycopg.connect(admin, autocommit=True) as conn:
        for name in names:
            conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = %s", [name])
    yield names
    with psycopg.connect(admin, autocommit=True) as conn:
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def copy(server: Embedded, template: tuple[str, str]) -> Iterator[Callable[[int], str]]:
    """``copy(0)``: a fresh copy of the template target (``copy(1)``: of the source)."""
    admin, made = server.url("postgres"), []

    def make(which: int = 0) -> str:
        name = f"chk_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(admin, autocommit=True) as conn:
            for attempt in range(20):
                try:
                    conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template[which]}"')
                    break
                except psycopg.errors.ObjectInUse:  # a session still on its way out
                    if attempt == 19:
                        raise
                    conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE datname = %s", [template[which]])
                    time.sleep(0.1)
        made.append(name)
        return with_database(server.url(TARGET_DB), name)

    yield make
    with psycopg.connect(admin, autocommit=True) as conn:
        for name in made:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _sql(url: str, *statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for s in statements:
            conn.execute(s)  # type: ignore[arg-type]  # test plants: fixed SQL text


def _rows(url: str, query: str) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query).fetchall()  # type: ignore[arg-type]


def _found(results: list[CheckResult], check: str) -> list[CheckResult]:
    return [r for r in results if r.check == check and r.status in ("warn", "fail")]


def _affected(results: list[CheckResult], check: str) -> int:
    return sum(r.rows_affected for r in _found(results, check))


def _sample_times(results: list[CheckResult], check: str) -> set[str]:
    return {s[0] for r in _found(results, check) for s in r.samples}


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat()


# -- clean data ---------------------------------------------------------------------------


def test_clean_generated_data_has_no_findings(copy: Callable[[int], str]) -> None:
    target, source = copy(0), copy(1)
    results = checks.run(target, source_url=source, progress=False)
    bad = [(r.check, r.status, r.observed, r.detail) for r in results
           if r.status not in ("ok", "unsupported")]
    assert bad == []
    names = {r.check for r in results}
    assert names == set(checks.SEVERITY)
    # compression is checked on the timescale edition (on apache it is reported
    # unsupported: test_apache_edition_reports_compression_unsupported)
    (comp,) = [r for r in results if r.check == "compression"]
    assert comp.status == "ok" and "segmentby symbol" in comp.observed
    assert checks.exit_status(results, strict=True) == 0
    frame = checks.run_all(target, source_url=source, progress=False, sample=20)
    assert list(frame.columns)[:3] == ["check", "status", "table"]
    assert set(frame.status) <= {"ok", "unsupported"}
    json.dumps([r.as_dict() for r in results], default=str)


# -- planted quality anomalies ------------------------------------------------------------

# Each plant touches BTCUSD ticks (24x7: there whatever the weekday) of day 2 that no
# other plant touches, by minute of the day.
_PLANTS = {
    "null_prices": [60, 61],
    "non_positive_prices": [90, 91],
    "negative_volume": [100],
    "crossed_quotes": [120, 121, 122],
    "last_outside_quote": [150, 151],
}
_ASSIGN = {
    "null_prices": "last_price = NULL",
    "non_positive_prices": "bid_price = 0",
    "negative_volume": "volume = -5",
    "crossed_quotes": "bid_price = ask_price + 0.25",
    "last_outside_quote": "last_price = ask_price + 1.25",
}


def _at(minute: int) -> str:
    return _iso(DAY2 + dt.timedelta(minutes=minute))


def test_planted_anomalies_are_found_exactly(copy: Callable[[int], str]) -> None:
    url = copy(0)
    for check, minutes in _PLANTS.items():
        for m in minutes:
            _sql(url, f"UPDATE tick_data SET {_ASSIGN[check]} "
                      f"WHERE symbol = 'BTCUSD' AND time = '{_at(m)}'")
    # duplicates: three ticks copied once each -> three extra copies
    dup_minutes = [300, 301, 420]
    for m in dup_minutes:
        _sql(url, f"INSERT INTO tick_data SELECT * FROM tick_data "
                  f"WHERE symbol = 'BTCUSD' AND time = '{_at(m)}'")
    # a 20-minute outage of BTCUSD at 10:00 (20 ticks missing: one gap)
    _sql(url, f"DELETE FROM tick_data WHERE symbol = 'BTCUSD' "
              f"AND time >= '{_at(600)}' AND time < '{_at(620)}'")
    # two ticks dated tomorrow (their own symbol, so no gap joins them to the rest)
    _sql(url, "INSERT INTO tick_data (time, symbol, bid_price, ask_price, last_price, volume) "
              "VALUES (now() + interval '1 day', 'XFUT', 10, 11, 10, 1), "
              "(now() + interval '1 day 1 minute', 'XFUT', 10, 11, 11, 1)")
    # implausible times: an epoch mix-up, a year typo, infinity (-infinity: refused)
    _sql(url, "INSERT INTO tick_data (time, symbol, bid_price, ask_price, last_price, volume) "
              "SELECT t::timestamptz, 'BTCUSD', 10, 11, 10, 1 FROM unnest(ARRAY["
              "'1900-01-01 00:00+00', '20000-01-01 00:00+00', 'infinity']) t")
    # a time-zone mistake: 30 BTCUSD ticks from 03:00 written one hour late (04:00..04:29)
    _sql(url, f"UPDATE tick_data SET time = time + interval '1 hour' WHERE symbol = 'BTCUSD' "
              f"AND time >= '{_at(180)}' AND time < '{_at(210)}'")

    results = checks.run(url, progress=False)

    for check, minutes in _PLANTS.items():
        assert _affected(results, check) == len(minutes), check
        assert {r.symbol for r in _found(results, check)} == {"BTCUSD"}, check
        assert _sample_times(results, check) == {_at(m) for m in minutes}, check
    assert _affected(results, "duplicate_ticks") == 3
    assert _sample_times(results, "duplicate_ticks") == {_at(m) for m in dup_minutes}
    assert _affected(results, "future_ticks") == 2
    assert {r.symbol for r in _found(results, "future_ticks")} == {"XFUT"}
    assert _affected(results, "implausible_times") == 3
    assert _sample_times(results, "implausible_times") == {
        "1900-01-01T00:00:00+00:00", "20000-01-01T00:00:00+00:00", "infinity"}
    shifts = _found(results, "hour_shifts")
    assert [(r.symbol, r.rows_affected) for r in shifts] == [("BTCUSD", 30)]
    assert shifts[0].status == "fail" and "+1 h" in shifts[0].observed
    assert _sample_times(results, "hour_shifts") == {_at(m) for m in range(240, 245)}
    # gaps: the outage, and the hole the shifted ticks left behind
    gaps = _found(results, "gaps")
    assert _affected(results, "gaps") == 2 and {r.symbol for r in gaps} == {"BTCUSD"}
    assert {s[0] for r in gaps for s in r.samples} == {_at(599), _at(179)}
    assert checks.exit_status(results) == 1


@pytest.mark.parametrize("hours", [1, -2])
def test_a_whole_day_written_in_local_time_is_found_whole(copy: Callable[[int], str],
                                                          hours: int) -> None:
    url = copy(0)
    day = _rows(url, f"SELECT count(*) FROM tick_data WHERE symbol = 'BTCUSD' AND time >= "
                     f"'{_iso(DAY2)}' AND time < '{_iso(DAY2 + dt.timedelta(days=1))}'")[0][0]
    # (moved by delete and insert: an UPDATE cannot move a row to another chunk)
    _sql(url, f"WITH moved AS (DELETE FROM tick_data WHERE symbol = 'BTCUSD' "
              f"AND time >= '{_iso(DAY2)}' AND time < '{_iso(DAY2 + dt.timedelta(days=1))}' "
              "RETURNING *) INSERT INTO tick_data SELECT time + interval "
              f"'{hours} hours', symbol, bid_price, ask_price, last_price, volume, source, "
              "trade_id, account_id FROM moved")
    (shift,) = _found(checks.run(url, progress=False), "hour_shifts")
    assert (shift.symbol, shift.rows_affected, shift.status) == ("BTCUSD", day, "fail")
    assert f"{hours:+d} h" in shift.observed
    # samples: the shifted ticks next to the hole, never the originals they collided with
    edge = DAY2 + dt.timedelta(hours=hours) if hours > 0 else (
        DAY2 + dt.timedelta(days=1, hours=hours, minutes=-1))
    step = dt.timedelta(minutes=1 if hours > 0 else -1)
    assert [s[0] for s in shift.samples] == [_iso(edge + i * step) for i in range(5)]


def test_strict_fails_on_warnings_only(copy: Callable[[int], str]) -> None:
    url = copy(0)
    _sql(url, f"UPDATE tick_data SET bid_price = ask_price + 0.25 "
              f"WHERE symbol = 'BTCUSD' AND time = '{_at(30)}'")
    results = checks.run(url, progress=False)
    assert checks.worst(results) == "warn"
    assert checks.exit_status(results) == 0
    assert checks.exit_status(results, strict=True) == 1


def test_last_within_the_tolerance_is_not_outside_the_quote(copy: Callable[[int], str]) -> None:
    url = copy(0)
    _sql(url, f"UPDATE tick_data SET last_price = ask_price * 1.0005 "
              f"WHERE symbol = 'BTCUSD' AND time = '{_at(40)}'",
         f"UPDATE tick_data SET last_price = ask_price * 1.02 "
         f"WHERE symbol = 'BTCUSD' AND time = '{_at(41)}'")
    assert _sample_times(checks.run(url, progress=False), "last_outside_quote") == {
        _at(40), _at(41)}
    tolerant = checks.run(url, progress=False, last_tolerance=0.001)  # 0.1% of the price
    assert _affected(tolerant, "last_outside_quote") == 1
    assert _sample_times(tolerant, "last_outside_quote") == {_at(41)}


def test_session_breaks_are_not_gaps(copy: Callable[[int], str]) -> None:
    url = copy(0)
    assert _affected(checks.run(url, progress=False), "gaps") == 0
    # Without the halt window and the weekend rule, a CME halt is a gap only if it does not
    # recur (the days in the data depend on today's weekday): always 22:00 -> 23:00 of ES.
    for r in _found(checks.run(url, progress=False, breaks=(), weekends=False), "gaps"):
        assert r.symbol == "ES"
        assert all(s[0].endswith("21:59:00+00:00") and s[2] == 3660 for s in r.samples)
    # The break windows apply to every symbol: a BTCUSD outage inside one is excused.
    _sql(url, f"DELETE FROM tick_data WHERE symbol = 'BTCUSD' "
              f"AND time > '{_at(21 * 60 + 30)}' AND time < '{_at(21 * 60 + 50)}'")
    assert _affected(checks.run(url, progress=False), "gaps") == 0
    found = _found(checks.run(url, progress=False, breaks=()), "gaps")
    assert [(r.symbol, r.rows_affected) for r in found if r.symbol == "BTCUSD"] == [("BTCUSD", 1)]


def test_a_break_window_may_wrap_midnight(copy: Callable[[int], str]) -> None:
    url = copy(0)
    midnight = DAY2 + dt.timedelta(days=1)
    _sql(url, f"DELETE FROM tick_data WHERE symbol = 'BTCUSD' "
              f"AND time >= '{_iso(midnight - dt.timedelta(minutes=30))}' "
              f"AND time < '{_iso(midnight + dt.timedelta(minutes=30))}'")

    def btc_gaps(**options: Any) -> int:
        found = _found(checks.run(url, progress=False, **options), "gaps")
        return sum(r.rows_affected for r in found if r.symbol == "BTCUSD")

    assert btc_gaps() == 1
    assert btc_gaps(breaks=("22:00-01:00",)) == 0
    assert btc_gaps(breaks=("00:10-01:00",)) == 1  # the outage starts before the window


def test_an_outage_of_every_symbol_at_once_is_a_gap_for_each(copy: Callable[[int], str]) -> None:
    url = copy(0)
    # a day on which ES trades at 10:00 (three days in a row always hold a weekday)
    (t0,) = _rows(url, "SELECT min(time) FROM tick_data WHERE symbol = 'ES' "
                       "AND extract(hour FROM time AT TIME ZONE 'UTC') = 10")[0]
    _sql(url, f"DELETE FROM tick_data WHERE time >= '{_iso(t0)}' "
              f"AND time < '{_iso(t0 + dt.timedelta(minutes=20))}'")
    found = _found(checks.run(url, progress=False), "gaps")
    assert sorted((r.symbol, r.rows_affected) for r in found) == [("BTCUSD", 1), ("ES", 1)]


def test_a_symbol_without_a_step_still_has_its_duplicates_counted(
        copy: Callable[[int], str]) -> None:
    url = copy(0)
    _sql(url, "INSERT INTO tick_data (time, symbol, bid_price, ask_price, last_price, volume) "
              "SELECT now() - interval '1 hour', 'XDUP', 10, 11, 10, 1 FROM generate_series(1, 3)")
    results = checks.run(url, progress=False)
    (dup,) = _found(results, "duplicate_ticks")
    assert (dup.symbol, dup.rows_affected) == ("XDUP", 2)
    assert "XDUP unknown" in next(r for r in results if r.check == "gaps").detail


# -- reconciliation -----------------------------------------------------------------------


def test_reconcile_names_each_differing_day(copy: Callable[[int], str]) -> None:
    target, source = copy(0), copy(1)
    day1, day3 = DAY2 - dt.timedelta(days=1), DAY2 + dt.timedelta(days=1)
    _sql(target,
         # two BTCUSD ticks lost on day 1
         f"DELETE FROM tick_data WHERE symbol = 'BTCUSD' AND time IN "
         f"('{_iso(day1 + dt.timedelta(minutes=5))}', '{_iso(day1 + dt.timedelta(minutes=6))}')",
         # one BTCUSD tick altered on day 2 (same count: only the checksum and volume differ)
         f"UPDATE tick_data SET volume = volume + 1 WHERE symbol = 'BTCUSD' AND time = '{_at(7)}'",
         # one BTCUSD tick doubled on day 3
         f"INSERT INTO tick_data SELECT * FROM tick_data WHERE symbol = 'BTCUSD' "
         f"AND time = '{_iso(day3 + dt.timedelta(minutes=8))}'")
    results = checks.run(target, source_url=source, progress=False)
    found = _found(results, "reconcile")
    assert [(r.symbol, r.day, r.rows_affected, r.status) for r in found] == [
        ("BTCUSD", day1.date(), 2, "fail"), ("BTCUSD", DAY2.date(), 1, "fail"),
        ("BTCUSD", day3.date(), 1, "fail")]
    assert {s[0] for s in found[1].samples} == {"volume", "checksum"}
    # rows the migration quarantined are accounted for: a warning that names them, not a fail
    _sql(target, queries.text("migrate.create_quarantine"),
         "WITH moved AS (DELETE FROM tick_data WHERE symbol = 'ES' AND time = "
         "(SELECT max(time) FROM tick_data WHERE symbol = 'ES') RETURNING *) "
         "INSERT INTO tsj_migration_quarantine "
         "SELECT *, 'numeric field overflow' FROM moved")
    found = _found(checks.run(target, source_url=source, progress=False), "reconcile")
    (held,) = [r for r in found if r.symbol == "ES"]
    assert (held.status, held.rows_affected) == ("warn", 1) and "quarantine" in held.detail
    assert len(found) == 4
    # reconciling the source with itself is clean; no source is reported, not skipped
    assert _found(checks.run(target, source_url=target, progress=False), "reconcile") == []
    (none,) = [r for r in checks.run(target, progress=False) if r.check == "reconcile"]
    assert none.status == "unsupported" and "--source" in none.detail


# -- candles ------------------------------------------------------------------------------


def test_candles_stale_and_wrong_buckets_are_found(copy: Callable[[int], str]) -> None:
    url = copy(0)
    # after the refresh: three ticks inside one existing minute of BTCUSD
    t = DAY2 + dt.timedelta(hours=5, seconds=10)
    _sql(url, "INSERT INTO tick_data (time, symbol, bid_price, ask_price, last_price, volume) "
              f"SELECT '{_iso(t)}'::timestamptz + n * interval '1 second', 'BTCUSD', "
              "bid_price, ask_price, last_price, 1 FROM tick_data, generate_series(1, 3) n "
              f"WHERE symbol = 'BTCUSD' AND time = '{_at(300)}'")
    results = checks.run(url, progress=False)
    wrong = _found(results, "candle_recompute")
    assert sorted((r.table, r.rows_affected) for r in wrong) == sorted(
        (v, 1) for v in schema.CANDLE_VIEWS)
    sample_1m = next(r for r in wrong if r.table == "candle_1m").samples[0]
    assert sample_1m[:2] == [_at(300), "BTCUSD"]
    assert _found(results, "candle_rollup") == []  # the views still agree with each other
    assert _found(results, "candle_freshness") == []
    # a sampled comparison as large as the view finds the same bucket
    sampled = checks.run(url, progress=False, sample=100_000)
    assert _affected(sampled, "candle_recompute") == 4
    # ticks after the last refreshed bucket: the real-time tail of the continuous
    # aggregates shows them before any refresh (stale views: the apache test below)
    _sql(url, "INSERT INTO tick_data (time, symbol, bid_price, ask_price, last_price, volume) "
              "SELECT max(time) + interval '2 hours', 'BTCUSD', 1, 2, 1, 1 FROM tick_data "
              "WHERE symbol = 'BTCUSD'")
    tail = checks.run(url, progress=False)
    assert _found(tail, "candle_freshness") == []
    assert _affected(tail, "candle_recompute") == 4  # the planted minute, not the tail
    schema.refresh_candles(url)
    after = checks.run(url, progress=False)
    assert _found(after, "candle_freshness") == [] and _found(after, "candle_recompute") == []


def test_apache_edition_stale_views_and_compression_unsupported(
        make_apache_db: Callable[..., str]) -> None:
    """Materialized views show what their last refresh saw: newer ticks make them stale."""
    url = make_apache_db()
    schema.provision(url)
    _load(url)
    schema.refresh_candles(url)
    clean = checks.run(url, progress=False)
    assert [r.check for r in clean if r.status not in ("ok", "unsupported")] == []
    (comp,) = [r for r in clean if r.check == "compression"]
    assert comp.status == "unsupported" and "apache" in comp.detail
    _sql(url, "INSERT INTO tick_data (time, symbol, bid_price, ask_price, last_price, volume) "
              "SELECT max(time) + interval '2 hours', 'BTCUSD', 1, 2, 1, 1 FROM tick_data "
              "WHERE symbol = 'BTCUSD'")
    stale = _found(checks.run(url, progress=False), "candle_freshness")
    assert {r.table for r in stale} == set(schema.CANDLE_VIEWS)
    assert all(r.status == "warn" for r in stale)
    schema.refresh_candles(url)
    after = checks.run(url, progress=False)
    assert _found(after, "candle_freshness") == [] and _found(after, "candle_recompute") == []


# -- layout -------------------------------------------------------------------------------


def test_layout_chunk_interval_and_retention(make_db: Callable[..., str]) -> None:
    url = make_db(timescale=True)
    _sql(url, "CREATE TABLE tick_data (time timestamptz NOT NULL, symbol text NOT NULL, "
              "bid_price numeric(20,8), ask_price numeric(20,8), last_price numeric(20,8), "
              "volume bigint, source text, trade_id uuid, account_id uuid)",
         "SELECT create_hypertable('tick_data', 'time', chunk_time_interval => interval '2 days')",
         "INSERT INTO tick_data (time, symbol, bid_price, ask_price, last_price, volume) "
         "VALUES (now() - interval '200 days', 'ES', 1, 2, 1, 1), "
         "(now() - interval '1 day', 'ES', 1, 2, 1, 1)")
    results = checks.run(url, progress=False)
    (interval,) = [r for r in results if r.check == "chunk_interval"]
    assert interval.status == "fail" and interval.observed == "2 days"
    (retention,) = _found(results, "retention")
    assert retention.rows_affected == 1 and retention.status == "warn"
    # candle views missing: reported as failures, with the fix
    missing = _found(results, "candle_recompute")
    assert {r.table for r in missing} == set(schema.CANDLE_VIEWS)
    assert all("tsj provision" in r.detail for r in missing)


def test_layout_reads_only_the_checked_table(make_db: Callable[..., str]) -> None:
    # a tick_data hypertable in another schema, 2-day chunks, one past retention
    url = make_db(timescale=True)
    schema.provision(url)
    _sql(url, "CREATE SCHEMA other", "CREATE TABLE other.tick_data (LIKE public.tick_data)",
         "SELECT create_hypertable('other.tick_data', 'time', "
         "chunk_time_interval => interval '2 days')",
         "INSERT INTO other.tick_data (time, symbol) VALUES (now() - interval '200 days', 'ES')")
    results = checks.run(url, progress=False)
    (interval,) = [r for r in results if r.check == "chunk_interval"]
    assert (interval.status, interval.observed) == ("ok", "1 day")
    assert _found(results, "retention") == []


def test_plain_table_and_bad_options(make_db: Callable[..., str]) -> None:
    with pytest.raises(ValueError, match="gap_multiple"):
        checks.run("postgresql://nobody@127.0.0.1:1/x", gap_multiple=0)
    with pytest.raises(ValueError, match="HH:MM"):
        checks.Options(breaks=("22h-23h",))
    url = make_db(timescale=True)
    with pytest.raises(checks.SchemaError, match="tsj provision"):
        checks.run(url, progress=False)
    # a tick_data without the story's columns: the step and the cause, not a traceback
    odd = make_db(timescale=True)
    _sql(odd, "CREATE TABLE tick_data (time timestamptz NOT NULL, symbol text, price numeric)",
         "INSERT INTO tick_data VALUES (now(), 'ES', 1)")
    with pytest.raises(checks.SchemaError, match=r"check step '\w+' failed on table "
                                                 r"'tick_data': column \"\w+\" does not exist"):
        checks.run(odd, progress=False)
    # a plain PostgreSQL target: named, with how to enable the extension
    plain = make_db(timescale=False)
    with pytest.raises(checks.SchemaError,
                       match=r"database at postgresql://.* has no timescaledb extension; "
                             r"run 'tsj provision' .*'CREATE EXTENSION timescaledb;'"):
        checks.run(plain, progress=False)


# -- the command --------------------------------------------------------------------------


def test_cli_exit_status_and_json(copy: Callable[[int], str], capsys: pytest.CaptureFixture[str]
                                  ) -> None:
    url, source = copy(0), copy(1)
    assert main(["check", "--target", url, "--source", source, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "ok" and out["results"][0]["check"] == "chunk_interval"
    _sql(url, f"UPDATE tick_data SET bid_price = ask_price + 0.25 "
              f"WHERE symbol = 'BTCUSD' AND time = '{_at(30)}'")
    assert main(["check", "--target", url, "--no-source"]) == 0
    assert "crossed_quotes" in capsys.readouterr().out
    assert main(["check", "--target", url, "--no-source", "--strict"]) == 1
    _sql(url, f"UPDATE tick_data SET volume = -1 WHERE symbol = 'BTCUSD' AND time = '{_at(31)}'")
    assert main(["check", "--target", url, "--no-source", "--sample", "10"]) == 1
    capsys.readouterr()
    assert main(["check", "--target", url, "--no-source", "--sample", "-1"]) == 1
    assert "sample" in capsys.readouterr().err


# -- self-sufficient runs -----------------------------------------------------------------


def test_prepare_fills_only_empty_databases(make_db: Callable[..., str]) -> None:
    target, source = make_db(timescale=True), make_db(timescale=False)
    done = checks.prepare(target, source_url=source, days=1, interval_ms=60_000)
    assert done.target_rows == done.source_rows > 0 and done.source_url == source
    assert checks.worst(checks.run(target, source_url=source, progress=False)) == "ok"
    again = checks.prepare(target, source_url=source)
    assert (again.target_rows, again.source_rows, again.source_url) == (0, 0, source)
    # a target with ticks and an empty source: the source is left out, and said why
    empty = make_db(timescale=False)
    alone = checks.prepare(target, source_url=empty)
    assert alone.source_url is None and "tsj migrate" in alone.note
    assert not generate.holds_ticks(empty)
    # an empty target next to a source with ticks stays empty: migrate first
    fresh = make_db(timescale=True)
    waiting = checks.prepare(fresh, source_url=source)
    assert waiting.target_rows == 0 and "tsj migrate" in waiting.note
    assert not generate.holds_ticks(fresh)


def test_compression_rules_on_a_timescale_license(make_db: Callable[..., str]) -> None:
    assert schema.story_compression("symbol", '"time" DESC')
    assert not schema.story_compression("symbol", "time")
    assert not schema.story_compression(None, None)
    url = make_db(timescale=True)
    schema.provision(url)

    def compression() -> CheckResult:
        with psycopg.connect(url, autocommit=True) as conn:
            ctx = checks._Run(conn, checks.Options(), "timescale", None)
            checks.check_layout(ctx)
        (comp,) = [r for r in ctx.results if r.check == "compression"]
        return comp

    assert compression().status == "ok"
    # an old chunk the policy has not compressed yet: a finding, until the job runs
    old = (dt.datetime.now(dt.UTC) - dt.timedelta(days=40)).date()
    generate.load(url, TickSpec(["ES"], old, days=1, interval_ms=60_000), progress=False, workers=1,
                  direct=False)  # plain: the loader would write it compressed
    late = compression()
    assert late.status == "warn" and late.rows_affected == 1 and "not run" in late.detail
    with psycopg.connect(url, autocommit=True) as conn:
        job = conn.execute("SELECT job_id FROM timescaledb_information.jobs "
                           "WHERE proc_name = 'policy_compression'").fetchone()[0]
        conn.execute("CALL run_job(%s)", [job])
    assert compression().status == "ok"
    # settings other than the story's
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT decompress_chunk(c) FROM show_chunks('tick_data') c")
        conn.execute("ALTER TABLE tick_data SET (timescaledb.compress_orderby = 'time')")
    wrong = compression()
    assert wrong.status == "fail" and "tsj provision" in wrong.detail


# -- compressed chunks, real-time tails, jobs (issue 12) --------------------------------


def test_checks_read_compressed_chunks(copy: Callable[[int], str]) -> None:
    target, source = copy(0), copy(1)
    _sql(target, "SELECT compress_chunk(c) FROM show_chunks('tick_data') c")
    assert _rows(target, "SELECT bool_and(is_compressed) FROM timescaledb_information.chunks "
                         "WHERE hypertable_name = 'tick_data'") == [(True,)]
    clean = checks.run(target, source_url=source, progress=False)
    assert [(r.check, r.observed) for r in clean if r.status not in ("ok", "unsupported")] == []
    (rec,) = [r for r in clean if r.check == "reconcile"]
    assert rec.observed.startswith(f"{2 * DAYS} symbol-days")
    # planted inside compressed chunks: a changed volume, a negative one
    _sql(target,
         f"UPDATE tick_data SET volume = volume + 1 WHERE symbol = 'BTCUSD' AND time = '{_at(7)}'",
         f"UPDATE tick_data SET volume = -5 WHERE symbol = 'BTCUSD' AND time = '{_at(100)}'",
         "SELECT compress_chunk(c) FROM show_chunks('tick_data') c")  # recompressed: no tail
    found = checks.run(target, source_url=source, progress=False)
    assert [(r.symbol, r.day, r.status) for r in _found(found, "reconcile")] == [
        ("BTCUSD", DAY2.date(), "fail")]
    assert _sample_times(found, "negative_volume") == {_at(100)}


def _materialized(url: str, view: str) -> str:
    (schema_name, table), = _rows(url, "SELECT materialization_hypertable_schema, "
                                       "materialization_hypertable_name FROM "
                                       "timescaledb_information.continuous_aggregates "
                                       f"WHERE view_name = '{view}'")
    return f'"{schema_name}"."{table}"'


def test_candle_check_reads_the_real_time_tail_and_the_materialized_part(
        copy: Callable[[int], str]) -> None:
    url = copy(0)
    # three ticks in three minutes after the last refresh: only real-time aggregation shows them
    _sql(url, "INSERT INTO tick_data (time, symbol, bid_price, ask_price, last_price, volume) "
              "SELECT max(time) + interval '2 hours' + n * interval '1 minute', 'BTCUSD', "
              "1, 2, 1.5, n FROM tick_data, generate_series(1, 3) n WHERE symbol = 'BTCUSD' "
              "GROUP BY n")
    results = checks.run(url, progress=False)
    one = next(r for r in results if r.check == "candle_recompute" and r.table == "candle_1m")
    assert one.status == "ok" and "3 bucket(s) from then on aggregated in real time" in one.detail
    assert _found(results, "candle_freshness") == []
    # served materialized-only, the view would miss those 3 candles: the check says so
    _sql(url, "ALTER MATERIALIZED VIEW candle_1m SET (timescaledb.materialized_only = true)")
    only = next(r for r in _found(checks.run(url, progress=False), "candle_recompute")
                if r.table == "candle_1m")
    assert only.rows_affected == 3 and "materialized only" in only.detail
    _sql(url, "ALTER MATERIALIZED VIEW candle_1m SET (timescaledb.materialized_only = false)")
    # a wrong candle in the materialized part (the tail still right)
    mat = _materialized(url, "candle_1m")
    _sql(url, f"UPDATE {mat} SET close = close + 1 WHERE symbol = 'BTCUSD' "
              f"AND bucket = '{_at(30)}'")
    wrong = next(r for r in _found(checks.run(url, progress=False), "candle_recompute")
                 if r.table == "candle_1m")
    assert wrong.status == "fail" and wrong.rows_affected == 1
    assert "(1 materialized, 0 in the real-time tail)" in wrong.observed
    assert wrong.samples[0][:2] == [_at(30), "BTCUSD"]


def test_a_job_whose_last_run_failed_fails_the_layout(copy: Callable[[int], str],
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    from tsj_lab.checks import policies

    url = copy(0)
    _sql(url, "CREATE TABLE tsj_fail_switch (fail boolean)",
         "INSERT INTO tsj_fail_switch VALUES (true)",
         "CREATE PROCEDURE tsj_nightly(job_id int, config jsonb) LANGUAGE plpgsql AS $$ "
         "BEGIN IF (SELECT fail FROM tsj_fail_switch) THEN "
         "RAISE EXCEPTION 'disk quota exceeded on /archive'; END IF; END $$")
    ((job,),) = _rows(url, "SELECT add_job('tsj_nightly', '1 day')")
    with psycopg.connect(url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.RaiseException):
            policies.run_job(conn, job)
    (bad,) = _found(checks.run(url, progress=False), "jobs")
    assert bad.status == "fail" and "\n" not in bad.detail
    assert f"job {job} (public.tsj_nightly) last run failed: disk quota exceeded" in bad.detail
    assert f"CALL run_job({job})" in bad.detail
    assert main(["check", "--target", url, "--no-source"]) == 1
    assert "disk quota exceeded" in capsys.readouterr().out
    # fixed and run again: the last run succeeded, the check passes
    _sql(url, "UPDATE tsj_fail_switch SET fail = false")
    with psycopg.connect(url, autocommit=True) as conn:
        policies.run_job(conn, job)
    (ok,) = [r for r in checks.run(url, progress=False) if r.check == "jobs"]
    assert ok.status == "ok" and "none failed" in ok.observed


def test_a_failed_scheduler_run_is_read_from_job_stats_and_job_errors(
        copy: Callable[[int], str]) -> None:
    """What TimescaleDB's scheduler records of a failed run (the embedded server runs no
    scheduler, so the test writes its two rows): the check fails with the job's error;
    a newer successful run (tsj's CALL run_job) clears it."""
    from tsj_lab.checks import policies

    url = copy(0)
    ((job,),) = _rows(url, "SELECT job_id FROM timescaledb_information.jobs "
                           "WHERE proc_name = 'policy_compression'")
    _sql(url,
         "INSERT INTO _timescaledb_internal.bgw_job_stat (job_id, last_start, last_finish, "
         "next_start, last_successful_finish, last_run_success, total_runs, total_duration, "
         "total_duration_failures, total_successes, total_failures, total_crashes, "
         "consecutive_failures, consecutive_crashes) VALUES "
         f"({job}, now() - interval '1 hour', now() - interval '59 minutes', now(), "
         "'-infinity', false, 1, '1 minute', '1 minute', 0, 1, 0, 1, 0)",
         "INSERT INTO _timescaledb_internal.bgw_job_stat_history (job_id, pid, execution_start, "
         "execution_finish, succeeded, data) VALUES "
         f"({job}, 4242, now() - interval '1 hour', now() - interval '59 minutes', false, "
         """'{"error_data": {"message": "could not extend file: No space left on device"}}')""")
    (bad,) = _found(checks.run(url, progress=False), "jobs")
    assert bad.status == "fail" and "\n" not in bad.detail
    assert f"job {job} (_timescaledb_functions.policy_compression on tick_data) last run " \
           "failed: could not extend file: No space left on device" in bad.detail
    with psycopg.connect(url, autocommit=True) as conn:
        policies.run_job(conn, job)  # newer, and it succeeds
    (ok,) = [r for r in checks.run(url, progress=False) if r.check == "jobs"]
    assert ok.status == "ok", ok
