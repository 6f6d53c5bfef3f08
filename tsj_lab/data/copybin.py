"""PostgreSQL's binary COPY format for ticks: tuples built with numpy, no per-row Python.

One part's :class:`~tsj_lab.data.prices.Columns` become one structured array of packed
big-endian records (a block for ticks with trade ids, one without), whose bytes are the
COPY tuples; prices are DECIMAL(20, 8) in PostgreSQL's base-10000 numeric layout.
"""

from __future__ import annotations

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
        rec["nfields"] = len(TICK_COLUMNS)
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
