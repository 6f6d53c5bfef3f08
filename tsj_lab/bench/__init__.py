"""The timing harness, the data set both databases hold, and the `tsj bench` presets.

A measured point is one row: ``workload``, ``db`` ('postgresql' for the plain source
table, 'timescaledb' for the hypertable), its own parameter columns, and the latency
distribution of its timed samples (warm-up runs excluded, :func:`point`). What is
compared within a point's family (both databases, client and server time) is timed in
turns, sample by sample (:func:`time_interleaved`), so a busy machine weighs on all
alike. Server time is ``EXPLAIN (ANALYZE, TIMING OFF)`` of the same query with the same
parameters, run separately from the client's fetch: planning + execution, and planning alone
beside it (``server_plan_p50_ms``), planned the way the client's statement is. :func:`record` hands rows to
:mod:`tsj_lab.lab.reports`.

The workloads are in :mod:`tsj_lab.bench.workloads`, the replay player in :mod:`tsj_lab.bench.replay`,
the latency proxy in :mod:`tsj_lab.server.proxy`, the AC6-AC8 verdicts in :mod:`tsj_lab.bench.verdicts`.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pandas as pd
import psycopg
from psycopg import sql

from ..data import generate as gen
from ..data.prices import plan as plan_parts
from .. import queries
from ..lab import recording
from ..provision import schema
from ..db.connections import pooler_url, resolve_url
from ..config import Settings
from ..db import Endpoint, connection, scalar
from ..domain import CANDLES, TickSpec
from ..errors import SchemaError
from ..stats import percentile, summarize

log = logging.getLogger("tsj_lab")

#: the meaning of the benchmark's figures; bumped when a workload or a figure changes
FORMAT_VERSION = 2  # 2: server_p50_ms is planning + execution (was execution), issue 24
#: window name -> seconds
WINDOWS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "1d": 86400}
#: the story's latency targets per window (AC8 asks < 100 ms for every standard window)
WINDOW_TARGETS_MS = {"1m": 50.0, "5m": 60.0, "15m": 80.0, "1h": 100.0}
#: candle width name -> PostgreSQL interval and view
CANDLE_WIDTHS = {c.name: (c.interval, c.view) for c in CANDLES}
BATCH_SIZES = (100, 500, 1000, 2000)
#: database labels, in plotting order
PLAIN, TIMESCALE = "postgresql", "timescaledb"


@dataclass(frozen=True)
class Database:
    """One database holding the data set: ``label`` is 'postgresql' or 'timescaledb'."""

    label: str
    url: Endpoint | str
    via: str = "direct"  # 'direct' (the URL as configured) or 'pgbouncer' (through a pooler)

    def __repr__(self) -> str:  # URLs may name a password file; never print them
        return f"Database({self.label!r}, via={self.via!r})"


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
    "levels": [1, 2, 5, 10, 20, 50, 200], "queries_per_client": 10, "pooler": "pooler",
    "ingest_interval_ms": 250, "size_steps": [],
    "history_samples": 10, "history_rtt_ms": 300.0, "history_tail_hours": 6.0,
    "follow_seconds": 30.0, "follow_rates_ms": [250, 2.5], "catchup_days": 30,
    "catchup_interval_ms": 10_000,
    "migration_days": 30, "migration_interval_ms": 2000, "migration_story_interval_ms": 190,
}
#: fewer samples and points, same data set: a minute or two
QUICK = {"samples": 10, "warmup": 2, "candle_samples": 5, "fetch_path_samples": 10,
         "rtts": [None, 0, 300], "replay_batches": [500, 2000], "replay_samples": 5,
         "replay_duration_s": 10.0, "levels": [1, 10, 50, 200], "queries_per_client": 5,
         "ingest_interval_ms": 0, "history_samples": 5, "follow_seconds": 10.0,
         "catchup_days": 10, "migration_days": 7}
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


def time_interleaved(fns: Mapping[Any, Callable[[Any], Any]], params: Sequence[Any], *,
                     warmup: int = 2) -> dict[Any, tuple[list[float], list[Any]]]:
    """Time every function on every parameter set, the functions taking turns.

    Sample i runs each function once on ``params[i]``, starting with a different one each
    time, so that what is compared (two databases, client and server, three fetch paths)
    shares the same moments of a busy machine. ``warmup`` untimed rounds come first.
    """
    if not params or not fns:
        raise ValueError("time_interleaved needs at least one function and one parameter set")
    if warmup < 0:
        raise ValueError(f"warmup={warmup} is negative; use 0 or more")
    keys = list(fns)
    for i in range(warmup):
        for key in keys:
            fns[key](params[i % len(params)])
    out: dict[Any, tuple[list[float], list[Any]]] = {k: ([], []) for k in keys}
    for i, p in enumerate(params):
        for key in keys[i % len(keys):] + keys[: i % len(keys)]:
            t0 = time.perf_counter()
            result = fns[key](p)
            out[key][0].append((time.perf_counter() - t0) * 1000.0)
            out[key][1].append(result)
    return out


class ServerTime(float):
    """The server's time of one statement in ms, planning + execution, with
    ``plan_ms`` (planning alone) beside it; a float, so percentiles take it as it is."""

    plan_ms: float

    def __new__(cls, plan_ms: float, execution_ms: float) -> ServerTime:
        self = super().__new__(cls, plan_ms + execution_ms)
        self.plan_ms = plan_ms
        return self


@contextmanager
def explainer(url: Endpoint | str, query_name: str, *, identifiers: Mapping[str, str] | None = None,
              prepared: bool = False) -> Iterator[Callable[[Mapping[str, Any]], ServerTime]]:
    """A function giving the server's time of the named query (planning + execution,
    :class:`ServerTime`), from ``EXPLAIN (ANALYZE, TIMING OFF)`` on a connection of its own.

    ``prepared``: the query is planned as :func:`tsj_lab.db.read_frame` plans it where it
    runs generic plans (:func:`tsj_lab.db.frames.generic_plans`: direct): ``PREPARE`` once
    on this connection under ``plan_cache_mode = force_generic_plan``, then ``EXPLAIN ...
    EXECUTE`` with each sample's values, whose "Planning Time" is what a generic plan
    costs per run (the plan cache lookup); unprepared, the statement is planned for its
    values every time.
    """
    inner = queries.compose(query_name, **(identifiers or {}))
    with connection(url, autocommit=True) as conn:
        if prepared:
            execute, names = _prepare_generic(conn, inner)
            stmt = queries.compose("bench.explain", query=execute)
        else:
            stmt, names = queries.compose("bench.explain", query=inner), None
        cur = psycopg.ClientCursor(conn)  # EXECUTE's arguments are values in its text

        def explain(params: Mapping[str, Any]) -> ServerTime:
            args = params if names is None else [params[n] for n in names]
            row = cur.execute(stmt, args).fetchone()
            assert row is not None  # EXPLAIN returns its plan as one row
            plan = row[0][0]
            return ServerTime(float(plan["Planning Time"]), float(plan["Execution Time"]))

        yield explain


def _prepare_generic(conn: psycopg.Connection[Any], query: sql.Composable
                     ) -> tuple[sql.SQL | sql.Composed, list[str]]:
    """``PREPARE`` ``query`` on ``conn`` for generic plans; returns the ``EXECUTE`` taking its
    parameters (in the order of the names returned) as ``%s`` values."""
    numbered, names = numbered_params(query.as_string(conn))
    conn.execute(queries.text("frames.generic_plans"))
    conn.execute(queries.compose("bench.prepare", statement="tsj_explained",
                                 query=sql.SQL(numbered.strip().rstrip(";"))))
    args = sql.SQL(", ").join(sql.Placeholder() for _ in names)
    return queries.compose("bench.execute", statement="tsj_explained", args=args), names


_PARAM = re.compile(r"%%|%\((\w+)\)s")


def numbered_params(query: str) -> tuple[str, list[str]]:
    """A query's ``%(name)s`` parameters as ``$1, $2, ...`` (one number per name, in order
    of first use; ``%%`` is ``%``), as psycopg sends a prepared statement, and the names."""
    names: list[str] = []

    def number(m: re.Match[str]) -> str:
        if m.group(1) is None:
            return "%"
        if m.group(1) not in names:
            names.append(m.group(1))
        return f"${names.index(m.group(1)) + 1}"

    return _PARAM.sub(number, query), names


def server_times(url: Endpoint | str, query_name: str, params_list: Sequence[Mapping[str, Any]], *,
                 identifiers: Mapping[str, str] | None = None,
                 prepared: bool = False) -> list[ServerTime]:
    """The server's time (planning + execution) of the named query, once per parameter set."""
    with explainer(url, query_name, identifiers=identifiers, prepared=prepared) as explain:
        return [explain(p) for p in params_list]


