"""Candles for the explorer: read a symbol's candles at any width, and summarize them.

Widths with a candle view (1m, 5m, 15m, 1h) are read from it; any other width ('2m',
'4h', '1d') is aggregated from the raw ticks with time_bucket. Both go through the fast
fetch path :func:`tsj_lab.db.read_frame` (one row of column arrays, a prepared statement
with a generic plan where the database allows: the real-time view is not planned again on
every read). Prices are floats for the chart; ``exact=True`` keeps them as the database
holds them, ``Decimal``. Every range is [start, end) in UTC.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd
from pandas.io.formats.style import Styler
from IPython.display import display

from ..data import generate
from . import plots, tables
from .. import queries
from ..provision import schema
from ..db import Endpoint, connection, one, read_frame
from ..domain import CANDLES, DEFAULT_SEED, TickSpec, utc_range, utc_time
from ..errors import SchemaError

log = logging.getLogger("tsj_lab")

#: the widths a candle view serves, and the view
VIEWS = {c.name: c.view for c in CANDLES}
TIMEFRAMES = ("1m", "2m", "5m", "15m", "30m", "1h", "4h", "1d")  # what the controls offer
_WIDTH = re.compile(r"^([1-9][0-9]*)(s|m|h|d)$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
COLUMNS = ("bucket", "open", "high", "low", "close", "volume", "tick_count")


def width(timeframe: str) -> timedelta:
    """'15m' -> 15 minutes; ``ValueError`` naming the accepted forms otherwise."""
    m = _WIDTH.match(str(timeframe).strip())
    if not m:
        raise ValueError(f"timeframe {timeframe!r} is not a width like '1m', '5m', '2h' or "
                         "'1d' (a whole number and one of s, m, h, d)")
    return timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})


def window(start: str | date | datetime, end: str | date | datetime | None = None, *,
           days: int = 1) -> tuple[datetime, datetime]:
    """[start, end) as aware UTC datetimes; a bare date means its UTC midnight.

    Without ``end`` the window is ``days`` days long.
    """
    lo = utc_time(start, "from")
    if lo is None:
        raise ValueError("from is empty; use a date like '2024-01-02'")
    if end is None:
        return lo, lo + timedelta(days=days)
    hi = utc_range(lo, end, names=("from", "to"))[1]  # the controls' words
    assert hi is not None  # end is given
    return lo, hi


def _shown(t: datetime) -> str:
    """A time as the controls and the chart say it: '2026-01-18 09:30 UTC'."""
    return f"{t:%Y-%m-%d %H:%M} UTC"


def read(url: Endpoint | str, *, symbol: str, timeframe: str, start: datetime, end: datetime,
         exact: bool = False) -> pd.DataFrame:
    """One symbol's candles in [start, end): from its view when the width has one.

    ``df.attrs['source']`` says where they came from ('candle_5m' or 'raw ticks').
    ``exact``: open, high, low and close as ``Decimal`` (NUMERIC(20,8) as stored: 71234.25,
    0.00000001), not float.
    """
    step = width(timeframe)
    view = VIEWS.get(timeframe)
    params: dict[str, Any] = {"symbol": symbol, "start": start, "end": end}
    suffix = "_exact" if exact else ""
    if view:
        _check_aligned(start, end, step, timeframe)
        df = read_frame(url, f"candles.view_range{suffix}", params, identifiers={"view": view})
    else:
        df = read_frame(url, f"candles.raw_range{suffix}", params | {"width": step})
    df = df[list(COLUMNS)]
    df["bucket"] = pd.to_datetime(df["bucket"], utc=True)
    # what the chart needs to read right: the instrument's tick, the window asked for
    df.attrs.update(source=view or "raw ticks", symbol=symbol, timeframe=timeframe,
                    window=(start, end), decimals=tables.tick_decimals(symbol, df["close"]))
    return df


def _check_aligned(start: datetime, end: datetime, step: timedelta, timeframe: str) -> None:
    # A view's buckets start on multiples of the width: a range cutting one would
    # drop its ticks from the candles but not from the raw totals.
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    for name, t in (("from", start), ("to", end)):
        if (t - epoch) % step:
            raise ValueError(f"{name} {_shown(t)} is not on a {timeframe} boundary; "
                             f"round it, or pick a width without a view")


def tick_totals(url: Endpoint | str, *, symbol: str, start: datetime, end: datetime) -> dict[str, int]:
    """Tick count and volume of ``symbol`` in [start, end), from the raw ticks."""
    with connection(url) as conn:
        ticks, volume = one(conn, queries.text("candles.tick_totals"),
                            {"symbol": symbol, "start": start, "end": end})
    return {"ticks": int(ticks), "volume": int(volume)}


def symbols(url: Endpoint | str) -> pd.DataFrame:
    """Every symbol with its first and last tick time (empty without ticks)."""
    with connection(url) as conn:
        if not schema.has_table(conn, "tick_data"):
            return pd.DataFrame(columns=["symbol", "first_time", "last_time"])
        rows = conn.execute(queries.text("candles.symbols")).fetchall()
    return pd.DataFrame(rows, columns=["symbol", "first_time", "last_time"])


@dataclass(frozen=True)
class Choice:
    """What to show: a symbol and a [start, end) window."""

    symbol: str
    start: datetime
    end: datetime


def choose(url: Endpoint | str, *, symbol: str | None = None, start: str | date | datetime | None = None,
           end: str | date | datetime | None = None) -> Choice:
    """The symbol and window asked for; None picks the first symbol / its last UTC day of ticks."""
    found = symbols(url)
    if found.empty:
        raise SchemaError("tick_data holds no ticks; run 'tsj generate' or 'tsj migrate' first")
    known = list(found["symbol"])
    if symbol is None:
        symbol = known[0]
    elif symbol not in known:
        raise ValueError(f"symbol {symbol!r} has no ticks; the target has {known}")
    if start is None:
        last = pd.Timestamp(found.set_index("symbol").at[symbol, "last_time"]).tz_convert("UTC")
        start = last.floor("D").to_pydatetime()
    lo, hi = window(start, end)
    return Choice(symbol, lo, hi)


def ensure_sample(url: Endpoint | str, *, source: Endpoint | str | None = None,
                  symbols: tuple[str, ...] = ("ES", "BTCUSD"), start: str | date | None = None,
                  days: int = 1, interval_ms: int = 2000, seed: int | None = None) -> int:
    """Provision and load a small synthetic data set when the target has no ticks yet.

    A fresh `make lab` or CI run thus has something to chart; a target with ticks is
    left alone (0 rows loaded). ``source`` (an Endpoint or URL) gets the same rows when
    it is empty too, so a later migration or reconciliation finds both sides equal; when
    it holds ticks the target stays empty (migrate those instead). The days end yesterday
    (UTC) unless ``start`` says otherwise: nothing is past a retention policy or in the
    future.
    """
    if generate.holds_ticks(url):
        return 0
    seed = DEFAULT_SEED if seed is None else seed
    if start is None:
        spec = TickSpec.ending_yesterday(symbols, days=days, interval_ms=interval_ms, seed=seed)
    else:
        spec = TickSpec(tuple(symbols), _as_date(start), days, interval_ms, seed)
    rows, _ = generate.ensure_data(url, spec, source_url=source)
    if rows:
        log.info("candles: loaded %d sample ticks into an empty target", rows)
    return rows


def _as_date(value: str | date) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


#: how summary() figures read: counts whole with separators, prices at the tick, percents
_COUNTS = ("candles", "ticks", "volume", "up_candles", "down_candles")
_PRICES = ("open", "close", "high", "low")
_PERCENTS = ("return_pct", "range_pct", "best_candle_pct", "worst_candle_pct")


def summary_frame(stats: dict[str, Any], *, symbol: str | None = None) -> Styler:
    """:func:`summary` as a one-column table: counts as 1,631,676, prices at ``symbol``'s
    tick precision, percentages to two decimals (not 9.6e+01, 1631676 or -3.909477)."""
    return tables.value_column(stats, symbol=symbol, counts=_COUNTS, prices_=_PRICES,
                               percents=_PERCENTS)


def summary(df: pd.DataFrame) -> dict[str, Any]:
    """Return, range and volume of a candle frame (first open to last close)."""
    if df.empty:
        raise ValueError("no candles to summarize; widen the range or pick another symbol")
    first, last = float(df["open"].iloc[0]), float(df["close"].iloc[-1])
    high, low = float(df["high"].max()), float(df["low"].min())
    moves = df["close"] / df["open"] - 1
    return {
        "candles": len(df),
        "ticks": int(df["tick_count"].sum()),
        "volume": int(df["volume"].sum()),
        "open": first,
        "close": last,
        "return_pct": (last / first - 1) * 100,
        "high": high,
        "low": low,
        "range_pct": (high - low) / first * 100,
        "up_candles": int((moves > 0).sum()),
        "down_candles": int((moves < 0).sum()),
        "best_candle_pct": float(moves.max() * 100),
        "worst_candle_pct": float(moves.min() * 100),
    }


def volume_by_hour(df: pd.DataFrame) -> pd.DataFrame:
    """Volume per UTC hour of day (a candle counts in the hour it starts), all 24 hours."""
    hours = df["bucket"].dt.hour
    by_hour = df.groupby(hours)["volume"].sum().reindex(range(24), fill_value=0)
    out = by_hour.rename_axis("hour").reset_index()
    total = out["volume"].sum()
    out["share_pct"] = out["volume"] / total * 100 if total else 0.0
    return out


@dataclass(frozen=True)
class Consistency:
    name: str
    ok: bool
    detail: str


def consistency(df: pd.DataFrame, totals: dict[str, int]) -> list[Consistency]:
    """Candles against themselves and against the raw ticks of the same range."""
    body_top = df[["open", "close"]].max(axis=1)
    body_bottom = df[["open", "close"]].min(axis=1)
    volume, ticks = int(df["volume"].sum()), int(df["tick_count"].sum())
    return [
        Consistency("candles_present", not df.empty, f"{len(df)} candles"),
        Consistency("high_above_body", bool((df["high"] >= body_top).all()),
                    f"{int((df['high'] < body_top).sum())} candles with high < max(open, close)"),
        Consistency("low_below_body", bool((df["low"] <= body_bottom).all()),
                    f"{int((df['low'] > body_bottom).sum())} candles with low > min(open, close)"),
        Consistency("volume_matches_ticks", volume == totals["volume"],
                    f"candles {volume}, raw ticks {totals['volume']}"),
        Consistency("tick_count_matches_ticks", ticks == totals["ticks"],
                    f"candles {ticks}, raw ticks {totals['ticks']}"),
    ]


def explorer(url: Endpoint | str, *, choice: Choice, timeframe: str) -> Any:
    """ipywidgets controls over :func:`read`, the candlestick and the summary (JupyterLab)."""
    def show(symbol: str, timeframe: str, start: date, end: date) -> None:
        try:
            lo, hi = window(start, end)
            df = read(url, symbol=symbol, timeframe=timeframe, start=lo, end=hi)
            print(f"{symbol} {timeframe} candles from {_shown(lo)} to {_shown(hi)} (excl.), "
                  f"from {df.attrs['source']}")
            display(plots.candlestick(df, title=f"{symbol} {timeframe} ({df.attrs['source']})"))
            display(summary_frame(summary(df), symbol=symbol))
        except (ValueError, SchemaError) as exc:
            print(exc)  # a bad pick in the controls is a message, not a traceback

    found = symbols(url)
    return plots.candle_controls(show, symbols=list(found["symbol"]), timeframes=TIMEFRAMES,
                                 symbol=choice.symbol, timeframe=timeframe, days=day_choices(found),
                                 start=choice.start.date(), end=choice.end.date())


def day_choices(found: pd.DataFrame) -> list[date]:
    """The UTC midnights from the first tick's day to the day after the last (the ``to``
    of a range is exclusive), from :func:`symbols`; the newest 3,660 at most."""
    first = pd.Timestamp(found["first_time"].min()).tz_convert("UTC").floor("D")
    last = pd.Timestamp(found["last_time"].max()).tz_convert("UTC").floor("D")
    span = pd.date_range(first, last + pd.Timedelta(days=1), freq="D")
    return [d.date() for d in span[-3660:]]
