"""The fast fetch path (db.frames, db.columns): what read_frame returns, in which order and
types, exactly where asked, planned once where the endpoint allows and right as a real-time
view's watermark moves; and the benchmark's server figure planned the way the client's is."""

from __future__ import annotations

import datetime as dt
import struct
from decimal import Decimal

import numpy as np
import pandas as pd
import psycopg
import pytest

from tsj_lab import bench, db
from tsj_lab.db import columns, frames
from tsj_lab.lab import candles
from tsj_lab.provision import schema

DAY = dt.datetime(2026, 1, 18, tzinfo=dt.UTC)


def _array(values: list[float | None]) -> bytes:
    """A one-dimensional binary float8[] as the server sends it."""
    has_null = any(v is None for v in values)
    out = struct.pack(">iiiii", 1, int(has_null), 701, len(values), 1)
    for v in values:
        out += struct.pack(">i", -1) if v is None else struct.pack(">id", 8, v)
    return out


def test_binary_arrays_decode_without_python_objects() -> None:
    got = columns.elements(_array([1.5, -2.25, 71234.25]), ">f8")
    assert got is not None and got.tolist() == [1.5, -2.25, 71234.25]
    assert columns.elements(_array([1.0, None]), ">f8") is None  # NULLs: psycopg's loader
    assert columns.elements(struct.pack(">iii", 0, 0, 701), ">f8").tolist() == []
    loader = columns.Float8Array(1022)
    assert loader.load(_array([1.0, None, 3.0])).tolist() == [1.0, None, 3.0]
    assert columns.empty(1184).dtype == np.dtype("M8[us]") and columns.empty(25).dtype == object


def test_numbered_params_are_psycopgs() -> None:
    assert bench.numbered_params("a = %(x)s AND b LIKE 'q%%' AND c < %(y)s OR d = %(x)s") == (
        "a = $1 AND b LIKE 'q%' AND c < $2 OR d = $1", ["x", "y"])


@pytest.fixture
def target(make_db) -> str:
    """A provisioned target holding one day of ES at one tick a minute, candles refreshed."""
    url = make_db(timescale=True)
    schema.provision(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO tick_data (time, symbol, bid_price, ask_price, last_price, volume) "
                     "SELECT %s + g * interval '1 minute', 'ES', 4297 + g %% 7, 4297.25 + g %% 7, "
                     "4297 + (g %% 13) * 0.25, 1 + g %% 3 FROM generate_series(0, 1439) g", (DAY,))
    schema.refresh_candles(url, start=DAY, end=DAY + dt.timedelta(days=1))
    return url


def _day(symbol: str = "ES", days: int = 1) -> dict[str, object]:
    return {"symbol": symbol, "start": DAY, "end": DAY + dt.timedelta(days=days)}


def test_read_frame_gives_arrows_frame_in_the_querys_order(target: str) -> None:
    for query, ident, params in (("bench.window", {}, _day()),
                                 ("candles.view_range", {"view": "candle_1m"}, _day()),
                                 ("candles.raw_range", {}, _day() | {"width": dt.timedelta(minutes=7)}),
                                 ("bench.window", {}, _day("none"))):
        got = db.read_frame(target, query, params, identifiers=ident)
        pd.testing.assert_frame_equal(got, frames.read_arrow(target, query, params,
                                                             identifiers=ident))
        assert got.iloc[:, 0].is_monotonic_increasing
    assert str(got["time"].dtype) == "datetime64[us, UTC]" and len(got) == 0
    assert got["volume"].dtype == np.int64 and got["bid_price"].dtype == np.float64


def test_exact_candles_keep_the_decimal_prices(target: str) -> None:
    later = DAY + dt.timedelta(days=1)
    with psycopg.connect(target, autocommit=True) as conn:
        conn.execute("INSERT INTO tick_data (time, symbol, last_price, volume) VALUES "
                     "(%s, 'BTC', 71234.25, 1), (%s, 'BTC', 0.00000001, 2)",
                     (later, later + dt.timedelta(minutes=1)))
    schema.refresh_candles(target, start=later, end=later + dt.timedelta(hours=1))
    with psycopg.connect(target, autocommit=True) as conn:  # from the view's real-time part
        conn.execute("INSERT INTO tick_data (time, symbol, last_price, volume) VALUES "
                     "(%s, 'BTC', 71234.25, 3)", (later + dt.timedelta(hours=2, seconds=5),))
    for timeframe in ("1m", "2m"):
        exact = candles.read(target, symbol="BTC", timeframe=timeframe, start=later,
                             end=later + dt.timedelta(hours=3), exact=True)
        floats = candles.read(target, symbol="BTC", timeframe=timeframe, start=later,
                              end=later + dt.timedelta(hours=3))
        prices = [p for col in ("open", "high", "low", "close") for p in exact[col]]
        assert all(isinstance(p, Decimal) for p in prices)
        assert set(prices) == {Decimal("71234.25"), Decimal("0.00000001")}
        assert exact["low"].min() == Decimal("0.00000001") and str(exact["low"].min()) == "1E-8"
        assert floats["low"].min() == 1e-08 and floats["high"].max() == 71234.25
        assert exact["volume"].sum() == 6 and exact.attrs["source"] == floats.attrs["source"]


