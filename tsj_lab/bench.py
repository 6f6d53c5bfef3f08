"""The timing harness and the fetch workloads, on the plain table and the hypertable.

Every workload runs the same parameters (same seed, so the same random start times) on
both databases of a :class:`Dataset` in one run and returns one row per measured point:
``workload``, ``db``, its own parameter columns, and the latency distribution of its
timed samples (warm-up runs excluded). Where a query's server-side cost is meaningful,
``server_p50_ms`` comes from ``EXPLAIN (ANALYZE, TIMING OFF)`` runs of the same query
with the same parameters, made separately from the timed client runs (so neither
disturbs the other). :func:`record` hands the rows to :mod:`tsj_lab.reports`.

The replay player lives in :mod:`tsj_lab.replay` and the latency proxy in
:mod:`tsj_lab.proxy`.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from psycopg import sql

from . import queries
from .db import connection, pool, read_frame

log = logging.getLogger("tsj_lab")

FORMAT_VERSION = 1
#: window name -> seconds
WINDOWS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "1d": 86400}
#: the story's latency targets per window (AC8 asks < 100 ms for every standard window)
WINDOW_TARGETS_MS = {"1m": 50.0, "5m": 60.0, "15m": 80.0, "1h": 100.0}
#: candle width name -> PostgreSQL interval and view
CANDLE_WIDTHS = {"1m": ("1 minute", "candle_1m"), "5m": ("5 minutes", "candle_5m"),
                 "15m": ("15 minutes", "candle_15m"), "1h": ("1 hour", "candle_1h")}
BATCH_SIZES = (100, 500, 1000, 2000)
#: database labels, in plotting order
PLAIN, TIMESCALE = "postgresql", "timescaledb"


@dataclass(frozen=True)
class Database:
    """One database holding the data set: ``label`` is 'postgresql' or 'timescaledb'."""

    label: str
    url: str

    def __repr__(self) -> str:  # URLs may name a password file; never print them
        return f"Database({self.label!r})"


@dataclass(frozen=True)
class Dataset:
    """The ticks both databases hold: the same symbols over the same UTC range."""

    symbols: tuple[str, ...]
    start: dt.datetime
    end: dt.datetime
    ticks_per_symbol: int
    interval_ms: float

    @property
    def days(self) -> float:
        return (self.end - self.start).total_seconds() / 86400


# -- the parameters `tsj bench` passes to notebooks/04_benchmark.ipynb -----------------

#: the story's data set: 345,600 ticks per symbol (one day at 250 ms), a few symbols
FULL = {
    "symbols": ["ES", "NQ"], "start": "2026-01-18", "days": 1, "interval_ms": 250, "seed": 16,
    "samples": 30, "warmup": 3, "windows": list(WINDOWS), "batch_sizes": list(BATCH_SIZES),
    "candle_widths": list(CANDLE_WIDTHS), "candle_samples": 10, "fetch_path_samples": 20,
    "rtts": [None, 0, 50, 150, 300], "speeds": [1, 10, 100, 1000],
    "replay_batches": [100, 500, 2000], "replay_samples": 10, "replay_duration_s": 30.0,
    "levels": [1, 2, 5, 10, 20, 50], "queries_per_client": 10, "ingest_interval_ms": 250,
    "size_steps": [],
}
#: fewer samples and points, same data set: a minute or two
QUICK = {"samples": 10, "warmup": 2, "candle_samples": 5, "fetch_path_samples": 10,
         "rtts": [None, 0, 300], "replay_batches": [500, 2000], "replay_samples": 5,
         "replay_duration_s": 10.0, "levels": [1, 10, 50], "queries_per_client": 5,
         "ingest_interval_ms": 0}
#: 30 days x 4 symbols, latency measured again as the table grows
LARGE = {"symbols": ["ES", "NQ", "EURUSD", "BTCUSD"], "days": 30, "samples": 20,
         "size_steps": [1, 7, 30]}


def parameters(*, large: bool = False, quick: bool = False) -> dict[str, Any]:
    """The notebook parameters of a full, quick and/or large run (connection names aside)."""
    out = dict(FULL)
    if quick:
        out.update(QUICK)
    if large:
        out.update(LARGE)
    return out


# -- harness ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Stats:
    """A latency distribution in milliseconds."""

    n: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linear between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no samples; take at least one")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q={q} is outside 0-100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    lo = math.floor(rank)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


def summarize(samples_ms: Sequence[float]) -> Stats:
    return Stats(len(samples_ms), percentile(samples_ms, 50), percentile(samples_ms, 95),
                 percentile(samples_ms, 99), max(samples_ms), sum(samples_ms) / len(samples_ms))


def time_calls(calls: Sequence[Callable[[], Any]], *, warmup: int = 2) -> tuple[list[float], list[Any]]:
    """Run ``warmup`` untimed calls (the first ones, cycled), then time every call.

    Returns the latencies in ms and the calls' results (for row counts).
    """
    if not calls:
        raise ValueError("time_calls needs at least one call")
    if warmup < 0:
        raise ValueError(f"warmup={warmup} is negative; use 0 or more")
    for i in range(warmup):
        calls[i % len(calls)]()
    latencies, results = [], []
    for call in calls:
        t0 = time.perf_counter()
        results.append(call())
        latencies.append((time.perf_counter() - t0) * 1000.0)
    return latencies, results


def server_times(url: str, query_name: str, params_list: Sequence[Mapping[str, Any]], *,
                 identifiers: Mapping[str, str] | None = None) -> list[float]:
    """The server's execution time (ms) of the named query, once per parameter set."""
    inner = queries.compose(query_name, **(identifiers or {}))
    stmt = sql.SQL(queries.text("bench_explain")).format(query=inner)  # type: ignore[arg-type]
    out = []
    with connection(url, autocommit=True) as conn:
        for params in params_list:
            plan = conn.execute(stmt, params).fetchone()[0]  # type: ignore[index]
            out.append(float(plan[0]["Execution Time"]))
    return out


