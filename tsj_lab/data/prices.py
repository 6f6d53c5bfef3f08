"""The deterministic synthetic price model: which ticks a run holds, and their values.

A tick is generated from ``(seed, symbol, UTC day, part)`` only, so the same arguments
give identical rows whatever the start, the number of days, the worker count or the
order in which parts are loaded. Prices follow a mean-reverting daily skeleton (so a
year of BTCUSD stays plausible), a Brownian bridge between part anchors inside the day,
and a stochastic volatility (log-vol AR(1) at minute knots, interpolated) for volatility
clustering, with Student-t shocks for fat tails. Quotes sit on whole ticks, bid < ask,
and the last trade is at the bid, the ask or between them.

A day is cut into parts of at most ``PART_ROWS`` rows, the unit of generation and of
loading (:mod:`tsj_lab.data.generate`), so memory is bounded by a part whatever the run's size.
"""

from __future__ import annotations

import datetime as dt
import uuid
import zlib
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

import numpy as np
import pandas as pd

from ..domain import DAY_MS, TICK_COLUMNS, TickSpec

#: most rows one part (one COPY, one transaction, one worker's memory) holds
PART_ROWS = 200_000
#: the first day of the price skeleton: dates before it are refused
EPOCH = dt.date(2000, 1, 1)
PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in Unix microseconds: PostgreSQL's zero
SOURCE_TAG = "tsj-synthetic"
#: share of ticks that carry a trade_id and an account_id, as journal-linked trades
TRADE_SHARE = 0.05
ACCOUNTS = 8


@dataclass(frozen=True)
class SymbolSpec:
    """How one instrument trades: price level, tick size, volatility, spread, volume."""

    price: float  # typical mid price
    tick: Decimal  # price increment
    daily_vol: float  # standard deviation of a day's log return
    min_spread: int  # tightest spread, in ticks
    spread_p: float  # geometric parameter of the extra spread ticks (1: never wider)
    lot: int  # volume unit
    session: str  # 'cme' (daily halt + weekend), 'fx' (weekend), '24x7'


SPECS: dict[str, SymbolSpec] = {
    "ES": SymbolSpec(5000.0, Decimal("0.25"), 0.011, 1, 0.85, 1, "cme"),
    "NQ": SymbolSpec(17500.0, Decimal("0.25"), 0.014, 1, 0.6, 1, "cme"),
    "EURUSD": SymbolSpec(1.085, Decimal("0.00001"), 0.005, 2, 0.35, 1000, "fx"),
    "BTCUSD": SymbolSpec(60000.0, Decimal("0.01"), 0.03, 1, 0.08, 1, "24x7"),
}
DEFAULT_SPEC = SymbolSpec(100.0, Decimal("0.01"), 0.02, 1, 0.5, 1, "24x7")


def spec_for(symbol: str) -> SymbolSpec:
    """The known instrument's spec, or a plain 100.00 / 0.01 stock-like default."""
    return SPECS.get(symbol.upper(), DEFAULT_SPEC)


@dataclass(frozen=True)
class Part:
    """One unit of generation and loading: a slice of one symbol's UTC day."""

    symbol: str
    day: dt.date
    index: int  # part number within the day
    parts: int  # parts in the day
    first: int  # first tick number of the day in this part
    stop: int  # one past the last tick number
    interval_ms: int
    seed: int
    sessions: bool

    @property
    def nominal_rows(self) -> int:
        return self.stop - self.first

    def bounds(self) -> tuple[dt.datetime, dt.datetime]:
        """The part's time range [lo, hi) in UTC."""
        day = dt.datetime.combine(self.day, dt.time(), tzinfo=dt.UTC)
        step = dt.timedelta(milliseconds=self.interval_ms)
        return day + self.first * step, day + self.stop * step

    def expected_rows(self) -> int:
        """The ticks :func:`columns` yields for this part (fewer than nominal with sessions)."""
        if not self.sessions:
            return self.nominal_rows
        day_us = (self.day - EPOCH).days * 86_400_000_000
        time_us = day_us + np.arange(self.first, self.stop, dtype=np.int64) * self.interval_ms * 1000
        return int(_in_session(time_us, spec_for(self.symbol).session).sum())