def test_prepared_generic_reads_follow_the_views_watermark(target: str) -> None:
    assert frames.prepares(target) and frames.generic_plans(target)  # direct
    later = DAY + dt.timedelta(days=2)
    params = _day() | {"end": later + dt.timedelta(days=2)}

    def both() -> pd.DataFrame:
        for _ in range(7):  # past the 5 custom plans PostgreSQL would otherwise try first
            got = db.read_frame(target, "candles.view_range", params, identifiers={"view": "candle_1m"})
        pd.testing.assert_frame_equal(got, frames.read_arrow(
            target, "candles.view_range", params, identifiers={"view": "candle_1m"}))
        return got

    assert both()["tick_count"].sum() == 1440
    with psycopg.connect(target, autocommit=True) as conn:
        conn.execute("INSERT INTO tick_data (time, symbol, last_price, volume) SELECT "
                     "%s + g * interval '10 s', 'ES', 4300, 1 FROM generate_series(0, 99) g", (later,))
    assert both()["tick_count"].sum() == 1540  # the new ticks from the real-time part
    schema.refresh_candles(target, start=later, end=later + dt.timedelta(hours=1))
    with psycopg.connect(target, autocommit=True) as conn:
        conn.execute("INSERT INTO tick_data (time, symbol, last_price, volume) VALUES (%s, 'ES', 4301, 5)",
                     (later + dt.timedelta(days=1),))
    assert both()["tick_count"].sum() == 1541  # watermark moved: neither lost nor counted twice
    conn_used = frames._frames(target).pg
    plans = conn_used.execute("SELECT sum(generic_plans), sum(custom_plans) FROM pg_prepared_statements"
                              ).fetchone()
    assert plans is not None and plans[0] >= 21 and plans[1] == 0


def test_through_a_pooler_without_prepared_statements_nothing_is_prepared(target: str,
                                                                           pooler) -> None:
    pooled = pooler.url(psycopg.conninfo.conninfo_to_dict(target)["dbname"])
    assert not frames.prepares(pooled) and not frames.generic_plans(pooled)
    for _ in range(7):
        got = db.read_frame(pooled, "candles.view_range", _day(), identifiers={"view": "candle_1h"})
    assert len(got) == 24 and got["tick_count"].sum() == 1440


def test_the_server_figure_is_planned_as_the_client_plans(target: str) -> None:
    params = [_day()] * 3
    for prepared in (False, True):
        times = bench.server_times(target, "candles.view_range", params,
                                   identifiers={"view": "candle_1m"}, prepared=prepared)
        assert all(isinstance(t, bench.ServerTime) and t > t.plan_ms > 0 for t in times)
    row = bench.point("candles", "timescaledb", [2.0, 3.0, 4.0], server=times)
    assert row["server_plan_p50_ms"] == sorted(t.plan_ms for t in times)[1]
    assert row["server_p50_ms"] == sorted(times)[1]


def test_a_view_made_again_with_other_columns_is_read_afresh(target: str, monkeypatch) -> None:
    params = _day() | {"end": DAY + dt.timedelta(hours=2)}
    with psycopg.connect(target, autocommit=True) as conn:
        conn.execute("CREATE VIEW odd AS SELECT * FROM candle_1h")
    for _ in range(3):
        got = db.read_frame(target, "candles.view_range", params, identifiers={"view": "odd"})
    assert str(got["bucket"].dtype) == "datetime64[us, UTC]" and len(got) == 2
    with psycopg.connect(target, autocommit=True) as conn:  # bucket becomes another type
        conn.execute("DROP VIEW odd")
        conn.execute("CREATE VIEW odd AS SELECT bucket::date AS bucket, symbol, open, high, low, "
                     "close, volume, tick_count FROM candle_1h")
    dropped: list[str] = []
    monkeypatch.setattr(frames, "_drop", lambda url, drop=frames._drop: (dropped.append(url), drop(url)))
    again = db.read_frame(target, "candles.view_range", params, identifiers={"view": "odd"})
    assert dropped == [target]  # the prepared read failed once, then was made afresh
    # a date now: every hour of the day is on or after the day's midnight and before 02:00
    assert set(again["bucket"]) == {DAY.date()} and again["tick_count"].sum() == 1440
