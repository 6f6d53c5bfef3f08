"""History on the timescale edition: what compression and continuous aggregates change.

In production most ticks are older than 30 days and sit in compressed chunks. To measure
what that changes, :func:`scratch` copies the bench's ticks into scratch schemas of the
target, each holding the story's ``tick_data`` (its DDL, 1-day chunks, its compression
settings), so every comparison reads **the same ticks**:

* ``hot``: the story's table (``schema.provision``), left uncompressed;
* ``cold``: the same, compressed by running the story's compression job (``run_job``);
* ``float8``, ``int8``: the same ticks with the prices as double precision and as
  integers in units of 1e-8, compressed the same way: the alternatives to DECIMAL(20,8).

The bench's dates are months old, so the 30-day policy compresses all of a copy's chunks
and the 90-day retention would drop them: tsj runs each job itself, once, where it is
measured (the embedded server has no job scheduler). Workloads reuse
:mod:`tsj_lab.bench.workloads` and :mod:`tsj_lab.bench.replay` with a :class:`~tsj_lab.bench.Database`
per copy. On the apache edition there is no compression and there are no continuous
aggregates: :func:`unsupported` says so, and nothing is faked.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import random
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pandas as pd
import psycopg
from psycopg import sql

from .. import queries
from ..provision import schema
from . import (CANDLE_WIDTHS, Database, Dataset, explainer, point,
                    time_calls, time_interleaved, window_params)
from ..db import Endpoint, close_frames, connection, one, probe_url, read_frame, scalar
from ..db.frames import generic_plans
from ..domain import CANDLE_BY_NAME, CANDLES, DAY_MS
from .replay import maybe_proxy
from .workloads import keyset_pages, window_fetch

log = logging.getLogger("tsj_lab")

#: the copies, in the order they are built; the price type each stores
COPIES = {"hot": "numeric(20,8)", "cold": "numeric(20,8)", "float8": "double precision",
          "int8": "bigint (1e-8 units)"}
#: the alternatives to the story's prices, compared compressed
TYPES = ("cold", "float8", "int8")
#: candle views of the story (hierarchical on candle_1m as provisioned) and the flat
#: ones history builds beside them: width -> (provisioned view, flat view)
FLAT = {c.name: (c.view, f"{c.view}_flat", c.interval) for c in CANDLES if c.name != "1m"}
MATERIALIZED_ONLY = "candle_1m_mat"
#: the story's tick spacing, for the disk plan
STORY_INTERVAL_MS = 250
UNSUPPORTED = "unsupported"


def unsupported(url: Endpoint | str) -> str | None:
    """Why history cannot be measured on ``url`` (None when it can)."""
    caps = probe_url(url)
    if caps.timescaledb_version is None:
        return "no TimescaleDB on the target"
    if caps.license != "timescale":
        return (f"unsupported on this edition ({caps.license} license): no compression and "
                "no continuous aggregates")
    return None


@dataclass
class Copies:
    """The scratch copies of one data set: a URL per copy, scoped to its schema."""

    urls: dict[str, Endpoint]
    schemas: dict[str, str]
    dataset: Dataset
    #: per copy: ticks, chunks, bytes before and after its compression job, job seconds
    sizes: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: per copy and column: bytes before and after compression
    columns: pd.DataFrame = field(default_factory=pd.DataFrame)

    def db(self, copy: str, label: str | None = None) -> Database:
        return Database(label or copy, self.urls[copy])

    def __repr__(self) -> str:  # URLs may name a password file; never print them
        return f"Copies({list(self.schemas.values())})"


def first_day(dataset: Dataset, *, max_symbols: int = 2) -> Dataset:
    """The data set's first UTC day and first symbols: what history copies, at any preset.

    bench-large's 30 days x 4 symbols would make each copy 41M ticks; history compares
    copies of the same ticks, for which the story's day of two symbols is enough.
    """
    if max_symbols < 1:
        raise ValueError(f"max_symbols={max_symbols} must be at least 1")
    end = min(dataset.end, dataset.start + dt.timedelta(days=1))
    return Dataset(dataset.symbols[:max_symbols], dataset.start, end, dataset.ticks_per_symbol
                   if dataset.days <= 1 else round(DAY_MS / dataset.interval_ms),
                   dataset.interval_ms)


@contextmanager
def scratch(target_url: Endpoint | str, dataset: Dataset, *, keep: bool = False) -> Iterator[Copies]:
    """The copies built in scratch schemas of the target, dropped afterwards (unless ``keep``)."""
    prefix = f"tsj_hist_{uuid.uuid4().hex[:8]}"
    schemas = {copy: f"{prefix}_{copy}" for copy in COPIES}
    with connection(target_url, autocommit=True) as conn:
        home = scalar(conn, queries.text("history.current_schema"))
    with ExitStack() as stack:
        # closed first (last in): read_frame's cached connections to the scratch URLs
        urls = {c: stack.enter_context(schema.scratch_schema(target_url, s, keep=keep))
                for c, s in schemas.items()}
        stack.callback(close_frames)
        copies = Copies(urls, schemas, dataset)
        _build(copies, source=sql.Identifier(home, "tick_data"))
        yield copies


def _build(copies: Copies, *, source: sql.Composable) -> None:
    ds = copies.dataset
    window = {"start": ds.start, "end": ds.end, "symbols": list(ds.symbols)}
    for copy in ("hot", "cold"):
        schema.provision(copies.urls[copy])
        with connection(copies.urls[copy], autocommit=True) as conn:
            conn.execute(queries.compose("history.copy_ticks", src=source), window)
            conn.execute(queries.text("bench.analyze"))
    cold_table = sql.Identifier(copies.schemas["cold"], "tick_data")
    for copy, create, fill in (("float8", "history.create_float8", "history.copy_float8"),
                               ("int8", "history.create_int8", "history.copy_int8")):
        with connection(copies.urls[copy], autocommit=True) as conn:
            for name in (create, "history.hypertable", "history.index", "history.compression",
                         "history.compression_policy"):
                conn.execute(queries.text(name))
            conn.execute(queries.compose(fill, src=cold_table))
            conn.execute(queries.text("bench.analyze"))
    sizes, columns = [], []
    for copy in COPIES:
        with connection(copies.urls[copy], autocommit=True) as conn:
            before = _sizes(conn)
            columns += [{"copy": copy, "column": c, "before": b} for c, b in _column_bytes(conn)]
            seconds = math.nan
            if copy != "hot":
                seconds = run_policy(conn, "policy_compression")
                conn.execute(queries.text("bench.analyze"))
            after = _sizes(conn)
            after_cols = dict(_column_bytes(conn))
        for row in columns:
            if row["copy"] == copy:
                row["after"] = after_cols.pop(str(row["column"]), 0)
        columns += [{"copy": copy, "column": c, "before": 0, "after": b}
                    for c, b in after_cols.items()]  # the compressed tables' metadata
        sizes.append({"copy": copy, "price_type": COPIES[copy], "ticks": before["ticks"],
                      "chunks": before["chunks"], "compressed_chunks": after["compressed_chunks"],
                      "bytes_before": before["bytes"], "bytes_after": after["bytes"],
                      "compress_s": seconds})
        log.info("history: %s copy, %d ticks, %d -> %d bytes", copy, before["ticks"],
                 before["bytes"], after["bytes"])
    copies.sizes = pd.DataFrame(sizes)
    copies.columns = pd.DataFrame(columns)
    if copies.sizes["ticks"].nunique() != 1:
        raise AssertionError(f"history copies hold different tick counts: "
                             f"{dict(zip(copies.sizes['copy'], copies.sizes['ticks']))}")


def run_policy(conn: psycopg.Connection[Any], proc: str) -> float:
    """Run this schema's ``proc`` policy job once (``CALL run_job``); its seconds."""
    row = conn.execute(queries.text("history.policy_job"), {"proc": proc}).fetchone()
    if row is None:
        where = scalar(conn, queries.text("history.current_schema"))
        raise LookupError(f"no {proc} job on tick_data in schema {where}; add the policy "
                          "(history builds every copy with the story's policies)")
    t0 = time.perf_counter()
    conn.execute(queries.text("policies.run_job"), {"job": row[0]})
    return time.perf_counter() - t0


