"""The benchmark against the size of the tables: windows as the data set grows (and once
its new days are compressed), and the peak memory of the process doing it."""

from __future__ import annotations

import datetime as dt
import math
import resource
import time
from collections.abc import Sequence

import pandas as pd

from .. import queries
from ..db import Endpoint, connection, scalar
from ..domain import TickSpec
from ..stats import percentile
from . import TIMESCALE, WINDOWS, Dataset, prepare, table_bytes
from .workloads import window_fetch


def peak_rss_mb() -> dict[str, float]:
    """Peak resident memory of this process and of its waited-for children, in MiB."""
    kib = 1024.0  # Linux reports ru_maxrss in KiB
    return {"self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / kib,
            "children": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / kib}


def latency_by_size(target_url: Endpoint | str, source_url: Endpoint | str, *, steps: Sequence[int],
                    symbols: Sequence[str], start: dt.date, interval_ms: int, seed: int,
                    windows: Sequence[str] = tuple(WINDOWS), samples: int = 20, warmup: int = 3,
                    compress: bool = True) -> pd.DataFrame:
    """Window fetch against table size (workload ``window_by_size``), on uncompressed and,
    with ``compress`` (the timescale edition), on compressed days.

    At each step the data set grows to ``days`` (:func:`tsj_lab.bench.prepare`; the days
    added are uncompressed) and windows are fetched from the new days, on the hypertable
    and the plain table in turns; then (``compress``) the new days' chunks are compressed
    one by one (as the compression job does; seconds per chunk recorded) and windows are
    fetched from all the days, now compressed. At the end every chunk of the data set is
    decompressed again, so the rest of the benchmark reads the table as it was. Each row
    carries ``days``, ``table_bytes`` and this process's peak RSS so far.
    """
    if sorted(steps) != list(steps) or (steps and steps[0] < 1):
        raise ValueError(f"size steps {list(steps)} must be growing day counts >= 1")
    lo = dt.datetime.combine(start, dt.time(), tzinfo=dt.UTC)
    out, done = [], 0
    try:
        for step in steps:
            dbs, ds = prepare(target_url, source_url,
                              TickSpec(tuple(symbols), start, days=step, interval_ms=interval_ms, seed=seed))
            if compress and not done:  # a killed run left chunks compressed: start uncompressed
                _decompress(target_url, lo, lo + dt.timedelta(days=steps[-1]))
            rss = peak_rss_mb()
            new = Dataset(ds.symbols, lo + dt.timedelta(days=done), ds.end,
                          ds.ticks_per_symbol, ds.interval_ms)
            hyper = [d for d in dbs if d.label == TIMESCALE]
            plain = [d for d in dbs if d.label != TIMESCALE]
            got = window_fetch(dbs, new, windows=windows, samples=samples, warmup=warmup,
                               seed=seed)
            sizes = {d.label: table_bytes(d) for d in dbs}
            out.append(got.assign(workload="window_by_size", days=step, compressed=False,
                                  table_bytes=got["db"].map(sizes), peak_rss_mb=rss["self"]))
            done = step
            if not compress:
                continue
            chunk_s = compress_chunks(target_url, new.start, new.end)
            got = window_fetch([*plain, *hyper], ds, windows=windows, samples=samples,
                               warmup=warmup, seed=seed)
            sizes = {d.label: table_bytes(d) for d in dbs}
            got = got.assign(table_bytes=got["db"].map(sizes),
                             db=got["db"].replace({TIMESCALE: f"{TIMESCALE} compressed"}))
            out.append(got.assign(workload="window_by_size", days=step, compressed=True,
                                  peak_rss_mb=rss["self"],
                                  compress_chunk_p50_s=_median(chunk_s),
                                  compress_chunks=len(chunk_s)))
    finally:
        if compress and steps:
            _decompress(target_url, lo, lo + dt.timedelta(days=steps[-1]))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def _median(values: Sequence[float]) -> float:
    return percentile(values, 50) if values else math.nan


def compress_chunks(url: Endpoint | str, start: dt.datetime, end: dt.datetime) -> list[float]:
    """Each uncompressed chunk in [start, end) compressed one by one, as the compression
    policy's job does; seconds per chunk."""
    seconds = []
    with connection(url, autocommit=True) as conn:
        chunks = [r[0] for r in conn.execute(queries.text("history.uncompressed_chunks"),
                                             {"start": start, "end": end}).fetchall()]
        for chunk in chunks:
            t0 = time.perf_counter()
            conn.execute(queries.text("history.compress_chunk"), {"chunk": chunk})
            seconds.append(time.perf_counter() - t0)
        conn.execute(queries.text("bench.analyze"))
    return seconds


def _decompress(url: Endpoint | str, start: dt.datetime, end: dt.datetime) -> int:
    with connection(url, autocommit=True) as conn:
        n = scalar(conn, queries.text("history.decompress_chunks"), {"start": start, "end": end})
        if n:
            conn.execute(queries.text("bench.analyze"))
    return int(n or 0)
