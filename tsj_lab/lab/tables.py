"""How tables read in notebooks and reports: prices at the instrument's tick precision,
counts as whole numbers with thousands separators, other figures to two decimals.

pandas' own switches do the work (a :class:`~pandas.io.formats.style.Styler` with
per-column formats, ``DataFrame.to_html(formatters=...)``); this module only decides which
column is which. A Styler renders the same in JupyterLab and in the HTML report.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
from pandas.io.formats.style import Styler

from ..data import prices

#: columns that hold prices (the tick table's and the candles')
PRICE_COLUMNS = ("bid_price", "ask_price", "last_price", "price", "open", "high", "low", "close")
#: the story's DECIMAL(20,8): no price needs more decimals than this
MAX_DECIMALS = 8


def tick_decimals(symbol: str | None = None, values: Iterable[Any] = ()) -> int:
    """Decimals of the instrument's tick (ES 0.25: 2); for a symbol the price model does
    not know, the fewest decimals that show every one of ``values`` exactly."""
    if symbol in prices.SPECS:
        return _decimals(prices.SPECS[symbol].tick)
    found = [_decimals(v) for v in values if v is not None and not pd.isna(v)]
    return max(found, default=2)


def _float_decimals(values: pd.Series) -> int:
    """The fewest decimals that keep every float of ``values`` (one pass per decimal, not
    per value: a frame is formatted each time it is displayed)."""
    x = values.to_numpy(dtype=float)
    for d in range(MAX_DECIMALS + 1):
        if np.allclose(np.round(x, d), x, rtol=0, atol=1e-9):
            return d
    return MAX_DECIMALS


def _decimals(value: Any) -> int:
    if isinstance(value, Decimal):
        exponent = value.normalize().as_tuple().exponent
        return min(max(-int(exponent), 0), MAX_DECIMALS)
    for d in range(MAX_DECIMALS + 1):  # a float: the first rounding that keeps it
        if np.isclose(round(float(value), d), float(value), rtol=0, atol=1e-9):
            return d
    return MAX_DECIMALS


def styled(df: pd.DataFrame, *, symbol: str | None = None, counts: Iterable[str] = (),
           percents: Iterable[str] = ()) -> Styler:
    """``df`` with prices at tick precision, counts ("{:,}") and everything else to 2 decimals.

    Counts are integer columns and those named in ``counts`` (a count summed as float);
    ``percents`` get a '%'. A ``describe()`` frame's ``count`` row is a count too.
    """
    style = df.style.format(precision=2, thousands=",", na_rep="")
    counts, percents = set(counts), set(percents)
    for col in df.columns:
        kind = df[col].dtype
        if col in PRICE_COLUMNS and not pd.api.types.is_datetime64_any_dtype(kind):
            d = tick_decimals(symbol, df[col].head(1000))
            style = style.format(f"{{:,.{d}f}}", subset=[col], na_rep="")
        elif col in counts or pd.api.types.is_integer_dtype(kind):
            style = style.format("{:,.0f}", subset=[col], na_rep="")
        elif col in percents:
            style = style.format("{:.2f} %", subset=[col], na_rep="")
    if "count" in df.index:
        style = style.format("{:,.0f}", subset=pd.IndexSlice[["count"], :], na_rep="")
    return style


def describe(df: pd.DataFrame, *, symbol: str | None = None) -> Styler:
    """``df.describe()`` as a person reads it: counts whole, prices at tick precision."""
    return styled(df.describe(), symbol=symbol)


def value_column(rows: dict[str, Any], *, symbol: str | None = None, counts: Iterable[str] = (),
                 prices_: Iterable[str] = (), percents: Iterable[str] = ()) -> Styler:
    """A dict of mixed figures as one 'value' column, each row formatted by its kind."""
    frame = pd.Series(rows, dtype=object).to_frame("value")
    style = frame.style.format(precision=2, thousands=",")
    d = tick_decimals(symbol, [rows[k] for k in prices_])
    for keys, fmt in ((counts, "{:,.0f}"), (prices_, f"{{:,.{d}f}}"), (percents, "{:.2f} %")):
        keys = [k for k in keys if k in frame.index]
        if keys:
            style = style.format(fmt, subset=pd.IndexSlice[keys, "value"])
    return style


def formatters(df: pd.DataFrame) -> dict[Any, Any]:
    """Per column, how its values read (judged on the first 1,000 rows):

    - Decimals (NUMERIC from ``%%sql``: 4297.25000000) and float prices: the decimals
      their values need, 8 at most (the tick: 4297.25);
    - integers, and floats that hold whole numbers (a count with a gap: 240.0): 1,631,676;
    - other floats: thousands separated, 0 decimals from 1,000 up (186,343, not 1.86e+05),
      2 from 1 up (-3.91, not -3.909477), 4 below.
    """
    out: dict[Any, Any] = {}
    for col in df.columns:
        values = df[col]
        if not isinstance(values, pd.Series):
            continue  # a repeated column name: pandas' own display
        sample, kind = values.head(1000).dropna(), values.dtype
        if pd.api.types.is_bool_dtype(kind) or not len(sample):
            continue
        if pd.api.types.is_object_dtype(kind):
            if all(isinstance(v, Decimal) for v in sample):
                out[col] = _fixed(max(_decimals(v) for v in sample))
        elif pd.api.types.is_integer_dtype(kind):
            out[col] = _fixed(0)
        elif pd.api.types.is_float_dtype(kind):
            if col in PRICE_COLUMNS:
                out[col] = _fixed(_float_decimals(sample))
            elif bool((sample == sample.round()).all()):
                out[col] = _fixed(0)
            else:
                size = float(sample.abs().median())
                cap = 0 if size >= 1000 else 2 if size >= 1 else 4
                out[col] = _fixed(min(cap, _float_decimals(sample)))
    return out


def _fixed(decimals: int) -> Any:
    def fmt(v: Any) -> str:
        return str(v) if v is None or pd.isna(v) else f"{v:,.{decimals}f}"
    return fmt


def frame_html(df: pd.DataFrame) -> str:
    """pandas' own notebook HTML of ``df`` (display options and truncation as
    ``DataFrame._repr_html_``), each column read as :func:`formatters` says; a frame
    pandas would describe by ``info()``, or a ``display.float_format`` someone set, wins."""
    try:
        found = {} if pd.get_option("display.float_format") else formatters(df)
        if not found or df._info_repr() or not pd.get_option("display.notebook_repr_html"):
            return df._repr_html_() or ""
        max_rows = pd.get_option("display.max_rows")
        if max_rows and len(df) > max_rows:
            max_rows = pd.get_option("display.min_rows") or max_rows  # as _repr_html_ does
        return df.to_html(formatters=found, notebook=True, max_rows=max_rows,
                          max_cols=pd.get_option("display.max_columns"),
                          show_dimensions=pd.get_option("display.show_dimensions"))
    except Exception:  # a frame these rules do not fit (odd labels, odd values): pandas' own
        return df._repr_html_() or ""


def series_html(s: pd.Series) -> str:
    """A Series as a one-column table (a Series has no HTML of its own, so a report showed
    ``pd.Series(figures)`` as text: 1.86e+05, 240.0). A Series of numbers is often a
    column of unlike figures (rows, rows/s, a speedup): each value reads by its own size."""
    frame = s.to_frame(s.name if s.name is not None else "")
    if not pd.api.types.is_float_dtype(s.dtype) or pd.get_option("display.float_format"):
        return frame_html(frame)
    shown = frame.map(_by_size)
    return shown.to_html(notebook=True, max_rows=pd.get_option("display.max_rows"),
                         show_dimensions=pd.get_option("display.show_dimensions"))


def _by_size(v: Any) -> str:
    if pd.isna(v):
        return str(v)
    size = abs(float(v))
    decimals = 0 if float(v).is_integer() or size >= 1000 else 2 if size >= 1 else 4
    return f"{v:,.{min(decimals, _decimals(v))}f}"


def record_html(obj: Any) -> str:
    """A dataclass as a two-column table of its fields, times in ISO UTC (not its repr:
    ``Dataset(symbols=..., start=datetime.datetime(2026, 1, 18, 0, 0, tzinfo=...))``)."""
    rows = {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    return pd.Series(rows, dtype=object).to_frame(type(obj).__name__).to_html(notebook=True)


def _plain(value: Any) -> str:
    if isinstance(value, datetime):
        ts = pd.Timestamp(value)
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        return f"{ts:%Y-%m-%d %H:%M:%S} UTC"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if value.is_integer() else f"{value:,.2f}"
    return str(value)