def point(workload: str, db: str, latencies: Sequence[float], *, rows: Sequence[int] | None = None,
          server: Sequence[float] | None = None, **params: Any) -> dict[str, Any]:
    """One result row: parameters, latency percentiles, server time and rows per second."""
    st = summarize(latencies)
    total_rows = sum(rows) if rows else None
    return {
        "workload": workload, "db": db, **params,
        "n": st.n, "p50_ms": st.p50_ms, "p95_ms": st.p95_ms, "p99_ms": st.p99_ms,
        "max_ms": st.max_ms, "mean_ms": st.mean_ms,
        "server_p50_ms": percentile(server, 50) if server else None,
        "server_n": len(server) if server else 0,
        "rows": total_rows / len(rows) if rows else None,
        "rows_per_s": total_rows / (sum(latencies) / 1000.0) if total_rows else None,
        "samples_ms": list(latencies),
    }


#: result columns recorded as extra figures of a point, and those not recorded at all
EXTRAS = ("mean_ms", "rows", "qps", "errors", "peak_connections", "ratio", "connect_ms")
_NOT_PARAMS = ("workload", "n", "p50_ms", "p95_ms", "p99_ms", "max_ms", "server_p50_ms",
               "rows_per_s", "server_n", "samples_ms", *EXTRAS)


def record(df: pd.DataFrame) -> int:
    """Record every row of a workload table as a report result; returns how many."""
    from . import reports

    for row in df.to_dict("records"):
        params = {k: _plain(v) for k, v in row.items() if k not in _NOT_PARAMS and _present(v)}
        extra = {k: float(row[k]) for k in EXTRAS if _present(row.get(k))}
        reports.record_result(
            row["workload"], params, n=int(row["n"]), p50_ms=row["p50_ms"],
            p95_ms=row["p95_ms"], p99_ms=row["p99_ms"], max_ms=row.get("max_ms"),
            server_p50_ms=_maybe(row.get("server_p50_ms")),
            rows_per_s=_maybe(row.get("rows_per_s")), **extra)
    return len(df)


