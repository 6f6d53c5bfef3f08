"""The tick generator: determinism, realism, bounded chunks, binary COPY, the ingest figure."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import numpy as np
import pandas as pd
import psycopg
import pytest

from tsj_lab import generate, migrate, plots, schema
from tsj_lab.cli import main
from tsj_lab.errors import SchemaError

DAY = "2024-01-02"  # a Tuesday


def _cols(symbol: str = "ES", *, seed: int = 7, interval_ms: int = 1000, day: str = DAY,
          sessions: bool = False) -> generate.Columns:
    parts = generate.plan([symbol], start=day, days=1, interval_ms=interval_ms, seed=seed,
                          sessions=sessions)
    cols = [generate.columns(p) for p in parts]
    fields = ("time_us", "bid", "ask", "last", "volume", "trade_id", "account_id", "has_trade")
    joined = {f: np.concatenate([getattr(c, f) for c in cols]) for f in fields}
    return generate.Columns(symbol, generate.spec_for(symbol).tick, **joined)


def test_same_arguments_give_identical_rows() -> None:
    a = generate.ticks(["ES", "EURUSD"], start=DAY, days=2, interval_ms=5000, seed=3)
    b = generate.ticks(["ES", "EURUSD"], start=DAY, days=2, interval_ms=5000, seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == 2 * 2 * 86_400 // 5


def test_a_different_seed_gives_different_rows() -> None:
    a, b = _cols(seed=1), _cols(seed=2)
    assert not np.array_equal(a.bid, b.bid)
    assert not np.array_equal(a.volume, b.volume)


def test_a_day_does_not_depend_on_the_run_around_it() -> None:
    """Day 2 of a 3-day run is the same as a 1-day run of that day, and symbols are independent."""
    long = generate.ticks(["ES", "NQ"], start=DAY, days=3, interval_ms=10_000, seed=5)
    one = generate.ticks(["NQ"], start="2024-01-03", days=1, interval_ms=10_000, seed=5)
    day2 = long[(long["symbol"] == "NQ") & (long["time"].dt.date == dt.date(2024, 1, 3))]
    pd.testing.assert_frame_equal(day2.reset_index(drop=True), one)


@pytest.mark.parametrize("symbol", ["ES", "NQ", "EURUSD", "BTCUSD", "ACME"])
def test_quotes_are_realistic(symbol: str) -> None:
    c = _cols(symbol, interval_ms=250)
    spec = generate.spec_for(symbol)
    assert len(c) == 345_600  # the story's day at 250 ms
    assert (c.bid < c.ask).all()
    assert ((c.last >= c.bid) & (c.last <= c.ask)).all()
    assert (c.ask - c.bid >= spec.min_spread).all()
    mid = (c.bid + c.ask) / 2 * float(spec.tick)
    assert 0.5 * spec.price < mid.mean() < 2 * spec.price
    assert (c.volume > 0).all() and (c.volume % spec.lot == 0).all()
    assert c.volume.max() > 50 * np.median(c.volume)  # heavy-tailed
    assert 0.03 < c.has_trade.mean() < 0.07
    ids = c.trade_id[c.has_trade]
    assert ((ids[:, 6] >> 4) == 4).all() and ((ids[:, 8] >> 6) == 2).all()  # UUID v4
    assert len({r.tobytes() for r in c.account_id[c.has_trade]}) <= generate.ACCOUNTS
    assert not c.trade_id[~c.has_trade].any()


def test_returns_have_fat_tails_and_clustered_volatility() -> None:
    c = _cols("BTCUSD", interval_ms=250)
    mid = np.log((c.bid + c.ask) / 2.0)
    r = np.diff(mid[::240])  # 1-minute returns
    kurtosis = ((r - r.mean()) ** 4).mean() / r.var() ** 2
    assert kurtosis > 4  # a normal walk has 3
    a = np.abs(r) - np.abs(r).mean()
    lag = 5  # big moves follow big moves five minutes later
    assert (a[:-lag] * a[lag:]).mean() / a.var() > 0.05
    daily = r.std() * np.sqrt(len(r))
    assert 0.3 * generate.SPECS["BTCUSD"].daily_vol < daily < 3 * generate.SPECS["BTCUSD"].daily_vol


def test_sessions_leave_out_halts_and_weekends() -> None:
    friday = _cols("ES", day="2024-01-05", sessions=True, interval_ms=60_000)
    hours = (friday.time_us // 3_600_000_000) % 24
    assert len(friday) == 22 * 60 and hours.max() == 21
    assert len(_cols("ES", day="2024-01-06", sessions=True, interval_ms=60_000)) == 0
    assert len(_cols("BTCUSD", day="2024-01-06", sessions=True, interval_ms=60_000)) == 1440
    tuesday = _cols("ES", sessions=True, interval_ms=60_000)
    assert len(tuesday) == 23 * 60  # the daily 22:00-23:00 halt


@pytest.mark.parametrize("kwargs, word", [
    ({"interval_ms": 0}, "interval_ms"), ({"days": 0}, "days"), ({"start": "yesterday"}, "start"),
    ({"start": "1999-12-31"}, "start"), ({"start": "9999-01-01"}, "start"),
    ({"symbols": ["ES", "ES"]}, "repeat"),
    ({"symbols": [""]}, "symbols"), ({"seed": -1}, "seed"),
])
def test_bad_arguments_fail_up_front(kwargs: dict, word: str) -> None:
    args = {"symbols": ["ES"], "start": DAY} | kwargs
    with pytest.raises(ValueError, match=word):
        generate.plan(**args)


def test_days_split_into_bounded_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory is bounded by construction: no part, hence no buffer, exceeds PART_ROWS."""
    monkeypatch.setattr(generate, "PART_ROWS", 1000)
    parts = generate.plan(["ES"], start=DAY, days=2, interval_ms=10_000)
    assert len(parts) == 2 * 9 and max(p.nominal_rows for p in parts) <= 1000
    assert sum(p.nominal_rows for p in parts) == 2 * 8640
    # parts tile each day exactly, and the price path is continuous across parts
    day1 = [p for p in parts if p.day == dt.date(2024, 1, 2)]
    assert [p.first for p in day1[1:]] == [p.stop for p in day1[:-1]]
    joined = np.concatenate([generate.columns(p).bid for p in day1])
    assert np.abs(np.diff(joined)).max() < 40  # ticks, no jump at part edges


