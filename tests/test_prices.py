"""The price model: determinism, realism, sessions, argument checks, bounded parts."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from tsj_lab.data import prices
from tsj_lab.domain import TickSpec

DAY = "2024-01-02"  # a Tuesday


def _cols(symbol: str = "ES", *, seed: int = 7, interval_ms: int = 1000, day: str = DAY,
          sessions: bool = False) -> prices.Columns:
    parts = prices.plan(TickSpec([symbol], day, 1, interval_ms, seed, sessions))
    cols = [prices.columns(p) for p in parts]
    fields = ("time_us", "bid", "ask", "last", "volume", "trade_id", "account_id", "has_trade")
    joined = {f: np.concatenate([getattr(c, f) for c in cols]) for f in fields}
    return prices.Columns(symbol, prices.spec_for(symbol).tick, **joined)


def test_same_arguments_give_identical_rows() -> None:
    a = prices.ticks(TickSpec(["ES", "EURUSD"], DAY, days=2, interval_ms=5000, seed=3))
    b = prices.ticks(TickSpec(["ES", "EURUSD"], DAY, days=2, interval_ms=5000, seed=3))
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == 2 * 2 * 86_400 // 5


def test_a_different_seed_gives_different_rows() -> None:
    a, b = _cols(seed=1), _cols(seed=2)
    assert not np.array_equal(a.bid, b.bid)
    assert not np.array_equal(a.volume, b.volume)


def test_a_day_does_not_depend_on_the_run_around_it() -> None:
    """Day 2 of a 3-day run is the same as a 1-day run of that day, and symbols are independent."""
    long = prices.ticks(TickSpec(["ES", "NQ"], DAY, days=3, interval_ms=10_000, seed=5))
    one = prices.ticks(TickSpec(["NQ"], "2024-01-03", days=1, interval_ms=10_000, seed=5))
    day2 = long[(long["symbol"] == "NQ") & (long["time"].dt.date == dt.date(2024, 1, 3))]
    pd.testing.assert_frame_equal(day2.reset_index(drop=True), one)


@pytest.mark.parametrize("symbol", ["ES", "NQ", "EURUSD", "BTCUSD", "ACME"])
def test_quotes_are_realistic(symbol: str) -> None:
    c = _cols(symbol, interval_ms=250)
    spec = prices.spec_for(symbol)
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
    assert len({r.tobytes() for r in c.account_id[c.has_trade]}) <= prices.ACCOUNTS
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
    assert 0.3 * prices.SPECS["BTCUSD"].daily_vol < daily < 3 * prices.SPECS["BTCUSD"].daily_vol


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
        prices.plan(TickSpec(**args))


def test_days_split_into_bounded_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory is bounded by construction: no part, hence no buffer, exceeds PART_ROWS."""
    monkeypatch.setattr(prices, "PART_ROWS", 1000)
    parts = prices.plan(TickSpec(["ES"], DAY, days=2, interval_ms=10_000))
    assert len(parts) == 2 * 9 and max(p.nominal_rows for p in parts) <= 1000
    assert sum(p.nominal_rows for p in parts) == 2 * 8640
    # parts tile each day exactly, and the price path is continuous across parts
    day1 = [p for p in parts if p.day == dt.date(2024, 1, 2)]
    assert [p.first for p in day1[1:]] == [p.stop for p in day1[:-1]]
    joined = np.concatenate([prices.columns(p).bid for p in day1])
    assert np.abs(np.diff(joined)).max() < 40  # ticks, no jump at part edges