def _present(v: Any) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v)) and not isinstance(v, list)


def _maybe(v: Any) -> float | None:
    return float(v) if _present(v) else None


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


# -- parameters ------------------------------------------------------------------------


def window_params(dataset: Dataset, seconds: float, *, samples: int,
                  rng: random.Random) -> list[dict[str, Any]]:
    """``samples`` random windows of ``seconds`` inside the data set, on random symbols."""
    span = (dataset.end - dataset.start).total_seconds() - seconds
    if span < 0:
        raise ValueError(f"window of {seconds:g} s is longer than the data set "
                         f"({dataset.days:g} days); generate more days or use a shorter window")
    out = []
    for _ in range(samples):
        start = dataset.start + dt.timedelta(seconds=math.floor(rng.uniform(0, span)))
        out.append({"symbol": rng.choice(dataset.symbols), "start": start,
                    "end": start + dt.timedelta(seconds=seconds)})
    return out


def _check_counts(**counts: int) -> None:
    for name, value in counts.items():
        if value < 1:
            raise ValueError(f"{name}={value} must be at least 1")


# -- workloads -------------------------------------------------------------------------


def window_fetch(dbs: Sequence[Database], dataset: Dataset, *,
                 windows: Sequence[str] = tuple(WINDOWS), samples: int = 30, warmup: int = 3,
                 server_samples: int | None = None, seed: int = 0) -> pd.DataFrame:
    """Window fetch through :func:`read_frame`, at random starts, client and server time."""
    _check_counts(samples=samples)
    rows = []
    for name in windows:
        if name not in WINDOWS:
            raise ValueError(f"window {name!r} is unknown; use one of {list(WINDOWS)}")
        rng = random.Random(f"{seed}-window-{name}")
        params = window_params(dataset, WINDOWS[name], samples=samples, rng=rng)
        explain = params[: server_samples or samples]
        for db in dbs:
            calls = [lambda p=p, u=db.url: read_frame(u, "bench_window", p) for p in params]
            latencies, frames = time_calls(calls, warmup=warmup)
            server = server_times(db.url, "bench_window", explain)
            rows.append(point("window", db.label, latencies, rows=[len(f) for f in frames],
                              server=server, window=name, target_ms=WINDOW_TARGETS_MS.get(name)))
            log.info("window %s on %s: p50 %.1f ms", name, db.label, rows[-1]["p50_ms"])
    return pd.DataFrame(rows)


def fetch_paths(db: Database, dataset: Dataset, *, window: str = "1h", samples: int = 20,
                warmup: int = 3, seed: int = 0) -> pd.DataFrame:
    """Ticks -> DataFrame by three paths on the same windows, against the server's time.

    ``psycopg_decimal`` is the naive path (NUMERIC into Python Decimal, then a frame),
    ``psycopg_float`` casts in SQL but still builds Python rows, ``adbc_arrow`` is
    :func:`read_frame`. ``ratio`` is client p50 / server p50 (the goal: <= 2 for 1 h).
    """
    params = window_params(dataset, WINDOWS[window], samples=samples,
                           rng=random.Random(f"{seed}-paths"))
    server = server_times(db.url, "bench_window", params)
    cols = ["time", "bid_price", "ask_price", "last_price", "volume"]
    rows = []
    with connection(db.url, autocommit=True) as conn:
        def rows_frame(query_name: str, p: Mapping[str, Any]) -> pd.DataFrame:
            return pd.DataFrame(conn.execute(queries.text(query_name), p).fetchall(), columns=cols)

        paths = {
            "psycopg_decimal": lambda p: rows_frame("bench_window_numeric", p),
            "psycopg_float": lambda p: rows_frame("bench_window", p),
            "adbc_arrow": lambda p: read_frame(db.url, "bench_window", p),
        }
        for path, fetch in paths.items():
            latencies, frames = time_calls([lambda p=p: fetch(p) for p in params], warmup=warmup)
            rows.append(point("fetch_path", db.label, latencies, rows=[len(f) for f in frames],
                              server=server, window=window, path=path))
    out = pd.DataFrame(rows)
    out["ratio"] = out["p50_ms"] / out["server_p50_ms"]
    return out