def test_loader_streams_part_by_part(make_db, monkeypatch: pytest.MonkeyPatch) -> None:
    url = make_db(timescale=False)
    schema.create_source(url)
    monkeypatch.setattr(generate, "PART_ROWS", 1000)
    sizes: list[int] = []
    real = generate.copy_buffer

    def spy(cols: generate.Columns, **kw: object) -> bytes:
        sizes.append(len(cols))
        return real(cols, **kw)

    monkeypatch.setattr(generate, "copy_buffer", spy)
    n = generate.load(url, symbols=["ES", "EURUSD"], start=DAY, interval_ms=10_000, workers=2)
    assert n == 2 * 8640 and sum(sizes) == n and max(sizes) <= 1000 and len(sizes) == 18
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM tick_data").fetchone()[0] == n


def test_binary_copy_stores_exact_values(make_db) -> None:
    url = make_db(timescale=False)
    schema.create_source(url)
    generate.load(url, symbols=["EURUSD", "NQ"], start=DAY, interval_ms=30_000, seed=9)
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT symbol, bid_price, ask_price, last_price, volume, trade_id, account_id,"
            " time FROM tick_data ORDER BY symbol, time").fetchall()
    for symbol in ("EURUSD", "NQ"):
        c = _cols(symbol, seed=9, interval_ms=30_000)
        db = [r for r in rows if r[0] == symbol]
        assert len(db) == len(c)
        tick = generate.spec_for(symbol).tick
        for i in (0, 1, len(c) // 2, len(c) - 1):
            assert db[i][1] == Decimal(int(c.bid[i])) * tick
            assert db[i][2] == Decimal(int(c.ask[i])) * tick
            assert db[i][3] == Decimal(int(c.last[i])) * tick
            assert db[i][4] == c.volume[i]
        assert sum(r[5] is not None for r in db) == int(c.has_trade.sum())
        assert db[0][7] == dt.datetime(2024, 1, 2, tzinfo=dt.UTC)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM tick_data WHERE symbol = 'NQ' AND "
                            "(bid_price % 0.25 <> 0 OR ask_price % 0.25 <> 0)").fetchone()[0] == 0


def test_worker_count_does_not_change_the_rows(make_db) -> None:
    one, two = make_db(timescale=False), make_db(timescale=False)
    for url, workers in ((one, 1), (two, 2)):
        schema.create_source(url)
        generate.load(url, symbols=["ES", "BTCUSD"], start=DAY, days=2, interval_ms=20_000,
                      workers=workers)
    pd.testing.assert_frame_equal(migrate.digest(one), migrate.digest(two))


def test_load_into_missing_table_names_the_fix(make_db) -> None:
    with pytest.raises(SchemaError, match=r"tick_data.*tsj provision"):
        generate.load(make_db(timescale=False), symbols=["ES"], start=DAY, interval_ms=60_000)


def test_cli_generate_into_the_source(make_db, capsys: pytest.CaptureFixture[str]) -> None:
    url = make_db(timescale=False)
    assert main(["generate", "--source", url, "--symbols", "ES,NQ", "--start", DAY,
                 "--interval-ms", "60000"]) == 0
    assert "loaded 2,880 ticks into source" in capsys.readouterr().out
    assert main(["generate", "--source", url, "--interval-ms", "0"]) == 1
    assert "interval_ms=0" in capsys.readouterr().err