def _sizes(conn: psycopg.Connection[Any]) -> dict[str, int]:
    cur = conn.execute(queries.text("history.sizes"))
    row = cur.fetchone()
    assert row is not None
    return {d.name: int(v or 0) for d, v in zip(cur.description or (), row)}


def _column_bytes(conn: psycopg.Connection[Any]) -> list[tuple[str, int]]:
    """Bytes per column over the chunks: each chunk's compressed table when it has one."""
    total: dict[str, int] = {}
    for schema_name, table, cschema, ctable in conn.execute(queries.text("history.chunks")).fetchall():
        rel = (cschema, ctable) if ctable else (schema_name, table)
        name = sql.Identifier(*rel).as_string(conn)
        for (col,) in conn.execute(queries.text("history.columns"), {"rel": name}).fetchall():
            got = scalar(conn, queries.compose("history.column_bytes", col=col,
                                               rel=sql.Identifier(*rel)))
            total[col] = total.get(col, 0) + int(got)
    return list(total.items())


# -- compression: bytes, precision, speed ----------------------------------------------


def compression_table(copies: Copies) -> pd.DataFrame:
    """Per copy: bytes before and after the compression job, per tick, and the ratio."""
    df = copies.sizes.copy()
    df["ratio"] = df["bytes_before"] / df["bytes_after"]
    df["bytes_per_tick_before"] = df["bytes_before"] / df["ticks"]
    df["bytes_per_tick_after"] = df["bytes_after"] / df["ticks"]
    return df