def pages(url: str, *, symbol: str, start: dt.datetime, end: dt.datetime,
          size: int) -> Iterator[pd.DataFrame]:
    """Keyset pagination over one symbol's ticks in [start, end): pages of ``size``."""
    _check_counts(size=size)
    base = {"symbol": symbol, "start": start, "end": end, "limit": size}
    page = read_frame(url, "bench_page_first", base)
    while len(page):
        yield page
        if len(page) < size:
            return
        last = page.iloc[-1]
        page = read_frame(url, "bench_page_after", base | {
            "after_time": last["time"].to_pydatetime(), "after_ref": last["row_ref"]})


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
        for db in dbs:
            it = pages(db.url, symbol=p["symbol"], start=p["start"], end=dataset.end, size=size)
            latencies, frames = time_calls([lambda it=it: next(it, pd.DataFrame())] * samples,
                                           warmup=warmup)
            rows.append(point("batch", db.label, latencies, rows=[len(f) for f in frames],
                              batch=size))
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
        for db in dbs:
            sources = [("raw", "bench_candles_raw_plain", {})] if db.label == PLAIN else [
                ("view", "bench_candles_view", {"view": view}),
                ("raw", "bench_candles_raw_timescale", {})]
            for how, query_name, ident in sources:
                calls = [lambda p=p, q=query_name, i=ident, u=db.url: read_frame(u, q, p, identifiers=i)
                         for p in params]
                latencies, frames = time_calls(calls, warmup=warmup)
                server = server_times(db.url, query_name, params, identifiers=ident)
                rows.append(point("candles", db.label, latencies, rows=[len(f) for f in frames],
                                  server=server, width=width, source=how))
    return pd.DataFrame(rows)


def concurrency(dbs: Sequence[Database], dataset: Dataset, *,
                levels: Sequence[int] = (1, 2, 5, 10, 20, 50), queries_per_client: int = 10,
                window: str = "1m", seed: int = 0) -> pd.DataFrame:
    """``level`` clients at once, each running window fetches through one shared pool.

    The pool holds ``max(levels)`` connections opened up front (so a level measures
    queueing and server contention, not connection set-up). Before the timed queries,
    every client of a level takes a connection and runs a query while all of them hold
    one: ``peak_connections`` is how many were held at once (AC6 asks 50 to succeed).
    """
    _check_counts(queries_per_client=queries_per_client, **{f"level {n}": n for n in levels})
    size = max(levels)
    stmt = queries.text("bench_window")
    rows = []
    for db in dbs:
        with pool(db.url, min_size=size, max_size=size, name=f"bench-{db.label}") as p:
            for level in levels:
                params = window_params(dataset, WINDOWS[window], samples=level * queries_per_client,
                                       rng=random.Random(f"{seed}-conc-{level}"))
                held = _hold_all(p, level=level)
                got = _run_clients(p, stmt, params, level=level)
                rows.append(point("concurrency", db.label, got["latencies"], rows=got["rows"],
                                  clients=level, window=window)
                            | {"qps": len(params) / got["wall_s"], "errors": got["errors"],
                               "peak_connections": max(held, got["peak"])})
                log.info("concurrency %d on %s: %.0f q/s", level, db.label, rows[-1]["qps"])
    return pd.DataFrame(rows)


