"""The fetch workloads, each on the plain table and the hypertable in the same run.

Window fetch, the three fetch paths, keyset batches, candles and concurrent clients.
Every function takes the :class:`~tsj_lab.bench.Database` pair and the
:class:`~tsj_lab.bench.Dataset` from :func:`tsj_lab.bench.prepare` and returns one row
per measured point (:func:`tsj_lab.bench.point`); the same seed gives the same random
windows on both databases.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from functools import partial
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import psycopg
from sqlalchemy import text

from .. import queries
from ..db import Endpoint, clients
from ..lab import ipython
from ..lab.adhoc import from_psycopg
from . import (BATCH_SIZES, CANDLE_WIDTHS, PLAIN, WINDOW_TARGETS_MS, WINDOWS, Database,
                    Dataset, _check_counts, explainer, point, time_interleaved,
                    window_params)
from ..db import connection, engine, read_frame
from ..db.columns import PG_EPOCH
from ..db.frames import generic_plans, read_arrow

log = logging.getLogger("tsj_lab")

Page = TypeVar("Page", pd.DataFrame, list[tuple[Any, ...]])

def window_fetch(dbs: Sequence[Database], dataset: Dataset, *,
                 windows: Sequence[str] = tuple(WINDOWS), samples: int = 30, warmup: int = 3,
                 seed: int = 0) -> pd.DataFrame:
    """Window fetch through :func:`read_frame` at random starts: client and server time.

    Per sample, each database is fetched from and EXPLAIN ANALYZEd on the same window,
    taking turns (:func:`time_interleaved`); the EXPLAIN plans the query as read_frame
    does (a generic plan of a prepared statement where the endpoint allows them).
    """
    _check_counts(samples=samples)
    rows = []
    for name in windows:
        if name not in WINDOWS:
            raise ValueError(f"window {name!r} is unknown; use one of {list(WINDOWS)}")
        params = window_params(dataset, WINDOWS[name], samples=samples,
                               rng=random.Random(f"{seed}-window-{name}"))
        with ExitStack() as stack:
            fns: dict[Any, Callable[[Any], Any]] = {}
            for db in dbs:
                fns[db.label, "client"] = partial(_window_rows, db.url)
                fns[db.label, "server"] = stack.enter_context(
                    explainer(db.url, "bench.window", prepared=generic_plans(db.url)))
            got = time_interleaved(fns, params, warmup=warmup)
        for db in dbs:
            latencies, counts = got[db.label, "client"]
            rows.append(point("window", db.label, latencies, rows=counts,
                              server=got[db.label, "server"][1], window=name,
                              target_ms=WINDOW_TARGETS_MS.get(name)))
            log.info("window %s on %s: p50 %.1f ms", name, db.label, rows[-1]["p50_ms"])
    return pd.DataFrame(rows)


def _window_rows(url: Endpoint | str, params: Mapping[str, Any]) -> int:
    """The window fetched into a DataFrame (what is timed), then only its row count kept:
    20 one-day frames per database held to the end of a workload took the bench-large
    kernel past 1 GB."""
    return len(read_frame(url, "bench.window", params))


def fetch_paths(db: Database, dataset: Dataset, *, window: str = "1h", samples: int = 20,
                warmup: int = 3, seed: int = 0) -> pd.DataFrame:
    """Ticks -> DataFrame by six paths on the same windows, against the server's time.

    ``psycopg_decimal`` is the naive path (NUMERIC into Python Decimal, then a frame),
    ``psycopg_float`` casts in SQL but still builds Python rows, ``adbc_arrow`` is ADBC
    (:func:`read_arrow`, read_frame's engine until issue 24), ``columns`` is
    :func:`read_frame` (one row of column arrays, prepared where the endpoint allows). The
    analyst's own paths, with the same query written with ``:name`` binds:
    ``pandas_sqlalchemy`` is ``pandas.read_sql`` over a SQLAlchemy engine (psycopg 3,
    pooled), ``jupysql`` is a ``%%sql`` cell (JupySQL on that engine, as
    :mod:`tsj_lab.lab.ipython` sets it up). ``ratio`` is client p50 / server p50, the server
    planning the statement as the path does: ``columns`` against the generic plan where it
    prepares (``prepared``), every other path against a plan made for its values.
    """
    params = window_params(dataset, WINDOWS[window], samples=samples,
                           rng=random.Random(f"{seed}-paths"))
    cols = ["time", "bid_price", "ask_price", "last_price", "volume"]
    analyst_sql = from_psycopg(queries.text("bench.window"))
    sa_engine = engine(db.url)
    generic = generic_plans(db.url)
    with (ExitStack() as stack, connection(db.url, autocommit=True) as conn,
          explainer(db.url, "bench.window") as explain,
          explainer(db.url, "bench.window", prepared=generic) as explain_prepared,
          ipython.connection(sa_engine, f"bench-{db.label}") as alias):
        stack.callback(sa_engine.dispose)

        def rows_frame(query_name: str, p: Mapping[str, Any]) -> pd.DataFrame:
            return pd.DataFrame(conn.execute(queries.text(query_name), p).fetchall(), columns=cols)

        got = time_interleaved({
            "psycopg_decimal": lambda p: rows_frame("bench.window_numeric", p),
            "psycopg_float": lambda p: rows_frame("bench.window", p),
            "adbc_arrow": lambda p: read_arrow(db.url, "bench.window", p),
            "columns": lambda p: read_frame(db.url, "bench.window", p),
            "pandas_sqlalchemy": lambda p: pd.read_sql(text(analyst_sql), sa_engine, params=p),
            "jupysql": lambda p: ipython.run_cell(analyst_sql, p, connection=alias, quiet=True),
            "server": explain,
            "server_prepared": explain_prepared,
        }, params, warmup=warmup)
    server, server_prepared = got.pop("server")[1], got.pop("server_prepared")[1]
    out = pd.DataFrame([point("fetch_path", db.label, latencies, rows=[len(f) for f in frames],
                              server=server_prepared if path == "columns" else server,
                              window=window, path=path,
                              prepared=generic and path == "columns")
                        for path, (latencies, frames) in got.items()])
    out["ratio"] = out["p50_ms"] / out["server_p50_ms"]
    return out


#: what candle_paths reads: (query, identifiers, numpy types of the columns for copy_numpy)
_CANDLE_DAY: tuple[str, dict[str, str], tuple[str, ...]] = ("candles.view_range", {"view": "candle_1m"},
               ("ts", "f8", "f8", "f8", "f8", "i8", "i8"))
_WINDOW: tuple[str, dict[str, str], tuple[str, ...]] = ("bench.window", {}, ("ts", "f8", "f8", "f8", "i8"))
#: what -> (query, identifiers, column types, span in seconds; None: the data set's first day)
FAST_READS = {"candles_1m_day": (*_CANDLE_DAY, None), "window_1h": (*_WINDOW, 3600),
              "day": (*_WINDOW, None)}


def candle_paths(db: Database, dataset: Dataset, *, what: Sequence[str] = tuple(FAST_READS),
                 samples: int = 20, warmup: int = 3, seed: int = 0) -> pd.DataFrame:
    """The fast fetch candidates on the reads users wait for, against the server's time.

    ``what``: a day of 1m candles from the real-time view (``candles_1m_day``), a 1 h window
    of ticks (``window_1h``), a day of one symbol's ticks (``day``). Paths, taking turns
    with the server's EXPLAIN (planned each way) on the same parameters: ``columns``
    (:func:`read_frame`), ``adbc_arrow`` (:func:`read_arrow`), ``copy_numpy`` (binary COPY
    parsed by one numpy structured dtype: fixed-width columns without NULLs only, hence a
    candidate, not the path), ``psycopg_prepared`` (a prepared statement's binary rows,
    then a frame; not for the day: 345,600 Python rows). ``ratio`` = client p50 / server p50
    (planning + execution), the server planning as the path does (``prepared``).
    """
    _check_counts(samples=samples)
    generic = generic_plans(db.url)
    rows = []
    for name in what:
        query_name, ident, types, seconds = FAST_READS[name]
        params = _fast_read_params(dataset, seconds, samples=samples,
                                   rng=random.Random(f"{seed}-fast-{name}"))
        query = queries.compose(query_name, **ident)
        with (connection(db.url, autocommit=True) as conn,
              explainer(db.url, query_name, identifiers=ident) as explain,
              explainer(db.url, query_name, identifiers=ident, prepared=generic) as explain_prepared):
            if generic:  # psycopg_prepared planned as read_frame plans
                conn.execute(queries.text("frames.generic_plans"))
            fns: dict[str, Callable[[Any], Any]] = {
                "columns": partial(read_frame, db.url, query_name, identifiers=ident),
                "adbc_arrow": partial(read_arrow, db.url, query_name, identifiers=ident),
                "copy_numpy": partial(copy_frame, conn, query, types=types),
                "psycopg_prepared": partial(_prepared_frame, conn, query, prepare=generic),
                "server": explain, "server_prepared": explain_prepared}
            if name == "day":
                del fns["psycopg_prepared"]
            # each read's frame dropped once timed, only its length kept: a day's frames of
            # every sample and path held to the end took the kernel to 1.4 GB
            fns |= {path: _counted(fn) for path, fn in fns.items() if not path.startswith("server")}
            got = time_interleaved(fns, params, warmup=warmup)
        server, server_prepared = got.pop("server")[1], got.pop("server_prepared")[1]
        for path, (latencies, counts) in got.items():
            planned = generic and path in ("columns", "psycopg_prepared")
            rows.append(point("candle_path", db.label, latencies, rows=counts,
                              server=server_prepared if planned else server, what=name,
                              path=path, prepared=planned))
        log.info("candle_path %s: columns p50 %.1f ms", name, rows[-len(got)]["p50_ms"])
    out = pd.DataFrame(rows)
    out["ratio"] = out["p50_ms"] / out["server_p50_ms"]
    return out


def _counted(read: Callable[[Any], Any]) -> Callable[[Any], int]:
    """``read``, returning its frame's length instead of the frame."""
    return lambda params: len(read(params))


def _fast_read_params(dataset: Dataset, seconds: float | None, *, samples: int,
                      rng: random.Random) -> list[dict[str, Any]]:
    if seconds is not None:
        return window_params(dataset, seconds, samples=samples, rng=rng)
    day = dataset.start.replace(hour=0, minute=0, second=0, microsecond=0)
    return [{"symbol": rng.choice(dataset.symbols), "start": day,
             "end": day + dt.timedelta(days=1)} for _ in range(samples)]


def copy_frame(conn: psycopg.Connection[Any], query: psycopg.sql.SQL | psycopg.sql.Composed,
               params: Mapping[str, Any], *, types: Sequence[str]) -> pd.DataFrame:
    """``query``'s rows by binary COPY, parsed by one numpy structured dtype: ``types`` are
    the columns' numpy types ('i8', 'f8'; 'ts' for timestamptz, as UTC); no NULLs."""
    bound = psycopg.ClientCursor(conn).mogrify(query, params).strip().rstrip(";")
    with conn.cursor().copy(queries.compose("bench.copy_binary",
                                            query=psycopg.sql.SQL(bound))) as copy:
        buf = b"".join(bytes(b) for b in copy)
    names = [f"c{i}" for i in range(len(types))]
    wire = ["i8" if t == "ts" else t for t in types]
    row = np.dtype([("fields", ">i2")] + [f for i, t in enumerate(wire)
                                           for f in ((f"len{i}", ">i4"), (names[i], ">" + t))])
    # 19 bytes of header (signature, flags, extension length), 2 of trailer (-1)
    body = np.frombuffer(buf, row, (len(buf) - 21) // row.itemsize, 19)
    out = {n: body[n].astype(t) for n, t in zip(names, wire)}
    for n, t in zip(names, types):
        if t == "ts":
            out[n] = pd.DatetimeIndex(out[n].view("m8[us]") + PG_EPOCH).tz_localize("UTC")
    return pd.DataFrame(out)


def _prepared_frame(conn: psycopg.Connection[Any], query: psycopg.sql.SQL | psycopg.sql.Composed,
                    params: Mapping[str, Any], *, prepare: bool) -> pd.DataFrame:
    cur = conn.cursor(binary=True)
    cur.execute(query, params, prepare=prepare)
    return pd.DataFrame(cur.fetchall())


def pages(url: Endpoint | str, *, symbol: str, start: dt.datetime, end: dt.datetime,
          size: int) -> Iterator[pd.DataFrame]:
    """Keyset pagination over one symbol's ticks in [start, end): DataFrame pages of
    ``size`` ticks through the Arrow path (:func:`keyset_pages`)."""
    _check_counts(size=size)
    return keyset_pages(lambda name, params: read_frame(url, name, params),
                        lambda page: page["time"].iloc[-1].to_pydatetime(),
                        symbol=symbol, start=start, end=end, size=size)


def keyset_pages(fetch: Callable[[str, dict[str, Any]], Page],
                 last_time: Callable[[Page], dt.datetime], *, symbol: str, start: dt.datetime,
                 end: dt.datetime, size: int) -> Iterator[Page]:
    """The replay's keyset walk (``bench.page_first``, then ``bench.page_after``): pages of
    ``size`` ticks, each ending at an instant boundary (it grows past ``size`` when ticks
    share its last instant), so the next starts after that time, a key compressed chunks
    serve. ``fetch(query, params)`` reads one page however the caller reads (a DataFrame
    through Arrow, rows on a kept psycopg connection); ``last_time`` is its last tick's time.
    """
    base = {"symbol": symbol, "start": start, "end": end, "limit": size}
    page = fetch("bench.page_first", base)
    while len(page):
        yield page
        if len(page) < size:
            return
        page = fetch("bench.page_after", base | {"after_time": last_time(page)})


def _next_page(pages: Iterator[pd.DataFrame], _: object) -> pd.DataFrame:
    return next(pages, pd.DataFrame())


def batch_fetch(dbs: Sequence[Database], dataset: Dataset, *,
                sizes: Sequence[int] = BATCH_SIZES, samples: int = 30, warmup: int = 3,
                seed: int = 0) -> pd.DataFrame:
    """Consecutive keyset pages of each size from a random start: latency and ticks/s."""
    _check_counts(samples=samples)
    rows = []
    for size in sizes:
        # Enough market time for warm-up plus samples pages of this size.
        seconds = (samples + warmup + 1) * size * dataset.interval_ms / 1000.0
        (p,) = window_params(dataset, min(seconds, dataset.days * 86400), samples=1,
                             rng=random.Random(f"{seed}-batch-{size}"))
        walks = {db.label: pages(db.url, symbol=p["symbol"], start=p["start"], end=dataset.end,
                                 size=size) for db in dbs}
        got = time_interleaved({label: partial(_next_page, it) for label, it in walks.items()},
                               [None] * samples, warmup=warmup)
        for label, (latencies, frames) in got.items():
            rows.append(point("batch", label, latencies, rows=[len(f) for f in frames], batch=size))
    return pd.DataFrame(rows)


def candles(dbs: Sequence[Database], dataset: Dataset, *,
            widths: Sequence[str] = tuple(CANDLE_WIDTHS), samples: int = 10, warmup: int = 2,
            seed: int = 0) -> pd.DataFrame:
    """A day of candles per width: the views, and the same aggregation over raw ticks."""
    _check_counts(samples=samples)
    day = dataset.start.replace(hour=0, minute=0, second=0, microsecond=0)
    rng = random.Random(f"{seed}-candles")
    rows = []
    for width in widths:
        interval, view = CANDLE_WIDTHS[width]
        params = [{"symbol": rng.choice(dataset.symbols), "start": day,
                   "end": day + dt.timedelta(days=1), "width": interval} for _ in range(samples)]
        with ExitStack() as stack:
            fns: dict[Any, Callable[[Any], Any]] = {}
            for db in dbs:
                for how, query_name, ident in _candle_sources(db, view):
                    fns[db.label, how, "client"] = partial(read_frame, db.url, query_name,
                                                           identifiers=ident)
                    fns[db.label, how, "server"] = stack.enter_context(
                        explainer(db.url, query_name, identifiers=ident,
                                  prepared=generic_plans(db.url)))
            got = time_interleaved(fns, params, warmup=warmup)
        for (label, how, kind), (latencies, frames) in got.items():
            if kind == "client":
                rows.append(point("candles", label, latencies, rows=[len(f) for f in frames],
                                  server=got[label, how, "server"][1], width=width, source=how))
    return pd.DataFrame(rows)


def _candle_sources(db: Database, view: str) -> list[tuple[str, str, dict[str, str]]]:
    """(how, query, identifiers): plain PostgreSQL has raw aggregation only."""
    if db.label == PLAIN:
        return [("raw", "bench.candles_raw_plain", {})]
    return [("view", "candles.view_range", {"view": view}),
            ("raw", "candles.raw_range", {})]


def _nth_window(stmt: str, params: Sequence[dict[str, Any]], i: int) -> tuple[str, dict[str, Any]]:
    return stmt, params[i]


def concurrency(dbs: Sequence[Database], dataset: Dataset, *,
                levels: Sequence[int] = (1, 2, 5, 10, 20, 50), queries_per_client: int = 10,
                window: str = "1m", seed: int = 0) -> pd.DataFrame:
    """``level`` clients at once, each holding a pooled connection and fetching windows.

    Each level opens a psycopg_pool pool of ``level`` connections to the database's URL
    (direct, or through a pooler when ``db.via`` says so) and runs
    :func:`tsj_lab.db.clients.run`: every client holds its connection while all do
    (``peak_connections``, AC6 asks 50), then runs ``queries_per_client`` window fetches,
    each its own transaction; ``server_connections`` is how many server backends served
    them: one per client direct, at most the pooler's pool size through one.
    """
    _check_counts(queries_per_client=queries_per_client)
    if not levels or min(levels) < 1:
        raise ValueError(f"concurrency levels {list(levels)} must be one or more counts >= 1")
    stmt = queries.text("bench.window")
    rows = []
    for db in dbs:
        for level in levels:
            params = window_params(dataset, WINDOWS[window], samples=level * queries_per_client,
                                   rng=random.Random(f"{seed}-conc-{level}"))
            got = clients.run(db.url, clients=level, queries_per_client=queries_per_client,
                              work=partial(_nth_window, stmt, params))
            if got.cause:
                log.warning("concurrency %d on %s (%s): %s", level, db.label, db.via, got.cause)
            rows.append(point("concurrency", db.label, got.latencies_ms or [math.nan],
                              rows=got.rows, clients=level, window=window, via=db.via)
                        | {"qps": got.qps if got.queries else 0.0, "errors": got.errors,
                           "peak_connections": got.connected,
                           "server_connections": got.server_connections, "cause": got.cause})
            log.info("concurrency %d on %s (%s): %.0f q/s", level, db.label, db.via,
                     rows[-1]["qps"])
    return pd.DataFrame(rows)