def column_table(copies: Copies) -> pd.DataFrame:
    """Per column: bytes of its values before and after compression, per price type."""
    df = copies.columns[copies.columns["copy"].isin(TYPES)].copy()
    wide = df.pivot_table(index="column", columns="copy", values=["before", "after"],
                          aggfunc="sum", fill_value=0)
    wide.columns = [f"{copy}_{when}" for when, copy in wide.columns]
    order = [c for c in copies.columns["column"].drop_duplicates() if c in wide.index]
    return wide.loc[order].reset_index()


def precision(copies: Copies) -> pd.DataFrame:
    """What each price type loses of the story's DECIMAL(20,8) prices (bid, ask, last)."""
    rows = [{"copy": "cold", "changed": 0, "max_error": 0.0, "values": None}]
    with connection(copies.urls["hot"], autocommit=True) as conn:
        for copy, name in (("float8", "history.precision_float8"), ("int8", "history.precision_int8")):
            changed, max_error, values = one(conn, queries.text(name))
            rows.append({"copy": copy, "changed": int(changed), "max_error": float(max_error),
                         "values": int(values)})
    rows[0]["values"] = rows[1]["values"]
    return pd.DataFrame(rows)


def type_speed(copies: Copies, *, window: str = "1h", samples: int = 20, warmup: int = 2,
               seed: int = 0) -> pd.DataFrame:
    """1 h window fetch from each compressed price type, in turns (client and server time)."""
    dbs = [copies.db(c) for c in TYPES]
    got = window_fetch(dbs, copies.dataset, windows=[window], samples=samples, warmup=warmup,
                       seed=seed)
    return got.assign(workload="history_type_window")


def recommendation(copies: Copies, speed: pd.DataFrame) -> pd.DataFrame:
    """The price types side by side: disk, precision lost, window fetch p50."""
    comp = compression_table(copies).set_index("copy")
    prec = precision(copies).set_index("copy")
    fetch = speed.set_index("db")
    rows = []
    for copy in TYPES:
        rows.append({
            "price_type": COPIES[copy],
            "bytes_per_tick_uncompressed": comp.at[copy, "bytes_per_tick_before"],
            "bytes_per_tick_compressed": comp.at[copy, "bytes_per_tick_after"],
            "compression_ratio": comp.at[copy, "ratio"],
            "values_not_round_tripping": int(prec.at[copy, "changed"]),
            "values": int(prec.at[copy, "values"]),
            "max_error": prec.at[copy, "max_error"],
            "window_1h_p50_ms": fetch.at[copy, "p50_ms"],
            "window_1h_p95_ms": fetch.at[copy, "p95_ms"],
            "n": int(fetch.at[copy, "n"]),
        })
    return pd.DataFrame(rows)