def point(workload: str, db: str, latencies: Sequence[float], *, rows: Sequence[int] | None = None,
          server: Sequence[float] | None = None, **params: Any) -> dict[str, Any]:
    """One result row: parameters, latency percentiles, server time and rows per second.

    ``server`` holds the server's times (planning + execution; :class:`ServerTime`s also
    give ``server_plan_p50_ms``, the planner's share).
    """
    st = summarize(latencies)
    total_rows = sum(rows) if rows else None
    plans = [t.plan_ms for t in server or () if isinstance(t, ServerTime)]
    return {
        "workload": workload, "db": db, **params,
        "n": st.n, "p50_ms": st.p50_ms, "p95_ms": st.p95_ms, "p99_ms": st.p99_ms,
        "max_ms": st.max_ms, "mean_ms": st.mean_ms,
        "server_p50_ms": percentile(server, 50) if server else None,
        "server_plan_p50_ms": percentile(plans, 50) if plans else None,
        "server_n": len(server) if server else 0,
        "rows": sum(rows) / len(rows) if rows else None,
        "rows_per_s": total_rows / (sum(latencies) / 1000.0) if total_rows else None,
        "samples_ms": list(latencies),
    }


#: result columns recorded as extra figures of a point, and those not recorded at all
EXTRAS = ("mean_ms", "rows", "server_n", "server_plan_p50_ms", "qps", "errors", "peak_connections", "ratio",
          "connect_ms", "server_connections")
