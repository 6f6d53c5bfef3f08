"""History straight into compressed chunks: the loader's path for days past the horizon.

A UTC day older than the target's compression horizon (``now() - compress_after`` of its
compression policy) is written by one direct compress COPY (TimescaleDB 2.23+), in one
transaction on one connection: its parts in the columnstore's order (segment by symbol,
newest first: :func:`~tsj_lab.data.copybin.copy_buffer` encodes each part newest first,
and the parts go in by symbol, last part first), with the client's promise that the input
is sorted (``enable_direct_compress_copy_client_sorted``), so the server neither sorts
nor marks the chunk unordered and the compression job has nothing left to do.

Verification reads no row back: the client counts each symbol's ticks and their oldest
and newest time while encoding, and compares them, inside the same transaction, with
COPY's row count and with the compressed batches' own metadata (``_ts_meta_count``, the
order column's min/max), and the chunk must be compressed, neither unordered nor
partial. A refused COPY or a mismatch rolls the whole day back: one line, nothing of
that day written.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from .. import queries
from ..db import Endpoint, capabilities, connect, scalar
from ..errors import ConfigError, LoadError
from ..provision import layout
from .copybin import COPY_SIGNATURE, COPY_TRAILER, Encoded, encoded
from .prices import PG_EPOCH_US, Part

log = logging.getLogger("tsj_lab")

#: what a day's transaction sets (SET LOCAL): compress on COPY, the input is sorted
DIRECT_SETTINGS = ("timescaledb.enable_direct_compress_copy",
                   "timescaledb.enable_direct_compress_copy_client_sorted")
#: _timescaledb_catalog.chunk.status bits: compressed; unordered and partial must stay off
COMPRESSED, UNORDERED, PARTIAL = 1, 2, 8
_DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class Horizon:
    """Up to when ``table`` takes days compressed on COPY: days ending by ``before``;
    ``before`` None with the ``reason`` the server cannot."""

    before: dt.datetime | None
    reason: str = ""


@dataclass(frozen=True)
class Day:
    """One UTC day's parts, written compressed by one COPY in one transaction."""

    day: dt.date
    items: tuple[Part | Encoded, ...]  # in the columnstore's order: symbol, last part first

    @property
    def nominal_rows(self) -> int:
        return sum(p.nominal_rows for p in self.items)

    def bounds(self) -> tuple[dt.datetime, dt.datetime]:
        lo = dt.datetime.combine(self.day, dt.time(), dt.UTC)
        return lo, lo + _DAY


@dataclass
class _Totals:
    """What the client sent of one symbol: ticks, oldest and newest time (PostgreSQL us)."""

    rows: int = 0
    lo: int | None = None
    hi: int | None = None

    def add(self, enc: Encoded) -> None:
        if not enc.rows:
            return
        self.rows += enc.rows
        self.lo = enc.min_us if self.lo is None else min(self.lo, enc.min_us)
        self.hi = enc.max_us if self.hi is None else max(self.hi, enc.max_us)

    def as_tuple(self) -> tuple[int, dt.datetime | None, dt.datetime | None]:
        return self.rows, _time_of(self.lo), _time_of(self.hi)


def horizon(conn: psycopg.Connection[Any], *, table: str = "tick_data",
            db: Endpoint | str | None = None) -> Horizon:
    """Whether ``table`` on ``conn`` takes days compressed on COPY, and up to when: the
    timescale license, the direct compress settings, 1-day chunks, the story's columnstore
    order (segment by symbol, time DESC: the order the client sorts in) and a compression
    policy (its horizon)."""
    caps = capabilities(db, conn) if db is not None else capabilities(conn)
    if caps.license != "timescale":
        return Horizon(None, f"no compression under the {caps.license or 'missing'} license")
    names = {r[0] for r in conn.execute(queries.text("generate.direct_settings"))}
    if set(DIRECT_SETTINGS) - names:
        return Horizon(None, f"TimescaleDB {caps.timescaledb_version} has no sorted direct "
                             "compress COPY (2.23+)")
    lay = layout.read(conn, table=table, license=caps.license)
    if not lay.hypertable or lay.chunk_interval != _DAY:
        return Horizon(None, f"{table} is not a hypertable of 1-day chunks")
    if not layout.story_compression(*(lay.settings or (None, None))):
        return Horizon(None, f"{table}'s columnstore is not segmented by symbol, ordered by "
                             "time DESC")
    if lay.compress_after is None:
        return Horizon(None, f"{table} has no compression policy")
    return Horizon(scalar(conn, queries.text("generate.server_now")) - lay.compress_after)