def _hold_all(p: Any, *, level: int) -> int:
    """How many of ``level`` clients held a pooled connection, and used it, all at once."""
    barrier = threading.Barrier(level, timeout=30)
    held: list[int] = []

    def client() -> None:
        try:
            with p.connection() as conn:
                conn.execute(queries.text("bench_ping")).fetchone()
                barrier.wait()  # nobody lets go before everybody holds one
                held.append(1)
        except Exception as exc:  # a client that could not connect is the finding here
            log.warning("pool client %d/%d failed: %s", len(held) + 1, level, exc)
            barrier.abort()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(level)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(held)


def _run_clients(p: Any, stmt: str, params: list[dict[str, Any]], *, level: int) -> dict[str, Any]:
    chunks = [params[i::level] for i in range(level)]
    latencies: list[float] = []
    rows: list[int] = []
    state = {"in_use": 0, "peak": 0, "errors": 0}
    lock = threading.Lock()
    barrier = threading.Barrier(level + 1)

    def client(chunk: list[dict[str, Any]]) -> None:
        barrier.wait()
        for params_ in chunk:
            t0 = time.perf_counter()
            try:
                with p.connection() as conn:
                    with lock:
                        state["in_use"] += 1
                        state["peak"] = max(state["peak"], state["in_use"])
                    n = len(conn.execute(stmt, params_).fetchall())
                    with lock:
                        state["in_use"] -= 1
            except Exception as exc:  # counted and logged: a failed client is a result here
                log.warning("concurrency client failed: %s", exc)
                with lock:
                    state["errors"] += 1
                continue
            with lock:
                latencies.append((time.perf_counter() - t0) * 1000.0)
                rows.append(n)

    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in chunks]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {"latencies": latencies or [math.nan], "rows": rows, "wall_s": wall,
            "errors": state["errors"], "peak": state["peak"]}


# -- the data set ----------------------------------------------------------------------


def prepare(target_url: str, source_url: str, *, symbols: Sequence[str], start: dt.date,
            days: int = 1, interval_ms: int = 250, seed: int = 16,
            generate: bool = True) -> tuple[list[Database], Dataset]:
    """Both databases provisioned and holding the same ticks; generated where absent.

    A (symbol, UTC day) already present with the expected count is used as it is (data
    left by the migration notebook, say); one missing from a database is generated into
    it. A day with another count, or unequal counts between the two databases, is an
    error rather than a silently unfair comparison.
    """
    from . import generate as gen
    from . import schema
    from .errors import SchemaError

    if not symbols:
        raise ValueError("bench needs at least one symbol, e.g. ES")
    _check_counts(days=days, interval_ms=interval_ms)
    lo = dt.datetime.combine(start, dt.time(), tzinfo=dt.timezone.utc)
    hi = lo + dt.timedelta(days=days)
    schema.create_source(source_url)
    schema.provision(target_url)
    dbs = [Database(PLAIN, source_url), Database(TIMESCALE, target_url)]
    counts = {}
    per_day = 86_400_000 // interval_ms
    for db in dbs:
        have = _day_counts(db.url, start=lo, end=hi)
        odd = {k: n for k, n in have.items() if k[0] in symbols and n != per_day}
        if odd:
            (symbol, day), n = min(odd.items())
            raise SchemaError(
                f"{db.label} tick_data has {n:,} ticks for {symbol} on {day}, not the "
                f"{per_day:,} of one every {interval_ms} ms; bench another day "
                f"(-p start YYYY-MM-DD) or delete those ticks")
        missing = [(s, day) for s in symbols for day in _days(start, days) if (s, day) not in have]
        if missing and not generate:
            raise SchemaError(f"{db.label} tick_data lacks {len(missing)} symbol-days of "
                              f"{list(symbols)} from {start}; run 'tsj bench' to generate them")
        for symbol, day in missing:
            # The generator is deterministic per (seed, symbol, day): loading day by day
            # gives the same rows as one load, and lets a larger run extend a smaller one.
            gen.load(db.url, symbols=[symbol], start=day, days=1, interval_ms=interval_ms,
                     seed=seed)
        if missing:
            log.info("generated %d symbol-days into %s", len(missing), db.label)
            with connection(db.url, autocommit=True) as conn:
                conn.execute(queries.text("bench_analyze"))
        got = symbol_counts(db.url, start=lo, end=hi)
        counts[db.label] = [got.get(s, 0) for s in symbols]
    if counts[PLAIN] != counts[TIMESCALE]:
        raise SchemaError(
            f"tick counts differ between source {counts[PLAIN]} and target {counts[TIMESCALE]} "
            f"for {list(symbols)} from {start}; run 'tsj migrate' or use other symbols")
    schema.refresh_candles(target_url, start=lo, end=hi)
    return dbs, Dataset(tuple(symbols), lo, hi, per_day * days, float(interval_ms))