def disk_plan(copies: Copies, *, interval_ms: int = STORY_INTERVAL_MS,
              compress_after_days: int = schema.COMPRESS_AFTER.days,
              retention_days: int = schema.RETENTION.days) -> pd.DataFrame:
    """What the story's plan costs on disk per symbol, from the bytes per tick measured.

    Steady state under the policies: ``compress_after_days`` days uncompressed and the
    rest of ``retention_days`` compressed; and a year kept (were retention lifted), all but
    the newest 30 days compressed. The measured copy's ticks are at the bench's spacing;
    bytes per tick are scaled to the story's 250 ms as they are.
    """
    comp = compression_table(copies).set_index("copy")
    hot, cold = comp.at["hot", "bytes_per_tick_before"], comp.at["cold", "bytes_per_tick_after"]
    per_day = DAY_MS / interval_ms
    gb = 1e9
    rows = [
        {"what": "bytes per tick, uncompressed (story DDL, indexes included)", "value": hot},
        {"what": "bytes per tick, compressed by the 30-day job", "value": cold},
        {"what": f"GB per symbol held under the policies ({compress_after_days} d uncompressed "
                 f"+ {retention_days - compress_after_days} d compressed)",
         "value": per_day * (compress_after_days * hot
                             + (retention_days - compress_after_days) * cold) / gb},
        {"what": f"GB per symbol held were nothing compressed ({retention_days} d)",
         "value": per_day * retention_days * hot / gb},
        {"what": "GB per symbol-year kept (no retention; 30 d uncompressed, 335 d compressed)",
         "value": per_day * (compress_after_days * hot + (365 - compress_after_days) * cold) / gb},
        {"what": "GB per symbol-year kept uncompressed", "value": per_day * 365 * hot / gb},
    ]
    return pd.DataFrame(rows).assign(interval_ms=interval_ms)


# -- windows and replay on compressed against uncompressed ----------------------------


def windows(copies: Copies, *, windows: Sequence[str], samples: int, warmup: int,
            seed: int) -> pd.DataFrame:
    """AC8 windows on the uncompressed and the compressed copy of the same ticks, in turns."""
    got = window_fetch([copies.db("hot", "uncompressed"), copies.db("cold", "compressed")],
                       copies.dataset, windows=windows, samples=samples, warmup=warmup, seed=seed)
    return got.assign(workload="history_window")


def ratios(df: pd.DataFrame, *, by: str, over: str = "uncompressed",
           under: str = "compressed") -> pd.DataFrame:
    """Per ``by`` value: p50/p95 (client and server) of ``under`` divided by ``over``'s."""
    out = []
    for key, g in df.groupby(by, sort=False):
        a, b = g.set_index("db").loc[over], g.set_index("db").loc[under]
        out.append({by: key, "n": int(b["n"]), f"{over}_p50_ms": a["p50_ms"],
                    f"{under}_p50_ms": b["p50_ms"], "p50_ratio": b["p50_ms"] / a["p50_ms"],
                    "p95_ratio": b["p95_ms"] / a["p95_ms"],
                    "server_ratio": (b["server_p50_ms"] / a["server_p50_ms"]
                                     if a.get("server_p50_ms") else math.nan)})
    return pd.DataFrame(out)


def replay_fetches(copies: Copies, *, rtts: Sequence[float | None], batch_sizes: Sequence[int],
                   samples: int, warmup: int, seed: int) -> pd.DataFrame:
    """Keyset pages over the uncompressed and the compressed day, direct and through the proxy.

    Both copies are paged with the replay's own key (:func:`pages`: pages end at an
    instant, keyed by time alone, which compressed chunks serve); one kept psycopg
    connection, no prepared statements (one round trip a page), as
    :func:`tsj_lab.bench.replay.fetch_latencies` does.
    """
    ds, rows = copies.dataset, []
    for rtt in rtts:
        for db in (copies.db("hot", "uncompressed"), copies.db("cold", "compressed")):
            with maybe_proxy(db.url, rtt) as url, connection(url, autocommit=True) as conn:
                conn.prepare_threshold = None
                for size in batch_sizes:
                    span = min((samples + warmup + 1) * size * ds.interval_ms / 1000.0,
                               ds.days * 86400)
                    (p,) = window_params(ds, span, samples=1,
                                         rng=random.Random(f"{seed}-{size}"))
                    walk = pages(conn, symbol=p["symbol"], start=p["start"], end=ds.end,
                                 size=size)
                    latencies, counts = time_calls([partial(_page_len, walk)] * samples,
                                                   warmup=warmup)
                    rows.append(point("history_replay_fetch", db.label, latencies, rows=counts,
                                      rtt_ms=rtt, via="direct" if rtt is None else "proxy",
                                      batch=size))
    return pd.DataFrame(rows)