_NOT_PARAMS = ("workload", "n", "p50_ms", "p95_ms", "p99_ms", "max_ms", "server_p50_ms",
               "rows_per_s", "samples_ms", "cause", *EXTRAS)


def record(df: pd.DataFrame) -> int:
    """Record every row of a workload table as a report result; returns how many."""
    for row in df.to_dict("records"):
        params = {k: _plain(v) for k, v in row.items() if k not in _NOT_PARAMS and _present(v)}
        extra = {k: float(row[k]) for k in EXTRAS if _present(row.get(k))}
        if not extra.get("server_n"):  # no server time measured for this point
            extra.pop("server_n", None)
        recording.record_result(
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


def through_pooler(dbs: Sequence[Database], pooler: str | None, *,
                   settings: Settings) -> list[Database]:
    """The target of ``dbs`` through the pooler named ``pooler`` (a connection name or URL).

    'pooler' is TSJ_POOLER_URL, else tsj's own PgBouncer (transaction mode) in front of the
    embedded server; with a configured target and no pooler URL there is none, and the
    concurrency workload runs direct only. None: no pooler wanted.
    """
    if not pooler:
        return []
    url = (pooler_url(settings=settings) if pooler == "pooler"
           else resolve_url(pooler, settings=settings))
    if url is None:
        log.warning("no pooler for the target: set TSJ_POOLER_URL to compare pooled clients")
        return []
    return [Database(db.label, url, via="pgbouncer") for db in dbs if db.label == TIMESCALE]


# -- the data set ----------------------------------------------------------------------


def prepare(target_url: Endpoint | str, source_url: Endpoint | str, spec: TickSpec, *, generate: bool = True,
            replace: bool = False) -> tuple[list[Database], Dataset]:
    """Both databases provisioned and holding the same ticks; generated where absent.

    A (symbol, UTC day) already present with the expected count is used as it is (data
    left by the migration notebook, say); one missing from a database is generated into
    it. A day with another count is an error rather than a silently unfair comparison,
    unless ``replace``: then that symbol's day is deleted and generated again.
    """
    symbols, start, days, interval_ms = spec.symbols, spec.start, spec.days, spec.interval_ms
    lo = dt.datetime.combine(start, dt.time(), tzinfo=dt.UTC)
    hi = lo + dt.timedelta(days=days)
    schema.create_source(source_url)
    schema.provision(target_url)
    dbs = [Database(PLAIN, source_url), Database(TIMESCALE, target_url)]
    counts = {}
    per_day = spec.ticks_per_day  # what the generator writes: ceil, when the day does not divide
    for db in dbs:
        have = _day_counts(db.url, start=lo, end=hi)
        odd = {k: n for k, n in have.items() if k[0] in symbols and n != per_day}
        if odd and not replace:
            (symbol, day), n = min(odd.items())
            raise SchemaError(
                f"{db.label} tick_data has {n:,} ticks for {symbol} on {day}, not the "
                f"{per_day:,} of one every {interval_ms} ms; bench another day "
                f"(-p start YYYY-MM-DD) or regenerate it with 'tsj bench --replace'")
        for symbol, day in sorted(odd):
            _delete_day(db.url, symbol=symbol, day=day)
            del have[symbol, day]
        missing = [(s, day) for s in symbols for day in _days(start, days) if (s, day) not in have]
        if missing and not generate:
            raise SchemaError(f"{db.label} tick_data lacks {len(missing)} symbol-days of "
                              f"{list(symbols)} from {start}; run 'tsj bench' to generate them")
        if missing:
            # The generator is deterministic per (seed, symbol, day): the missing days' parts
            # give the same rows as one load (so a larger run extends a smaller one), and
            # go in one load over one set of connections (not one set per symbol-day)
            parts = [part for symbol, day in missing for part in plan_parts(
                TickSpec((symbol,), day, 1, interval_ms, spec.seed, spec.sessions))]
            gen.write_parts(db.url, parts, direct=False)  # plain, as figures were measured
            log.info("generated %d symbol-days into %s", len(missing), db.label)
            with connection(db.url, autocommit=True) as conn:
                conn.execute(queries.text("bench.analyze"))
        got = symbol_counts(db.url, start=lo, end=hi)
        counts[db.label] = [got.get(s, 0) for s in symbols]
    if counts[PLAIN] != counts[TIMESCALE]:
        raise SchemaError(
            f"tick counts differ between source {counts[PLAIN]} and target {counts[TIMESCALE]} "
            f"for {list(symbols)} from {start}; run 'tsj migrate' or use other symbols")
    schema.refresh_candles(target_url, start=lo, end=hi)
    return dbs, Dataset(tuple(symbols), lo, hi, per_day * days, float(interval_ms))


def _delete_day(url: Endpoint | str, *, symbol: str, day: dt.date) -> None:
    lo = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    log.warning("deleting %s ticks of %s to generate them again", symbol, day)
    with connection(url, autocommit=True) as conn:
        conn.execute(queries.text("bench.delete_day"),
                     {"symbol": symbol, "start": lo, "end": lo + dt.timedelta(days=1)})


def _days(start: dt.date, days: int) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range(days)]


def _day_counts(url: Endpoint | str, *, start: dt.datetime,
                end: dt.datetime) -> dict[tuple[str, dt.date], int]:
    with connection(url, autocommit=True) as conn:
        got = conn.execute(queries.text("bench.day_counts"), {"start": start, "end": end})
        return {(row[0], row[1]): int(row[2]) for row in got.fetchall()}


def symbol_counts(url: Endpoint | str, *, start: dt.datetime, end: dt.datetime) -> dict[str, int]:
    with connection(url, autocommit=True) as conn:
        got = conn.execute(queries.text("bench.symbol_span"), {"start": start, "end": end})
        return {row[0]: int(row[3]) for row in got.fetchall()}


def table_bytes(db: Database) -> int:
    name = "bench.table_size_plain" if db.label == PLAIN else "bench.table_size_hypertable"
    with connection(db.url, autocommit=True) as conn:
        return int(scalar(conn, queries.text(name)))
