"""Counts and digests of a tick table one symbol-day at a time (sql/digest.sql).

A digest over a whole window is one statement as long as the table is large: on a
Supabase source a role's ``statement_timeout`` ends it (issue 26: the verification died
in it after every row was copied). Here each statement reads one symbol's UTC day, a
range of the ``(symbol, time)`` index the story's table and the hypertable both have:
the symbols by a loose index scan, each symbol's first and last tick, one statement per
day in between, and one for the odd rows (outside the tick domain, or a NULL symbol).
The statements of a walk are pipelined (one round trip for many), and the rows are
those ``digest.day`` gives for the window, so either side of a comparison may use either.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import psycopg

from .. import queries

#: the tick domain (see sql/digest.sql): days outside it are odd rows
DOMAIN = (dt.datetime(1, 1, 2, tzinfo=dt.UTC), dt.datetime(9999, 12, 31, tzinfo=dt.UTC))
_DAY = dt.timedelta(days=1)

Row = tuple[Any, ...]


def symbols(conn: psycopg.Connection[Any], *, table: str = "tick_data") -> list[str]:
    """The table's non-NULL symbols, by a loose index scan."""
    return [r[0] for r in conn.execute(queries.compose("digest.symbols", table=table))]


def spans(conn: psycopg.Connection[Any], syms: Sequence[str], *, table: str = "tick_data",
          since: dt.datetime | None = None, until: dt.datetime | None = None
          ) -> dict[str, tuple[dt.datetime, dt.datetime]]:
    """Each symbol's first and last tick inside the tick domain and [since, until);
    symbols without one are left out."""
    found = pipelined(conn, queries.compose("digest.span", table=table),
                       [{"symbol": s, **_bounds(since, until)} for s in syms])
    return {s: (r[0][0], r[0][1]) for s, r in zip(syms, found) if r and r[0][0] is not None}


def days(conn: psycopg.Connection[Any], syms: Sequence[str], *, table: str = "tick_data",
         since: dt.datetime | None = None, until: dt.datetime | None = None
         ) -> list[tuple[str, dt.datetime, dt.datetime]]:
    """(symbol, lo, hi) of each UTC day with ticks of each symbol, clipped to the window."""
    found = pipelined(conn, queries.compose("digest.symbol_days", table=table),
                       [{"symbol": s, **_bounds(since, until)} for s in syms])
    out = []
    for s, rows in zip(syms, found):
        for (day,) in rows:
            start = dt.datetime.combine(day, dt.time(), dt.UTC)
            end = start + _DAY  # the domain's last day, 9999-12-30, ends at its bound
            out.append((s, max(start, since or start), min(end, until or end)))
    return out


def walk(conn: psycopg.Connection[Any], *, table: str = "tick_data", counts: bool = False,
         since: dt.datetime | None = None, until: dt.datetime | None = None,
         only: Sequence[str] | None = None) -> list[Row]:
    """``digest.day``'s rows for [since, until) and the symbols ``only`` (None: all, and
    the rows with a NULL symbol), one statement per symbol-day; with ``counts`` only
    (symbol, day, rows), odd rows with day None."""
    syms = list(only) if only else symbols(conn, table=table)
    ranges = days(conn, syms, table=table, since=since, until=until)
    block = "digest.count_symbol_day" if counts else "digest.symbol_day"
    rows = [r for found in pipelined(
        conn, queries.compose(block, table=table),
        [{"symbol": s, "lo": lo, "hi": hi} for s, lo, hi in ranges]) for r in found]
    odd = queries.compose("digest.count_odd" if counts else "digest.odd", table=table)
    rows += conn.execute(odd, {"symbols": syms, "nulls": only is None,
                               **_bounds(since, until)}).fetchall()
    return rows


def symbols_in(conn: psycopg.Connection[Any], *, table: str = "tick_data",
               since: dt.datetime | None = None, until: dt.datetime | None = None) -> list[str]:
    """The symbols with a tick in [since, until) (index probes only)."""
    return sorted(spans(conn, symbols(conn, table=table), table=table, since=since,
                        until=until))


def _bounds(since: dt.datetime | None, until: dt.datetime | None) -> dict[str, Any]:
    return {"since": since or "-infinity", "until": until or "infinity"}


def pipelined(conn: psycopg.Connection[Any], stmt: Any,
               params: list[dict[str, Any]]) -> list[list[Row]]:
    """The rows of ``stmt`` for each of ``params``: every statement on its own (each meets
    the statement limits alone), sent together so a far server costs one round trip."""
    if not params:
        return []
    with conn.pipeline():
        cursors = [conn.cursor().execute(stmt, p) for p in params]
    return [cur.fetchall() for cur in cursors]