def _page_len(walk: Iterator[list[tuple[Any, ...]]]) -> int:
    return len(next(walk, []))


def pages(conn: psycopg.Connection[Any], *, symbol: str, start: dt.datetime, end: dt.datetime,
          size: int) -> Iterator[list[tuple[Any, ...]]]:
    """One symbol's ticks in [start, end) in the replay's keyset pages
    (:func:`~tsj_lab.bench.workloads.keyset_pages`), as rows on one kept connection."""
    return keyset_pages(lambda name, params: conn.execute(queries.text(name), params).fetchall(),
                        lambda rows: rows[-1][0], symbol=symbol, start=start, end=end, size=size)


# -- candles: real-time, materialized-only, raw; flat against hierarchical --------------


def candles(copies: Copies, *, samples: int, warmup: int, seed: int,
            tail_hours: float = 6.0) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Candles over a range whose last ``tail_hours`` are not materialized yet.

    On the uncompressed copy: the provisioned views (candle_1m real-time; 5m/15m/1h
    hierarchical on it), flat 5m/15m/1h from the ticks, and a materialized-only 1m view,
    all refreshed up to ``end - tail_hours``; each read over the whole range against
    ``time_bucket`` on the raw ticks. Returns (timings, refreshes, differences): the
    refresh seconds per view (its materialized part; and a whole day of the provisioned
    views over the compressed copy), and per view how many candles differ from raw.
    """
    ds = copies.dataset
    split = ds.end - dt.timedelta(hours=tail_hours)
    if split <= ds.start:
        raise ValueError(f"tail of {tail_hours} h is as long as the data set; use a shorter one")
    hot = copies.urls["hot"]
    with connection(hot, autocommit=True) as conn:
        made = [(CANDLE_BY_NAME[w], flat, False) for w, (_, flat, _) in FLAT.items()]
        for candle, view, materialized_only in [*made, (CANDLES[0], MATERIALIZED_ONLY, True)]:
            block, parts = schema.candle_ddl(candle, continuous=True, flat=True, view=view,
                                                materialized_only=materialized_only)
            conn.execute(queries.compose(block, **dict(parts)))
        views = ["candle_1m", MATERIALIZED_ONLY, *schema.CANDLE_VIEWS[1:],
                 *(f for _, f, _ in FLAT.values())]
        refreshes = [_refresh(conn, v, ds.start, split, copy="uncompressed") for v in views]
    with connection(copies.urls["cold"], autocommit=True) as conn:
        refreshes += [_refresh(conn, v, ds.start, ds.end, copy="compressed")
                      for v in schema.CANDLE_VIEWS]
    sources = {"1m": [("realtime", "candle_1m"), ("materialized_only", MATERIALIZED_ONLY)]}
    for w, (hier, flat, _) in FLAT.items():
        sources[w] = [("hierarchical", hier), ("flat", flat)]
    rows, diffs = [], []
    for width, views_of in sources.items():
        rows += _time_candles(hot, ds, width, views_of, samples=samples, warmup=warmup, seed=seed)
        for how, view in views_of:
            diffs.append({"width": width, "view": view, "how": how,
                          "differ_from_raw": _differ(hot, ds, view, width)})
    return pd.DataFrame(rows), pd.DataFrame(refreshes), pd.DataFrame(diffs)


def _refresh(conn: psycopg.Connection[Any], view: str, start: dt.datetime, end: dt.datetime,
             *, copy: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    conn.execute(queries.text("history.refresh"), {"view": view, "start": start, "end": end})
    return {"view": view, "copy": copy, "hours": (end - start).total_seconds() / 3600,
            "seconds": time.perf_counter() - t0}


def _time_candles(url: Endpoint | str, ds: Dataset, width: str, views_of: list[tuple[str, str]], *,
                  samples: int, warmup: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(f"{seed}-history-candles-{width}")
    params = [{"symbol": rng.choice(ds.symbols), "start": ds.start, "end": ds.end,
               "width": CANDLE_WIDTHS[width][0]} for _ in range(samples)]
    sources = [*views_of, ("raw", None)]
    with ExitStack() as stack:
        fns: dict[Any, Any] = {}
        for how, view in sources:
            q, ident = ("candles.raw_range", {}) if view is None else \
                ("candles.view_range", {"view": view})
            fns[how, "client"] = lambda p, q=q, i=ident: read_frame(url, q, p, identifiers=i)
            fns[how, "server"] = stack.enter_context(  # planned as read_frame plans it
                explainer(url, q, identifiers=ident, prepared=generic_plans(url)))
        got = time_interleaved(fns, params, warmup=warmup)
    out = []
    for how, view in sources:
        latencies, frames = got[how, "client"]
        out.append(point("history_candles", "uncompressed", latencies,
                         rows=[len(f) for f in frames], server=got[how, "server"][1],
                         width=width, source=how, view=view or "time_bucket"))
    return out


def _differ(url: Endpoint | str, ds: Dataset, view: str, width: str) -> int:
    """Candles of ``view`` that differ from raw time_bucket's (via a flat view of raw)."""
    raw = read_frame(url, "candles.raw_range", {"symbol": ds.symbols[0], "start": ds.start,
                                               "end": ds.end, "width": CANDLE_WIDTHS[width][0]})
    got = read_frame(url, "candles.view_range", {"symbol": ds.symbols[0], "start": ds.start,
                                                "end": ds.end}, identifiers={"view": view})
    cols = ["bucket", "open", "high", "low", "close", "volume"]
    merged = raw[cols].merge(got[cols], on="bucket", how="outer", suffixes=("_raw", "_view"),
                             indicator=True)
    missing = int((merged["_merge"] != "both").sum())
    both = merged[merged["_merge"] == "both"]
    raw_v = both[[f"{c}_raw" for c in cols[1:]]].to_numpy(dtype=float)
    view_v = both[[f"{c}_view" for c in cols[1:]]].to_numpy(dtype=float)
    wrong = int((abs(raw_v - view_v) > 1e-9).any(axis=1).sum())
    return missing + wrong