def split(url: Endpoint | str, parts: Sequence[Part | Encoded], *, table: str = "tick_data",
          required: bool = False) -> tuple[list[Day], list[Part | Encoded]]:
    """``parts`` as the days that go in compressed and the parts that go in plain.

    A day goes in compressed when the server can (:func:`horizon`), the day ends by the
    horizon and no chunk overlaps it yet. ``required``: every day must, else ConfigError.
    """
    by_day: dict[dt.date, list[Part | Encoded]] = {}
    for p in parts:
        if p.day is None:
            raise ValueError("an Encoded part without its day cannot be loaded compressed; "
                             "build it with copybin.encode(part)")
        by_day.setdefault(p.day, []).append(p)
    with connect(url, autocommit=True) as conn:
        hz = horizon(conn, table=table, db=url)
        taken = _chunked_days(conn, table, sorted(by_day)) if hz.before else set()
    days: list[Day] = []
    plain: list[Part | Encoded] = []
    for day, items in sorted(by_day.items()):
        end = dt.datetime.combine(day, dt.time(), dt.UTC) + _DAY
        why = (hz.reason if hz.before is None else
               f"{day} is not older than the compression horizon {hz.before:%Y-%m-%d %H:%M} UTC"
               if end > hz.before else
               f"{day} already has a chunk in {table}" if day in taken else "")
        if why and required:
            raise ConfigError(f"cannot load {day} of {table} compressed: {why}; load it plain "
                              "(direct=None or False)")
        if why:
            plain.extend(items)
        else:
            days.append(Day(day, tuple(sorted(items, key=lambda p: (p.symbol, -p.index)))))
    return days, plain


def copy_day(conn: psycopg.Connection[Any], stmt: Any, unit: Day, *,
             table: str = "tick_data") -> int:
    """Write ``unit`` compressed and verify it, in one transaction on ``conn`` (not in
    autocommit); returns its rows. Refused or wrong: LoadError, nothing of the day kept."""
    sent: dict[str, _Totals] = {}
    with conn.transaction():
        for name in DIRECT_SETTINGS:
            conn.execute(queries.text("generate.set_local"), {"name": name, "value": "on"})
        with conn.cursor() as cur:
            try:
                with cur.copy(stmt) as copy:
                    copy.write(COPY_SIGNATURE)
                    for enc in encoded(unit.items):
                        sent.setdefault(enc.symbol, _Totals()).add(enc)
                        copy.write(enc.data)
                    copy.write(COPY_TRAILER)
            except psycopg.Error as exc:
                raise LoadError(f"{unit.day} of {table} refused by the server: "
                                f"{_first_line(exc)}; nothing of that day was written") from None
            copied = cur.rowcount
        rows = sum(t.rows for t in sent.values())
        if copied != rows:
            _wrong(unit, table, f"COPY counted {copied:,} rows, the client sent {rows:,}")
        verify_day(conn, unit, sent, table=table)
    return rows


def verify_day(conn: psycopg.Connection[Any], unit: Day, sent: dict[str, _Totals], *,
               table: str = "tick_data") -> None:
    """The day's chunk compressed (not unordered, not partial) and its batches' metadata
    holding, per symbol, the ticks and the time range the client sent; LoadError if not."""
    lo, hi = unit.bounds()
    chunks = conn.execute(queries.text("generate.day_chunks"),
                          {"table": table, "lo": lo, "hi": hi}).fetchall()
    got: dict[str, tuple[int, Any, Any]] = {}
    for name, status, cschema, ctable in chunks:
        if cschema is None or status != COMPRESSED:
            _wrong(unit, table, f"chunk {name} has status {status}, not {COMPRESSED} "
                                "(compressed, neither unordered nor partial)")
        query = queries.compose("generate.batch_totals", chunk=sql.Identifier(cschema, ctable))
        for symbol, n, first, last in conn.execute(query):
            had = got.get(symbol)
            got[symbol] = (n, first, last) if had is None else (
                had[0] + n, min(had[1], first), max(had[2], last))
    want = {s: t.as_tuple() for s, t in sent.items() if t.rows}
    if got != want:
        _wrong(unit, table, f"the columnstore holds {_show(got)}, the client sent {_show(want)}")


def _chunked_days(conn: psycopg.Connection[Any], table: str, days: list[dt.date]) -> set[dt.date]:
    """The days among ``days`` that some chunk of ``table`` overlaps already."""
    if not days:
        return set()
    lo = dt.datetime.combine(days[0], dt.time(), dt.UTC)
    hi = dt.datetime.combine(days[-1], dt.time(), dt.UTC) + _DAY
    ranges = conn.execute(queries.text("generate.chunk_ranges"),
                          {"table": table, "lo": lo, "hi": hi}).fetchall()
    out = set()
    for day in days:
        start = dt.datetime.combine(day, dt.time(), dt.UTC)
        if any(r_lo < start + _DAY and r_hi > start for r_lo, r_hi in ranges):
            out.add(day)
    return out


def _wrong(unit: Day, table: str, what: str) -> None:
    raise LoadError(f"{unit.day} of {table} did not verify: {what}; rolled back, nothing of "
                    "that day was written; load it plain (direct=False, tsj generate --no-direct)")


def _time_of(us: int | None) -> dt.datetime | None:
    if us is None:
        return None
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=us + PG_EPOCH_US)


def _show(totals: dict[str, tuple[int, Any, Any]]) -> str:
    return ", ".join(f"{s} {n:,} ticks {a:%H:%M:%S.%f}-{b:%H:%M:%S.%f}"
                     for s, (n, a, b) in sorted(totals.items())) or "nothing"


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