def test_ingest_benchmark_times_each_method_in_turns(make_db) -> None:
    url = make_db(timescale=True)
    res = generate.ingest_benchmark(url, symbols=["ES"], interval_ms=1000, workers=2, repeats=2)
    assert res.rows == 86_400 and res.repeats == 2
    assert set(res.seconds) == set(res.loaded) == set(generate.INGEST_METHODS)
    for method in generate.INGEST_METHODS:  # every load left exactly the same rows
        assert res.loaded[method] == (res.rows, res.rows)
        assert len(res.seconds[method]) == 2 and min(res.seconds[method]) > 0
    fig = res.as_dict()
    assert {"psql_rows_per_s", "pre_encoded_rows_per_s", "copy_rows_per_s", "copy_1_rows_per_s",
            "speedup_vs_psql", "streamed_speedup_vs_psql"} <= set(fig)
    assert fig["repeats"] == 2 and fig["workers"] == 2
    assert fig["speedup_vs_psql"] == round(res.ratio("pre_encoded"), 2)
    assert len(plots.ingest_rates(fig).data[0].y) == 4
    with psycopg.connect(url) as conn:  # the scratch table is gone
        assert conn.execute("SELECT to_regclass('tsj_ingest_bench')").fetchone()[0] is None


def test_ingest_benchmark_needs_a_turn() -> None:
    with pytest.raises(ValueError, match="repeats=0"):
        generate.ingest_benchmark("postgresql://unused", repeats=0)


def test_pre_encoded_parts_load_the_same_rows(make_db) -> None:
    one, two = make_db(timescale=False), make_db(timescale=False)
    parts = generate.plan(["ES", "NQ"], start=DAY, interval_ms=30_000)
    for url, items in ((one, parts), (two, [generate.encode(p) for p in parts])):
        schema.create_source(url)
        assert generate.write_parts(url, items, workers=2, progress=False) == 2 * 2880
    pd.testing.assert_frame_equal(migrate.digest(one), migrate.digest(two))


def test_cli_generate_provisions_an_empty_target(make_db, capsys: pytest.CaptureFixture[str]) -> None:
    url = make_db(timescale=True)
    assert main(["generate", "--target", url, "--symbols", "BTCUSD", "--start", DAY,
                 "--interval-ms", "60000", "--sessions"]) == 0
    out = capsys.readouterr().out
    assert "loaded 1,440 ticks into target" in out
    assert "refreshed candle_1m, candle_5m, candle_15m, candle_1h in" in out
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM timescaledb_information.hypertables "
                            "WHERE hypertable_name = 'tick_data'").fetchone()[0] == 1
    # clean generated data checks clean: the candle views are current
    assert main(["check", "--target", url, "--no-source"]) == 0, capsys.readouterr().out


def test_cli_generate_rerun_skips_loaded_parts_and_refuses_foreign_rows(
    make_db, capsys: pytest.CaptureFixture[str]
) -> None:
    url = make_db(timescale=False)
    args = ["generate", "--source", url, "--symbols", "ES", "--start", DAY, "--interval-ms",
            "60000", "--sessions"]
    assert main(args) == 0
    with psycopg.connect(url) as conn:
        first = conn.execute("SELECT count(*) FROM tick_data").fetchone()[0]
    capsys.readouterr()
    assert main(args) == 0  # the same run again: nothing doubled
    assert "nothing to do" in capsys.readouterr().out
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM tick_data").fetchone()[0] == first
        conn.execute("DELETE FROM tick_data WHERE ctid IN (SELECT ctid FROM tick_data LIMIT 5)")
    assert main(args) == 1  # an interrupted or foreign range: refused, untouched
    err = capsys.readouterr().err
    assert f"holds {first - 5:,} ticks of ES" in err and "--replace" in err
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM tick_data").fetchone()[0] == first - 5
    assert main([*args, "--replace"]) == 0
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM tick_data").fetchone()[0] == first


@pytest.mark.parametrize("flags, word", [
    (["--target", "postgresql://nowhere/t", "--into", "source"], "--target URL given with --into source"),
    (["--source", "postgresql://nowhere/s", "--into", "target"], "--source URL given with --into target"),
    (["--source", "postgresql://nowhere/s", "--target", "postgresql://nowhere/t"], "both given"),
])
def test_cli_generate_refuses_a_url_for_the_other_side(
    flags: list[str], word: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A URL is never silently ignored in favour of the default database of the other side."""
    assert main(["generate", *flags, "--symbols", "ES", "--start", DAY]) == 1
    assert word in capsys.readouterr().err