# -- the policy jobs' cost --------------------------------------------------------------


def retention(copies: Copies) -> pd.DataFrame:
    """The 90-day retention job run once on each copy (all their chunks are older): seconds."""
    rows = []
    for copy, label in (("hot", "uncompressed"), ("cold", "compressed")):
        with connection(copies.urls[copy], autocommit=True) as conn:
            before = _sizes(conn)
            seconds = run_policy(conn, "policy_retention")
            after = _sizes(conn)
        rows.append({"job": "retention", "copy": label, "chunks": before["chunks"] - after["chunks"],
                     "ticks": before["ticks"] - after["ticks"], "seconds": seconds})
    return pd.DataFrame(rows)


def policy_costs(copies: Copies, refreshes: pd.DataFrame, dropped: pd.DataFrame) -> pd.DataFrame:
    """One table: compression per copy, refresh per view, retention: seconds, n = chunks."""
    comp = copies.sizes[copies.sizes["copy"] != "hot"]
    rows = [{"job": "compression", "what": f"{r.copy} ({r.price_type})", "n": int(r.chunks),
             "seconds": r.compress_s, "ticks_per_s": r.ticks / r.compress_s}
            for r in comp.itertuples()]
    rows += [{"job": "refresh", "what": f"{r.view} over {r.hours:g} h of {r.copy} ticks", "n": 1,
              "seconds": r.seconds, "ticks_per_s": None} for r in refreshes.itertuples()]
    rows += [{"job": "retention", "what": f"drop the {r.copy} copy", "n": int(r.chunks),
              "seconds": r.seconds, "ticks_per_s": r.ticks / r.seconds if r.seconds else None}
             for r in dropped.itertuples()]
    return pd.DataFrame(rows)
