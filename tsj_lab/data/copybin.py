"""PostgreSQL's binary COPY format for ticks: tuples built with numpy, no per-row Python.

One part's :class:`~tsj_lab.data.prices.Columns` become one structured array of packed
big-endian records, newest tick first, whose bytes are the COPY tuples (the id bytes of
ticks without a trade dropped); prices are DECIMAL(20, 8) in PostgreSQL's base-10000
numeric layout, sent binary so the server parses no text.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np

from ..domain import TICK_COLUMNS
from .prices import SOURCE_TAG, Columns, Part, columns

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


def copy_buffer(cols: Columns, *, source: str = SOURCE_TAG, descending: bool = True) -> bytes:
    """The binary COPY tuples of ``cols`` (no signature, no trailer), built with numpy.

    ``descending``: newest tick first, the order of the replay index (symbol, time DESC)
    and of the columnstore (segment by symbol, order by time DESC). The server then adds
    each index entry at the index's right edge (btree's fast path, no descent from the
    root) instead of at its left, and a direct compress COPY may promise sorted input.
    Every row is built as a tuple with ids, and the id bytes of the rows without a trade
    are then dropped (a NULL uuid has a length and no bytes), so the rows keep their order.
    """
    if descending:
        cols = cols.take(np.arange(len(cols) - 1, -1, -1))
    sym, src = cols.symbol.encode(), source.encode()
    dtype = _row_dtype(len(sym), len(src), with_ids=True)
    rec = np.zeros(len(cols), dtype=dtype)
    rec["nfields"] = len(TICK_COLUMNS)
    rec["t_len"], rec["t"] = 8, cols.time_us
    rec["s_len"], rec["s"] = len(sym), sym
    for name, values in (("bid", cols.bid), ("ask", cols.ask), ("last", cols.last)):
        rec[f"{name}_len"] = 8 + 2 * _NUMERIC_DIGITS
        rec[f"{name}_hdr"] = (_NUMERIC_DIGITS, 2, 0, 8)  # ndigits, weight, sign +, dscale
        rec[f"{name}_dig"] = _numeric_digits(values, cols.tick)
    rec["v_len"], rec["v"] = 8, cols.volume
    rec["src_len"], rec["src"] = len(src), src
    ids = cols.has_trade
    rec["tr_len"] = rec["ac_len"] = np.where(ids, 16, -1)
    rec["tr"], rec["ac"] = cols.trade_id, cols.account_id
    if ids.all():
        return rec.tobytes()
    keep = np.ones((len(cols), dtype.itemsize), dtype=bool)
    for field in ("tr", "ac"):
        offset = int(dtype.fields[field][1]) if dtype.fields else 0
        keep[~ids, offset:offset + 16] = False
    return rec.view(np.uint8).reshape(len(cols), dtype.itemsize)[keep].tobytes()


@dataclass(frozen=True)
class Encoded:
    """One part's binary COPY tuples, encoded ahead of its load (see :func:`encode`), with
    what the client knows of them: a loader's verification compares these with what the
    server reports, without reading the rows back."""

    data: bytes
    rows: int
    symbol: str = ""
    day: dt.date | None = None  # the part's UTC day
    index: int = 0  # the part's number within the day
    min_us: int = 0  # its oldest and newest tick, PostgreSQL microseconds
    max_us: int = 0

    @property
    def nominal_rows(self) -> int:
        return self.rows


def encoded(items: Sequence[Part | Encoded]) -> Iterator[Encoded]:
    """``items`` encoded in order, the next one generated and encoded in a thread while the
    caller sends this one (numpy releases the GIL for most of the work, and the COPY waits
    on the server): a symbol-day streamed 22 % faster (1.22 against 1.57 s for 345,600
    rows, n = 6, in turns), for one more part in memory per connection."""
    if all(isinstance(i, Encoded) for i in items) or len(items) < 2:
        yield from (i if isinstance(i, Encoded) else encode(i) for i in items)
        return
    with ThreadPoolExecutor(1, thread_name_prefix="tsj-encode") as pool:
        ahead = pool.submit(_encoded_one, items[0])
        for nxt in [*items[1:], None]:
            enc = ahead.result()
            if nxt is not None:
                ahead = pool.submit(_encoded_one, nxt)
            yield enc


def _encoded_one(item: Part | Encoded) -> Encoded:
    return item if isinstance(item, Encoded) else encode(item)


def encode(part: Part) -> Encoded:
    """Generate ``part`` and build its binary COPY buffer now, to load it later."""
    cols = columns(part)
    times = cols.time_us
    return Encoded(copy_buffer(cols), len(cols), part.symbol, part.day, part.index,
                   int(times.min()) if len(times) else 0, int(times.max()) if len(times) else 0)