def plan(spec: TickSpec) -> list[Part]:
    """The parts that make up ``spec``, in (day, symbol, part) order."""
    if spec.start < EPOCH:
        raise ValueError(f"start {spec.start} is before {EPOCH}; use a later date")
    per_day = spec.ticks_per_day
    parts = -(-per_day // PART_ROWS)
    size = -(-per_day // parts)
    return [
        Part(sym, spec.start + dt.timedelta(days=d), p, parts, p * size,
             min(per_day, (p + 1) * size), spec.interval_ms, spec.seed, spec.sessions)
        for d in range(spec.days) for sym in spec.symbols for p in range(parts)
    ]


# -- the price model ------------------------------------------------------------------------


def _key(symbol: str) -> int:
    # crc32, not hash(): Python salts str hashes per process
    return zlib.crc32(symbol.encode())


def _rng(part: Part, *extra: int) -> np.random.Generator:
    day = (part.day - EPOCH).days
    return np.random.default_rng([part.seed, _key(part.symbol), day, *extra])


@lru_cache(maxsize=64)
def _day_skeleton(seed: int, symbol: str, days: int) -> tuple[np.ndarray, np.ndarray]:
    """Log mid price and log daily vol at the start of each day since EPOCH (days + 1 points).

    Mean-reverting (AR(1) around the spec's level), so levels stay plausible over years;
    drawn as one (n, 2) stream so a longer skeleton starts with the shorter one.
    """
    spec = spec_for(symbol)
    z = np.random.default_rng([seed, _key(symbol), 0x5EED]).standard_normal((days + 1, 2))
    level, logvol = np.empty(days + 1), np.empty(days + 1)
    x, v = np.log(spec.price), 0.0
    for i in range(days + 1):
        level[i], logvol[i] = x, np.log(spec.daily_vol) + v
        v = 0.8 * v + 0.25 * z[i, 0]
        x = np.log(spec.price) + 0.99 * (x - np.log(spec.price)) + np.exp(logvol[i]) * z[i, 1]
    return level, logvol


def _part_anchors(part: Part) -> tuple[float, float, float]:
    """Log price at the part's start and end, and the part's per-tick volatility."""
    day = (part.day - EPOCH).days
    levels, logvols = _day_skeleton(part.seed, part.symbol, (day // 256 + 1) * 256)
    a, b, daily = levels[day], levels[day + 1], float(np.exp(logvols[day]))
    per_day = part.parts
    # a Brownian bridge from a to b at part resolution, the same for every part of the day
    z = np.random.default_rng([part.seed, _key(part.symbol), day, 0xB41D]).standard_normal(per_day)
    step = daily / np.sqrt(per_day)
    w = np.concatenate([[0.0], np.cumsum(z * step)])
    frac = np.arange(per_day + 1) / per_day
    path = a + w - frac * (w[-1] - (b - a))
    ticks_per_day = -(-DAY_MS // part.interval_ms)
    return float(path[part.index]), float(path[part.index + 1]), daily / np.sqrt(ticks_per_day)


@dataclass(frozen=True)
class Columns:
    """One part's ticks as numpy arrays: prices in whole ticks, times in PostgreSQL us."""

    symbol: str
    tick: Decimal
    time_us: np.ndarray  # int64 microseconds since 2000-01-01 UTC
    bid: np.ndarray  # int64, in ticks
    ask: np.ndarray
    last: np.ndarray
    volume: np.ndarray  # int64
    trade_id: np.ndarray  # (n, 16) uint8; rows without a trade are all zero
    account_id: np.ndarray  # (n, 16) uint8
    has_trade: np.ndarray  # bool

    def __len__(self) -> int:
        return len(self.time_us)

    def take(self, mask: np.ndarray) -> Columns:
        return Columns(self.symbol, self.tick, self.time_us[mask], self.bid[mask], self.ask[mask],
                       self.last[mask], self.volume[mask], self.trade_id[mask],
                       self.account_id[mask], self.has_trade[mask])


def columns(part: Part) -> Columns:
    """The ticks of ``part``: a pure function of its fields."""
    spec = spec_for(part.symbol)
    rng = _rng(part, part.index)
    n = part.nominal_rows
    a, b, sigma = _part_anchors(part)
    logp = a + _bridge(_shocks(rng, n, sigma), b - a)
    tick = float(spec.tick)
    mid = np.rint(np.exp(logp) / tick).astype(np.int64)
    spread = spec.min_spread + rng.geometric(spec.spread_p, n).astype(np.int64) - 1
    bid = np.maximum(mid - spread // 2, 1)
    ask = bid + spread
    u = rng.random(n)
    inside = bid + np.floor(rng.random(n) * (spread + 1)).astype(np.int64)
    last = np.where(u < 0.45, bid, np.where(u < 0.9, ask, inside))
    # Pareto(1.5): most ticks trade a lot or two, a few trade hundreds
    volume = spec.lot * (1 + np.minimum(np.floor(rng.pareto(1.5, n) * 2), 1e6).astype(np.int64))
    has_trade = rng.random(n) < TRADE_SHARE
    trade_id = _uuid4(rng, n) * has_trade[:, None]
    account_id = _accounts(part.seed)[rng.integers(0, ACCOUNTS, n)] * has_trade[:, None]
    day_us = (part.day - EPOCH).days * 86_400_000_000
    time_us = day_us + (part.first + np.arange(n, dtype=np.int64)) * part.interval_ms * 1000
    cols = Columns(part.symbol, spec.tick, time_us, bid, ask, last, volume, trade_id,
                   account_id, has_trade)
    return cols.take(_in_session(time_us, spec.session)) if part.sessions else cols


def _shocks(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """Per-tick log returns with clustered volatility and fat tails."""
    knots = n // 240 + 2  # one knot a minute at 250 ms
    z = rng.standard_normal(knots)
    logvol = np.empty(knots)
    v = 0.0
    for i in range(knots):  # a few hundred steps: the AR(1) is cheap in Python
        v = 0.9 * v + 0.45 * z[i]
        logvol[i] = v
    vol = sigma * np.exp(np.interp(np.arange(n) / 240.0, np.arange(knots), logvol) - 0.5)
    return vol * rng.standard_t(5, n) / np.sqrt(5 / 3)


def _bridge(shocks: np.ndarray, target: float) -> np.ndarray:
    """Cumulated shocks bent linearly so the path ends at ``target`` one step after the last."""
    w = np.cumsum(shocks)
    n = len(shocks)
    end = w[-1] if n else 0.0
    return w - (np.arange(1, n + 1) / (n + 1)) * (end - target)


def _uuid4(rng: np.random.Generator, n: int) -> np.ndarray:
    raw = rng.integers(0, 256, (n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    return raw


@lru_cache(maxsize=16)
def _accounts(seed: int) -> np.ndarray:
    """The journal's accounts: a few UUIDs shared by every symbol of a seed."""
    return _uuid4(np.random.default_rng([seed, 0xACC0]), ACCOUNTS)


def _in_session(time_us: np.ndarray, session: str) -> np.ndarray:
    """True where the market is open (UTC, daylight saving ignored)."""
    if session == "24x7":
        return np.ones(len(time_us), dtype=bool)
    unix_s = (time_us + PG_EPOCH_US) // 1_000_000
    weekday = (unix_s // 86_400 + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
    hour = (unix_s % 86_400) // 3600
    close, reopen = (22, 23) if session == "cme" else (22, 22)
    weekend = ((weekday == 4) & (hour >= close)) | (weekday == 5) | ((weekday == 6) & (hour < reopen))
    halt = (hour == 22) if session == "cme" else np.zeros(len(time_us), dtype=bool)
    return ~(weekend | halt)


def frame(cols: Columns) -> pd.DataFrame:
    """A part as a DataFrame with the table's columns (prices as float; for looking at)."""
    tick = float(cols.tick)
    ids = [None if not t else _uuid_text(r) for t, r in zip(cols.has_trade, cols.trade_id)]
    accs = [None if not t else _uuid_text(r) for t, r in zip(cols.has_trade, cols.account_id)]
    return pd.DataFrame({
        "time": pd.to_datetime(cols.time_us + PG_EPOCH_US, unit="us", utc=True),
        "symbol": cols.symbol,
        "bid_price": cols.bid * tick,
        "ask_price": cols.ask * tick,
        "last_price": cols.last * tick,
        "volume": cols.volume,
        "source": SOURCE_TAG,
        "trade_id": ids,
        "account_id": accs,
    })


def _uuid_text(raw: np.ndarray) -> str:
    return str(uuid.UUID(bytes=raw.tobytes()))


def ticks(spec: TickSpec) -> pd.DataFrame:
    """All ticks of a (small) ``spec`` as one DataFrame; use :func:`generate.load` for big ones."""
    frames = [frame(columns(p)) for p in plan(spec)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(TICK_COLUMNS))
