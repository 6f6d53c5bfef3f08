"""Deterministic synthetic ticks, many symbols; fast bulk load by binary COPY.

A tick is generated from ``(seed, symbol, UTC day, part)`` only, so the same arguments
give identical rows whatever the start, the number of days, the worker count or the
order in which parts are loaded. Prices follow a mean-reverting daily skeleton (so a
year of BTCUSD stays plausible), a Brownian bridge between part anchors inside the day,
and a stochastic volatility (log-vol AR(1) at minute knots, interpolated) for volatility
clustering, with Student-t shocks for fat tails. Quotes sit on whole ticks, bid < ask,
and the last trade is at the bid, the ask or between them.

Loading never holds more than one part (at most ``PART_ROWS`` rows) per worker: the
binary COPY buffer of a part is built with numpy (one structured array, no per-row Python)
and streamed on the worker's own connection, one transaction per part.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import statistics
import threading
import time as _time
import zlib
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
import psycopg

from . import queries
from .db import connect
from .domain import TICK_COLUMNS, TickSpec
from .errors import SchemaError

log = logging.getLogger("tsj_lab")

DAY_MS = 86_400_000
#: most rows one part (one COPY, one transaction, one worker's memory) holds
PART_ROWS = 200_000
#: the first day of the price skeleton: dates before it are refused
EPOCH = dt.date(2000, 1, 1)
PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in Unix microseconds: PostgreSQL's zero
DEFAULT_SYMBOLS = ("ES", "NQ", "EURUSD", "BTCUSD")
DEFAULT_SEED = 16
SOURCE_TAG = "tsj-synthetic"
#: share of ticks that carry a trade_id and an account_id, as journal-linked trades
TRADE_SHARE = 0.05
ACCOUNTS = 8
COLUMNS = TICK_COLUMNS


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


def plan(
    symbols: Sequence[str] = DEFAULT_SYMBOLS,
    *,
    start: dt.date | str,
    days: int = 1,
    interval_ms: int = 250,
    seed: int = DEFAULT_SEED,
    sessions: bool = False,
) -> list[Part]:
    """The parts that make up a run, in (day, symbol, part) order; checks every argument."""
    symbols, start = _check(symbols, start, days, interval_ms, seed)
    per_day = -(-DAY_MS // interval_ms)
    parts = -(-per_day // PART_ROWS)
    size = -(-per_day // parts)
    return [
        Part(sym, start + dt.timedelta(days=d), p, parts, p * size, min(per_day, (p + 1) * size),
             interval_ms, seed, sessions)
        for d in range(days) for sym in symbols for p in range(parts)
    ]


def _check(symbols: Sequence[str], start: dt.date | str, days: int, interval_ms: int,
           seed: int) -> tuple[list[str], dt.date]:
    if isinstance(symbols, str):
        symbols = symbols.split(",")
    symbols = [s.strip() for s in symbols]
    if not symbols or any(not s or len(s) > 32 for s in symbols):
        raise ValueError(f"symbols {symbols!r} must be 1-32 characters each, e.g. ES,NQ")
    if len(set(symbols)) != len(symbols):
        raise ValueError(f"symbols {symbols!r} repeat; name each symbol once")
    if isinstance(start, str):
        try:
            start = dt.date.fromisoformat(start)
        except ValueError:
            raise ValueError(f"start {start!r} is not a date; use YYYY-MM-DD") from None
    if isinstance(start, dt.datetime):
        start = start.date()
    if start < EPOCH:
        raise ValueError(f"start {start} is before {EPOCH}; use a later date")
    if not 1 <= days <= 3660:
        raise ValueError(f"days={days} is out of range; use 1-3660")
    if start > dt.date(9998, 1, 1) - dt.timedelta(days=days):
        raise ValueError(f"start {start} plus {days} days passes the year 9997; use an earlier start")
    if not 1 <= interval_ms <= DAY_MS:
        raise ValueError(f"interval_ms={interval_ms} is out of range; use 1-{DAY_MS}")
    if not 0 <= seed < 2**63:
        raise ValueError(f"seed={seed} must be a non-negative integer below 2**63")
    return list(symbols), start


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
    import uuid

    return str(uuid.UUID(bytes=raw.tobytes()))


def ticks(
    symbols: Sequence[str] = DEFAULT_SYMBOLS,
    *,
    start: dt.date | str,
    days: int = 1,
    interval_ms: int = 250,
    seed: int = DEFAULT_SEED,
    sessions: bool = False,
) -> pd.DataFrame:
    """All ticks of a (small) run as one DataFrame; use :func:`load` for big ones."""
    parts = plan(symbols, start=start, days=days, interval_ms=interval_ms, seed=seed,
                 sessions=sessions)
    frames = [frame(columns(p)) for p in parts]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)


# -- binary COPY ----------------------------------------------------------------------------

COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
COPY_TRAILER = (-1).to_bytes(2, "big", signed=True)
_NUMERIC_DIGITS = 5  # base-10000 digits of a DECIMAL(20, 8): 3 integer, 2 fractional


def _numeric_fields(prefix: str) -> list[tuple[Any, ...]]:
    return [(f"{prefix}_len", ">i4"), (f"{prefix}_hdr", ">i2", (4,)),
            (f"{prefix}_dig", ">i2", (_NUMERIC_DIGITS,))]


def _row_dtype(symbol_len: int, source_len: int, with_ids: bool) -> np.dtype:
    """One binary COPY tuple as a packed big-endian record (every row of a block alike)."""
    fields: list[tuple[Any, ...]] = [
        ("nfields", ">i2"), ("t_len", ">i4"), ("t", ">i8"),
        ("s_len", ">i4"), ("s", f"S{symbol_len}"),
        *_numeric_fields("bid"), *_numeric_fields("ask"), *_numeric_fields("last"),
        ("v_len", ">i4"), ("v", ">i8"), ("src_len", ">i4"), ("src", f"S{source_len}"),
        ("tr_len", ">i4"),
    ]
    if with_ids:
        fields.append(("tr", "u1", (16,)))
    fields.append(("ac_len", ">i4"))
    if with_ids:
        fields.append(("ac", "u1", (16,)))
    return np.dtype(fields)


def _scale(tick: Decimal) -> tuple[int, int]:
    """(m, k) with tick == m * 10**-k, k <= 8 (the columns' scale)."""
    sign, _digits, exponent = tick.normalize().as_tuple()
    k = max(0, -int(exponent))
    if sign or k > 8:
        raise ValueError(f"tick size {tick} does not fit DECIMAL(20, 8); use a positive tick "
                         "with at most 8 decimals")
    return int(tick.scaleb(k)), k


def _numeric_digits(ticks_: np.ndarray, tick: Decimal) -> np.ndarray:
    """Base-10000 digits (n, 5) of ``ticks_ * tick`` at scale 8."""
    m, k = _scale(tick)
    units = ticks_ * (m * 10 ** (8 - k))  # value * 1e8, exact in int64 below 9.2e10
    whole, frac = np.divmod(units, 10**8)
    return np.stack([whole // 10**8, (whole // 10**4) % 10**4, whole % 10**4,
                     frac // 10**4, frac % 10**4], axis=1)


def copy_buffer(cols: Columns, *, source: str = SOURCE_TAG) -> bytes:
    """The binary COPY tuples of ``cols`` (no signature, no trailer), built with numpy."""
    sym, src = cols.symbol.encode(), source.encode()
    blocks = []
    for with_ids in (False, True):
        sel = cols.has_trade == with_ids
        n = int(sel.sum())
        if not n:
            continue
        rec = np.zeros(n, dtype=_row_dtype(len(sym), len(src), with_ids))
        rec["nfields"] = len(COLUMNS)
        rec["t_len"], rec["t"] = 8, cols.time_us[sel]
        rec["s_len"], rec["s"] = len(sym), sym
        for name, values in (("bid", cols.bid), ("ask", cols.ask), ("last", cols.last)):
            rec[f"{name}_len"] = 8 + 2 * _NUMERIC_DIGITS
            rec[f"{name}_hdr"] = (_NUMERIC_DIGITS, 2, 0, 8)  # ndigits, weight, sign +, dscale
            rec[f"{name}_dig"] = _numeric_digits(values[sel], cols.tick)
        rec["v_len"], rec["v"] = 8, cols.volume[sel]
        rec["src_len"], rec["src"] = len(src), src
        if with_ids:
            rec["tr_len"], rec["tr"] = 16, cols.trade_id[sel]
            rec["ac_len"], rec["ac"] = 16, cols.account_id[sel]
        else:
            rec["tr_len"] = rec["ac_len"] = -1
        blocks.append(rec.tobytes())
    return b"".join(blocks)


@dataclass(frozen=True)
class Encoded:
    """One part's binary COPY tuples, encoded ahead of its load (see :func:`encode`)."""

    data: bytes
    rows: int

    @property
    def nominal_rows(self) -> int:
        return self.rows


def encode(part: Part) -> Encoded:
    """Generate ``part`` and build its binary COPY buffer now, to load it later."""
    cols = columns(part)
    return Encoded(copy_buffer(cols), len(cols))


# -- loading --------------------------------------------------------------------------------


def default_workers() -> int:
    """One connection per core of this machine (the embedded server shares them), 1-4."""
    return max(1, min(4, os.cpu_count() or 1))


def progress_enabled() -> bool:
    """Progress bars only on a terminal, and never with TSJ_NO_PROGRESS=1."""
    import sys

    return sys.stderr.isatty() and os.environ.get("TSJ_NO_PROGRESS") != "1"


def load(
    url: str,
    *,
    symbols: Sequence[str] = DEFAULT_SYMBOLS,
    start: dt.date | str,
    days: int = 1,
    interval_ms: int = 250,
    seed: int = DEFAULT_SEED,
    sessions: bool = False,
    table: str = "tick_data",
    workers: int | None = None,
    progress: bool | None = None,
) -> int:
    """Generate and bulk-load ticks into ``table``; returns the rows loaded.

    Parts are generated lazily, one per worker at a time, so memory stays bounded by
    ``workers * PART_ROWS`` rows whatever ``days`` is.
    """
    parts = plan(symbols, start=start, days=days, interval_ms=interval_ms, seed=seed,
                 sessions=sessions)
    return write_parts(url, parts, table=table, workers=workers, progress=progress)


def pending_parts(url: str, parts: Sequence[Part], *, table: str = "tick_data",
                  replace: bool = False) -> list[Part]:
    """The parts not loaded yet: a part already holding its ticks is skipped.

    A part's range holding some other number of ticks (an interrupted load, other data)
    is an error unless ``replace``, which deletes that range first: a re-run never
    doubles rows, and never mixes generated ticks into data it did not write.
    """
    count = queries.compose("generate.part_count", table=table)
    delete = queries.compose("generate.delete_part", table=table)
    todo: list[Part] = []
    with connect(url, autocommit=True) as conn:
        for part in parts:
            lo, hi = part.bounds()
            args = {"symbol": part.symbol, "lo": lo, "hi": hi}
            have = conn.execute(count, args).fetchone()[0]  # type: ignore[index]
            if have == part.expected_rows():
                continue
            if have and not replace:
                raise SchemaError(
                    f"{table} already holds {have:,} ticks of {part.symbol} in [{lo:%Y-%m-%d %H:%M}, "
                    f"{hi:%Y-%m-%d %H:%M}) UTC, not the {part.expected_rows():,} generated there; "
                    "pass --replace to regenerate that range"
                )
            if have:
                conn.execute(delete, args)
            todo.append(part)
    return todo


def write_parts(
    url: str,
    parts: Sequence[Part | Encoded],
    *,
    table: str = "tick_data",
    workers: int | None = None,
    progress: bool | None = None,
) -> int:
    """Binary-COPY ``parts`` into ``table`` over ``workers`` connections, a commit per part.

    A :class:`Part` is generated and encoded by the worker that loads it; an
    :class:`Encoded` one (from :func:`encode`) is sent as it is.
    """
    workers = default_workers() if workers is None else workers
    if not 1 <= workers <= 64:
        raise ValueError(f"workers={workers} is out of range; use 1-64")
    _require_table(url, table)
    from tqdm.auto import tqdm

    stmt = queries.compose("generate.copy_ticks_in", table=table)
    pending = iter(parts)
    lock, failed = threading.Lock(), threading.Event()
    bar = tqdm(total=sum(p.nominal_rows for p in parts), unit="rows", unit_scale=True,
               desc=f"load {table}", disable=not (progress_enabled() if progress is None else progress))

    def work() -> int:
        done = 0
        with connect(url) as conn:
            while not failed.is_set():  # one worker's error stops the others at a part edge
                with lock:
                    part = next(pending, None)
                if part is None:
                    break
                try:
                    done += _copy_part(conn, stmt, part)
                except BaseException:
                    failed.set()
                    raise
                bar.update(part.nominal_rows)
        return done

    t0 = _time.perf_counter()
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tsj-load") as ex:
            futures = [ex.submit(work) for _ in range(workers)]
            try:
                total = sum(f.result() for f in futures)
            except BaseException:  # Ctrl-C too: workers stop after their current part
                failed.set()
                raise
    finally:
        bar.close()
    log.info("loaded %d rows into %s in %.1f s", total, table, _time.perf_counter() - t0)
    return total


def ensure_data(target_url: str, spec: TickSpec, *, source_url: str | None = None) -> tuple[int, int]:
    """Generated ticks for a target (and source) that hold none; (target, source) rows loaded.

    Only when neither side holds ticks: the target is provisioned and loaded with ``spec``
    and its candle views brought up to date, and the source (if any) gets the same rows, so
    a later migration or reconciliation finds both sides equal. Existing ticks on either
    side are never touched (0, 0): a notebook or check then works on what is there.
    """
    from . import schema

    if _holds_ticks(target_url) or (source_url is not None and _holds_ticks(source_url)):
        return 0, 0
    schema.provision(target_url)
    target_rows = load_spec(target_url, spec)
    schema.refresh_candles(target_url)
    source_rows = 0
    if source_url is not None:
        schema.create_source(source_url)
        source_rows = load_spec(source_url, spec)
    return target_rows, source_rows


def load_spec(url: str, spec: TickSpec, *, progress: bool | None = False) -> int:
    """:func:`load` of a :class:`~tsj_lab.domain.TickSpec`."""
    return load(url, symbols=spec.symbols, start=spec.start, days=spec.days,
                interval_ms=spec.interval_ms, seed=spec.seed, sessions=spec.sessions,
                progress=progress)


def _holds_ticks(url: str) -> bool:
    if not table_exists(url):
        return False
    with connect(url, autocommit=True) as conn:
        row = conn.execute(queries.compose("generate.has_rows", table="tick_data")).fetchone()
    return bool(row and row[0])


def ensure_source(
    url: str,
    *,
    symbols: Sequence[str] = DEFAULT_SYMBOLS,
    start: dt.date | str,
    days: int = 1,
    interval_ms: int = 250,
    seed: int = DEFAULT_SEED,
) -> int:
    """A plain (source) tick_data holding ticks: created and loaded only when it is empty.

    Returns the rows loaded, 0 when the table already had some (they are left alone).
    """
    from . import schema

    plan(symbols, start=start, days=days, interval_ms=interval_ms, seed=seed)  # check first
    if not table_exists(url):
        schema.create_source(url)
    if _holds_ticks(url):
        return 0
    return load(url, symbols=symbols, start=start, days=days, interval_ms=interval_ms,
                seed=seed, progress=False)


def _copy_part(conn: Any, stmt: Any, part: Part | Encoded) -> int:
    enc = part if isinstance(part, Encoded) else encode(part)
    with conn.cursor() as cur:
        with cur.copy(stmt) as copy:
            copy.write(COPY_SIGNATURE)
            copy.write(enc.data)
            copy.write(COPY_TRAILER)
    conn.commit()
    return enc.rows


def table_exists(url: str, table: str = "tick_data") -> bool:
    with connect(url, autocommit=True) as conn:
        row = conn.execute(queries.text("generate.table_exists"), {"name": table}).fetchone()
    return bool(row and row[0])


def _require_table(url: str, table: str) -> None:
    from .errors import SchemaError

    if not table_exists(url, table):
        raise SchemaError(f"table '{table}' not found; run 'tsj provision' (target) "
                          "or 'tsj generate --source' (source)")


# -- ingest benchmark -----------------------------------------------------------------------

BENCH_TABLE = "tsj_ingest_bench"


#: the loads of one turn, in the order they run: psql \copy of a CSV written beforehand;
#: tsj binary COPY of buffers encoded beforehand (the like-for-like figure); tsj streamed
#: (generate + encode + load, as `tsj generate` does) over `workers` connections; and over 1
INGEST_METHODS = ("psql", "pre_encoded", "streamed", "streamed_1")


@dataclass(frozen=True)
class IngestResult:
    """The same rows loaded into the same fresh hypertable by each of :data:`INGEST_METHODS`,
    ``repeats`` times in alternating turns; the figures are medians over the turns."""

    rows: int
    workers: int
    seconds: Mapping[str, tuple[float, ...]]  # per method: each turn's load time, in order
    loaded: Mapping[str, tuple[int, ...]]  # per method: rows in the table after each load

    @property
    def repeats(self) -> int:
        return len(self.seconds["psql"])

    def rows_per_s(self, method: str) -> float:
        """The median over the turns of ``method``'s rows/s."""
        return statistics.median(self.rows / s for s in self.seconds[method])

    def ratio(self, method: str, base: str = "psql") -> float:
        """Median rows/s of ``method`` over median rows/s of ``base``."""
        return self.rows_per_s(method) / self.rows_per_s(base)

    @property
    def pre_encoded_rows_per_s(self) -> float:
        return self.rows_per_s("pre_encoded")

    @property
    def copy_rows_per_s(self) -> float:  # streamed, `workers` connections
        return self.rows_per_s("streamed")

    @property
    def copy_1_rows_per_s(self) -> float:  # streamed, 1 connection
        return self.rows_per_s("streamed_1")

    @property
    def psql_rows_per_s(self) -> float:
        return self.rows_per_s("psql")

    @property
    def copy_s(self) -> float:
        return statistics.median(self.seconds["streamed"])

    @property
    def copy_1_s(self) -> float:
        return statistics.median(self.seconds["streamed_1"])

    @property
    def psql_s(self) -> float:
        return statistics.median(self.seconds["psql"])

    @property
    def speedup(self) -> float:
        """The goal's ratio: pre-encoded binary COPY over psql \\copy (both inputs ready)."""
        return self.ratio("pre_encoded")

    def as_dict(self) -> dict[str, float | int]:
        """Medians over ``repeats`` turns; ``copy_*`` are the streamed loads."""
        return {"rows": self.rows, "workers": self.workers, "repeats": self.repeats,
                "psql_rows_per_s": round(self.psql_rows_per_s),
                "pre_encoded_rows_per_s": round(self.pre_encoded_rows_per_s),
                "copy_rows_per_s": round(self.copy_rows_per_s),
                "copy_1_rows_per_s": round(self.copy_1_rows_per_s),
                "speedup_vs_psql": round(self.speedup, 2),
                "streamed_speedup_vs_psql": round(self.ratio("streamed"), 2)}


def ingest_benchmark(
    url: str,
    *,
    symbols: Sequence[str] = DEFAULT_SYMBOLS,
    start: dt.date | str = "2024-01-02",
    days: int = 1,
    interval_ms: int = 250,
    seed: int = DEFAULT_SEED,
    workers: int | None = None,
    psql: str | None = None,
    repeats: int = 3,
) -> IngestResult:
    """Load the same ticks by each of :data:`INGEST_METHODS`, ``repeats`` turns of all of
    them in that order, into a scratch hypertable emptied and CHECKPOINTed before each load.

    The CSV and the pre-encoded buffers are written before any clock starts.
    """
    import tempfile

    if repeats < 1:
        raise ValueError(f"repeats={repeats} is out of range; use 1 or more")
    parts = plan(symbols, start=start, days=days, interval_ms=interval_ms, seed=seed)
    workers = default_workers() if workers is None else workers
    psql = psql or _psql_binary()
    with tempfile.TemporaryDirectory(prefix="tsj-ingest-") as tmp:
        csv = os.path.join(tmp, "ticks.csv")
        rows = _write_csv(parts, csv)
        loads = _ingest_loads(url, parts, [encode(p) for p in parts], csv, psql, workers)
        _bench_table(url, create=True)
        try:
            runs = _turns(url, loads, repeats)
        finally:
            _bench_table(url, create=False)
    result = IngestResult(rows, workers, {m: tuple(s for s, _ in r) for m, r in runs.items()},
                          {m: tuple(n for _, n in r) for m, r in runs.items()})
    _check_loaded(result)
    log.info("ingest benchmark: %s", result.as_dict())
    return result


def _check_loaded(result: IngestResult) -> None:
    """Every load must have left all the rows: a rate of a partial load means nothing."""
    wrong = {m: ns for m, ns in result.loaded.items() if set(ns) != {result.rows}}
    if wrong:
        from .errors import TsjError

        raise TsjError(f"ingest benchmark: loads left {wrong} rows, not {result.rows} each; "
                       f"is something else writing to {BENCH_TABLE}?")


def _ingest_loads(url: str, parts: Sequence[Part], encoded: Sequence[Encoded], csv: str,
                  psql: str, workers: int) -> dict[str, Any]:
    """Each method's load, a callable of no argument."""
    def tsj(items: Sequence[Part | Encoded], n: int) -> Any:
        return lambda: write_parts(url, items, table=BENCH_TABLE, workers=n, progress=False)

    return {"psql": lambda: _psql_copy(url, psql, csv), "pre_encoded": tsj(encoded, workers),
            "streamed": tsj(parts, workers), "streamed_1": tsj(parts, 1)}


def _turns(url: str, loads: Mapping[str, Any], repeats: int) -> dict[str, list[tuple[float, int]]]:
    """``repeats`` turns of every load in :data:`INGEST_METHODS` order: (seconds, rows) each."""
    runs: dict[str, list[tuple[float, int]]] = {m: [] for m in INGEST_METHODS}
    for _ in range(repeats):
        for method in INGEST_METHODS:
            runs[method].append(_timed(loads[method], url))
    return runs


def _write_csv(parts: Sequence[Part], path: str) -> int:
    rows = 0
    for i, part in enumerate(parts):
        df = frame(columns(part))
        df.to_csv(path, mode="a" if i else "w", header=not i, index=False, float_format="%.8f")
        rows += len(df)
    return rows


def _timed(load: Any, url: str) -> tuple[float, int]:
    """Seconds one load takes into the emptied scratch table, and the rows it left there."""
    with connect(url, autocommit=True) as conn:
        conn.execute(queries.compose("generate.truncate", table=BENCH_TABLE))
        try:  # each load starts without the previous one's dirty pages
            conn.execute(queries.text("generate.checkpoint"))
        except psycopg.errors.InsufficientPrivilege:
            log.info("no CHECKPOINT privilege on the target; loads may overlap flushes")
    t0 = _time.perf_counter()
    load()
    seconds = _time.perf_counter() - t0
    with connect(url, autocommit=True) as conn:
        row = conn.execute(queries.compose("generate.count", table=BENCH_TABLE)).fetchone()
    return seconds, int(row[0]) if row else 0


def _bench_table(url: str, *, create: bool) -> None:
    with connect(url, autocommit=True) as conn:
        if create:
            conn.execute(queries.compose("schema.create_tick_table", table=BENCH_TABLE))
            conn.execute(queries.text("generate.bench_hypertable"), {"name": BENCH_TABLE})
            conn.execute(queries.compose("generate.bench_index", table=BENCH_TABLE,
                                         index=BENCH_TABLE + "_idx"))
        else:
            conn.execute(queries.compose("generate.drop_table", table=BENCH_TABLE))


def _psql_binary() -> str:
    import shutil

    from .config import Settings
    from .embedded import from_settings

    bundled = from_settings(Settings.load()).bin / "psql"
    found = str(bundled) if bundled.is_file() else shutil.which("psql")
    if not found:
        from .errors import ConfigError

        raise ConfigError("psql not found; run 'tsj db setup' or install postgresql-client")
    return found


def _psql_copy(url: str, psql: str, csv: str) -> None:
    import subprocess

    from psycopg import sql

    from .errors import TsjError

    # psql takes one backslash command per -c: the statement without its doc comments
    code = [ln for ln in queries.text("generate.psql_copy").splitlines() if not ln.startswith("--")]
    with connect(url) as conn:
        meta = sql.SQL("\n".join(code)).format(table=sql.Identifier(BENCH_TABLE)).as_string(conn)
    with open(csv, "rb") as fh:
        res = subprocess.run([psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", meta],
                             stdin=fh, capture_output=True, text=True)
    if res.returncode:
        from .config import redact

        raise TsjError(f"psql \\copy failed: {redact(res.stderr.strip())}; check {psql}")
