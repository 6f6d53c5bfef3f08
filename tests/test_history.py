"""History on the timescale edition (tsj_lab/history.py) and the story's table
(tsj_lab/story.py), on a tiny data set: one symbol, one tick a minute, one day."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest

from tsj_lab import bench
from tsj_lab.bench import history, story
from tsj_lab.domain import TickSpec


@pytest.fixture
def pair(make_db) -> tuple[list[bench.Database], bench.Dataset]:
    return bench.prepare(make_db(timescale=True), make_db(timescale=False),
                         TickSpec(["ES"], dt.date(2026, 1, 18), days=1, interval_ms=60_000, seed=3))


def _scratch_schemas(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_namespace "
                            "WHERE nspname LIKE 'tsj\\_hist\\_%'").fetchone()[0]


@pytest.mark.slow
def test_copies_hold_the_same_ticks_compressed_and_not(pair) -> None:
    dbs, ds = pair
    target = dbs[1].url
    assert history.unsupported(target) is None
    with history.scratch(target, ds) as copies:
        comp = history.compression_table(copies).set_index("copy")
        assert comp["ticks"].tolist() == [1440] * 4
        assert comp.at["hot", "compressed_chunks"] == 0 and comp.at["cold", "compressed_chunks"] == 1
        assert (comp.loc[list(history.TYPES), "bytes_after"]
                < comp.loc[list(history.TYPES), "bytes_before"]).all()
        cols = history.column_table(copies).set_index("column")
        # the compressed tables carry TimescaleDB's metadata beside the story's columns
        assert {"last_price", "symbol", "_ts_meta_count"} <= set(cols.index)
        assert cols.at["last_price", "cold_after"] > 0 and cols.at["_ts_meta_count", "cold_before"] == 0
        prec = history.precision(copies).set_index("copy")
        assert prec.at["int8", "changed"] == 0 and prec.at["cold", "values"] == 3 * 1440
        speed = history.type_speed(copies, samples=2, warmup=0)
        assert set(speed["db"]) == set(history.TYPES) and (speed["rows"] == 60).all()
        rec = history.recommendation(copies, speed)
        assert list(rec["price_type"]) == [history.COPIES[c] for c in history.TYPES]
        plan = history.disk_plan(copies).set_index("what")["value"]
        assert plan.iloc[1] < plan.iloc[0]  # compressed bytes per tick below uncompressed
        win = history.windows(copies, windows=["1m", "1h"], samples=2, warmup=0, seed=1)
        assert set(win["db"]) == {"uncompressed", "compressed"}
        assert win.groupby("window")["rows"].nunique().tolist() == [1, 1]
        ratio = history.ratios(win, by="window")
        assert list(ratio["window"]) == ["1m", "1h"] and (ratio["p50_ratio"] > 0).all()
        rep = history.replay_fetches(copies, rtts=[None], batch_sizes=[50], samples=3, warmup=0,
                                     seed=1)
        assert (rep["rows"] == 50).all() and set(rep["db"]) == {"uncompressed", "compressed"}
        hc, refreshes, diffs = history.candles(copies, samples=2, warmup=0, seed=1)
        by = diffs.set_index("view")["differ_from_raw"]
        assert by["candle_1m"] == 0 and by["candle_5m"] == 0 and by["candle_1h_flat"] == 0
        assert by[history.MATERIALIZED_ONLY] == 6 * 60  # the 6 h tail is missing
        rows = hc.set_index(["width", "source"])["rows"]
        assert rows[("1m", "realtime")] == rows[("1m", "raw")] == 1440
        assert rows[("1m", "materialized_only")] == 1440 - 360
        dropped = history.retention(copies)
        assert dropped["ticks"].tolist() == [1440, 1440] and dropped["chunks"].tolist() == [1, 1]
        costs = history.policy_costs(copies, refreshes, dropped)
        assert set(costs["job"]) == {"compression", "refresh", "retention"}
        assert (costs["seconds"] > 0).all()
        assert _scratch_schemas(target) == 4
    assert _scratch_schemas(target) == 0


def test_pages_cover_every_tick_once_on_compressed_chunks(make_db) -> None:
    url = make_db(timescale=True)
    _, ds = bench.prepare(url, make_db(timescale=False),
                          TickSpec(["ES"], dt.date(2026, 1, 18), days=1, interval_ms=60_000, seed=3))
    with psycopg.connect(url, autocommit=True) as conn:
        # ticks sharing an instant, across page boundaries, then the chunk compressed
        conn.execute("INSERT INTO tick_data (time, symbol, last_price, volume) "
                     "SELECT time, symbol, last_price + k, 7 FROM tick_data, generate_series(1, 9) k "
                     "WHERE symbol = 'ES' AND time < %s", (ds.start + dt.timedelta(minutes=30),))
        conn.execute("SELECT compress_chunk(c) FROM show_chunks('tick_data') c")
        got = [r for page in history.pages(conn, symbol="ES", start=ds.start, end=ds.end, size=7)
               for r in page]
        want = conn.execute("SELECT time, bid_price::float8, ask_price::float8, "
                            "last_price::float8, volume FROM tick_data WHERE symbol = 'ES'").fetchall()
    assert len(got) == 1440 + 9 * 30 and sorted(got, key=repr) == sorted(want, key=repr)
    assert [r[0] for r in got] == sorted(r[0] for r in got)


def test_history_says_unsupported_on_the_apache_edition(make_apache_db) -> None:
    reason = history.unsupported(make_apache_db())
    assert reason is not None and reason.startswith("unsupported on this edition (apache")


def test_first_day_is_one_day_of_two_symbols() -> None:
    lo = dt.datetime(2026, 1, 18, tzinfo=dt.UTC)
    big = bench.Dataset(("ES", "NQ", "EURUSD", "BTCUSD"), lo, lo + dt.timedelta(days=30),
                        345_600 * 30, 250.0)
    day = history.first_day(big)
    assert day.symbols == ("ES", "NQ") and day.days == 1 and day.ticks_per_symbol == 345_600
    with pytest.raises(ValueError, match="max_symbols=0"):
        history.first_day(big, max_symbols=0)


def test_story_physics_flags_what_a_round_trip_forbids() -> None:
    verdicts = {s.row: story.physics(s) for s in story.STORY_RESULTS}
    assert verdicts["Batch 100 ticks"].startswith("cannot be right: 33 ms is less than one 300 ms")
    assert "at most 3,333 ticks/s" in verdicts["Ticks/sec (batch 1000)"]
    assert all(v != "possible" for v in verdicts.values())
    slow = story.StoryRow("Batch 100 ticks", 320, "ms")
    assert story.physics(slow) == "possible"
    assert any("derived from the latency row" in n for n in story.inconsistencies())


def test_story_table_measured_direct_and_through_the_proxy(pair) -> None:
    dbs, ds = pair
    points = story.measure(dbs[1], ds, rtt_ms=30, samples=5, warmup=1)  # medians of 5: a busy
    # machine (four test workers on 2 cores) once put one direct median past a proxied one
    tab = story.table(points, rtt_ms=30)
    assert tab["row"].tolist() == [s.row for s in story.STORY_RESULTS]
    ms = tab[tab["unit"] == "ms"]
    assert (ms["rtt_30ms_p50"] >= 30).all() and (ms["direct_p50"] < ms["rtt_30ms_p50"]).all()
    rate = tab.set_index("row").loc["Ticks/sec (batch 1000)"]
    assert rate["rtt_30ms_p50"] <= 1000 / 0.030