def _days(start: dt.date, days: int) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range(days)]


def _day_counts(url: str, *, start: dt.datetime, end: dt.datetime) -> dict[tuple[str, dt.date], int]:
    with connection(url, autocommit=True) as conn:
        got = conn.execute(queries.text("bench_day_counts"), {"start": start, "end": end})
        return {(row[0], row[1]): int(row[2]) for row in got.fetchall()}


def symbol_counts(url: str, *, start: dt.datetime, end: dt.datetime) -> dict[str, int]:
    with connection(url, autocommit=True) as conn:
        got = conn.execute(queries.text("bench_symbol_span"), {"start": start, "end": end})
        return {row[0]: int(row[3]) for row in got.fetchall()}


def table_bytes(db: Database) -> int:
    name = "bench_table_size_plain" if db.label == PLAIN else "bench_table_size_hypertable"
    with connection(db.url, autocommit=True) as conn:
        return int(conn.execute(queries.text(name)).fetchone()[0])  # type: ignore[index]


# -- verdicts --------------------------------------------------------------------------

GOAL_FETCH_RATIO = 2.0  # 1 h window to DataFrame, client p50 / server p50
GOAL_DAY_TICKS_PER_S = 1_000_000.0
GOAL_CANDLE_SPEEDUP = 20.0  # a day of 1m candles, view vs raw aggregation
STORY_RTT_MS = 300.0


def verdicts(*, windows: pd.DataFrame | None = None, paths: pd.DataFrame | None = None,
             candle: pd.DataFrame | None = None, play: pd.DataFrame | None = None,
             clients: pd.DataFrame | None = None, db: str = TIMESCALE) -> pd.DataFrame:
    """AC6-AC8 and the performance goals, judged on ``db``'s figures: one row each."""
    rows: list[dict[str, Any]] = []
    if windows is not None:
        for rec in windows[(windows["db"] == db) & windows["target_ms"].notna()].to_dict("records"):
            # p95 must meet the target; p50 meeting it alone is a warning.
            status = ("ok" if rec["p95_ms"] < rec["target_ms"]
                      else "warn" if rec["p50_ms"] < rec["target_ms"] else "fail")
            rows.append(_verdict(f"AC8 window {rec['window']}", f"< {rec['target_ms']:g} ms",
                                 rec["p95_ms"], status, f"p50 {rec['p50_ms']:.1f} ms, "
                                 f"p95 {rec['p95_ms']:.1f} ms, n={rec['n']}"))
        day = windows[(windows["db"] == db) & (windows["window"] == "1d")]
        if len(day):
            rate = float(day["rows_per_s"].iloc[0])
            rows.append(_verdict("goal: day read", f">= {GOAL_DAY_TICKS_PER_S:,.0f} ticks/s", rate,
                                 _ok(rate >= GOAL_DAY_TICKS_PER_S),
                                 f"{day['rows'].iloc[0]:,.0f} ticks, p50 {day['p50_ms'].iloc[0]:.0f} ms"))
    if clients is not None:
        top = clients[clients["db"] == db].sort_values("clients").tail(1).to_dict("records")
        for rec in top:
            ok = rec["errors"] == 0 and rec["peak_connections"] >= 50
            # Fewer than 50 clients measured (a quick run) is no verdict either way.
            status = "ok" if ok else "fail" if rec["clients"] >= 50 else "warn"
            rows.append(_verdict("AC6 50 concurrent connections", "50 clients, 0 errors",
                                 rec["peak_connections"], status,
                                 f"{rec['clients']} clients, {rec['errors']} errors, "
                                 f"{rec['qps']:.0f} q/s, p95 {rec['p95_ms']:.1f} ms"))
    if play is not None:
        rows.extend(_replay_verdicts(play[play["db"] == db]))
    if paths is not None:
        arrow = paths[(paths["db"] == db) & (paths["path"] == "adbc_arrow")].to_dict("records")
        for rec in arrow:
            rows.append(_verdict("goal: 1h window to DataFrame", f"<= {GOAL_FETCH_RATIO:g}x server",
                                 rec["ratio"], _ok(rec["ratio"] <= GOAL_FETCH_RATIO),
                                 f"client p50 {rec['p50_ms']:.1f} ms, server p50 "
                                 f"{rec['server_p50_ms']:.1f} ms"))
    if candle is not None:
        one = candle[(candle["db"] == db) & (candle["width"] == "1m")].set_index("source")
        if {"view", "raw"} <= set(one.index):
            speedup = one.loc["raw", "p50_ms"] / one.loc["view", "p50_ms"]
            rows.append(_verdict("goal: 1m candle view vs raw", f">= {GOAL_CANDLE_SPEEDUP:g}x",
                                 speedup, _ok(speedup >= GOAL_CANDLE_SPEEDUP),
                                 f"view p50 {one.loc['view', 'p50_ms']:.1f} ms, raw p50 "
                                 f"{one.loc['raw', 'p50_ms']:.1f} ms"))
    return pd.DataFrame(rows, columns=["check", "target", "measured", "status", "detail"])


def _replay_verdicts(play: pd.DataFrame) -> list[dict[str, Any]]:
    """AC7 at the largest measured RTT (the story's 300 ms when measured)."""
    if not len(play):
        return []
    proxied = play[play["via"] == "proxy"]
    rtt = float(proxied["rtt_ms"].max()) if len(proxied) else None
    at = proxied[proxied["rtt_ms"] == rtt] if rtt is not None else play
    rows = []
    for speed, grp in at.groupby("speed"):
        fits = grp[grp["prefetch_needed_ticks"].notna() & grp["sustainable"]]
        where = f"RTT {rtt:g} ms" if rtt is not None else "direct"
        if not len(fits):
            rows.append(_verdict(f"AC7 60 fps at {speed:g}x", "0 dropped frames",
                                 grp["fps"].max(), "fail",
                                 f"{where}: no measured page size keeps up"))
            continue
        best = fits.sort_values(["prefetch_needed_s", "batch"]).iloc[0]
        need = ("on demand suffices" if best["prefetch_needed_ticks"] == 0 else
                f"prefetch {best['prefetch_needed_ticks']:.0f} ticks "
                f"({best['prefetch_needed_s']:.2f} s of play)")
        rows.append(_verdict(f"AC7 60 fps at {speed:g}x", "0 dropped frames", 60.0, "ok",
                             f"{where}, pages of {best['batch']}: {need}; without prefetch "
                             f"{best['fps']:.1f} fps, {best['dropped']} dropped"))
    return rows


def _verdict(check: str, target: str, measured: float, status: str, detail: str) -> dict[str, Any]:
    return {"check": check, "target": target, "measured": float(measured), "status": status,
            "detail": detail}


def _ok(good: bool) -> str:
    return "ok" if good else "warn"


def record_verdicts(table: pd.DataFrame) -> None:
    """Each verdict as a report check (ok / warn / fail)."""
    from . import reports

    for rec in table.to_dict("records"):
        reports.record_check(rec["check"], rec["status"], detail=f"{rec['target']}: {rec['detail']}")
