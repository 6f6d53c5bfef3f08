"""The story's own "Benchmark Results (2026-01-18)" table, reproduced row by row.

The story measured on Timescale Cloud behind about 300 ms of round trip. Each row is
measured here the way its name says, on the target's hypertable with the bench's ticks,
on one kept psycopg connection (one round trip per query, no prepared statements), direct
and through :class:`~tsj_lab.server.proxy.LatencyProxy` at the story's round trip, beside the
story's figure. ``physics`` says where a figure cannot be right whatever the server: a
query answered over the network takes at least one round trip, and one connection that
asks for the next page when the last arrives gets at most ``batch / RTT`` ticks a second.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from dataclasses import dataclass
from typing import Any

import pandas as pd

from .. import queries
from ..lab import recording
from . import BATCH_SIZES, Database, Dataset, point, time_calls
from . import record as record_points
from ..db import connection
from .replay import maybe_proxy, fetch_latencies

log = logging.getLogger("tsj_lab")

#: the story's round trip to its cloud ("Network: ~300ms RTT")
STORY_RTT_MS = 300.0


@dataclass(frozen=True)
class StoryRow:
    """One row of the story's results: what it names, its figure and unit."""

    row: str
    figure: float
    unit: str  # 'ms' or 'ticks/s'
    target: str = "-"


#: the story's "Query Performance" and "Throughput" tables, as printed there
STORY_RESULTS = (
    StoryRow("Batch 100 ticks", 33, "ms"),
    StoryRow("Batch 500 ticks", 51, "ms"),
    StoryRow("Batch 1000 ticks", 34, "ms"),
    StoryRow("Batch 2000 ticks", 83, "ms"),
    StoryRow("1-min candles", 85, "ms", "<100ms"),
    StoryRow("5-min candles", 35, "ms", "<100ms"),
    StoryRow("Ticks/sec (batch 1000)", 30_000, "ticks/s"),
    StoryRow("Ticks/sec (batch 500)", 10_000, "ticks/s"),
    StoryRow("Continuous aggregates", 35, "ms", "<35ms"),
)
#: what each story row is measured as here: (kind, batch or view)
MEASURED_AS = {
    "Batch 100 ticks": ("batch", 100), "Batch 500 ticks": ("batch", 500),
    "Batch 1000 ticks": ("batch", 1000), "Batch 2000 ticks": ("batch", 2000),
    "1-min candles": ("view", "candle_1m"), "5-min candles": ("view", "candle_5m"),
    "Ticks/sec (batch 1000)": ("rate", 1000), "Ticks/sec (batch 500)": ("rate", 500),
    "Continuous aggregates": ("view", "candle_1h"),
}
#: how each is measured, in words (the report's column)
HOW = {"batch": "one keyset page of {} ticks (the replay client's fetch)",
       "view": "a day of one symbol's candles from {} (continuous aggregate)",
       "rate": "pages of {} fetched one after another on one connection: batch / p50"}


def measure(db: Database, dataset: Dataset, *, rtt_ms: float = STORY_RTT_MS,
            samples: int = 10, warmup: int = 2, seed: int = 0) -> pd.DataFrame:
    """Every measured point behind the story's rows, direct and at ``rtt_ms``."""
    pages = fetch_latencies([db], dataset, rtts=[None, rtt_ms], batch_sizes=BATCH_SIZES,
                            samples=samples, warmup=warmup, seed=seed)
    rows = [r | {"workload": "story_batch"} for r in pages.to_dict("records")]
    rng = random.Random(f"{seed}-story-candles")
    day = dataset.start
    params = [{"symbol": rng.choice(dataset.symbols), "start": day,
               "end": day + dt.timedelta(days=1)} for _ in range(samples)]
    for rtt in (None, rtt_ms):
        with maybe_proxy(db.url, rtt) as url, connection(url, autocommit=True) as conn:
            conn.prepare_threshold = None  # one round trip per query, as in replay
            for view in ("candle_1m", "candle_5m", "candle_1h"):
                stmt = queries.compose("candles.view_range", view=view)
                calls = [lambda p=p, s=stmt: len(conn.execute(s, p).fetchall()) for p in params]
                latencies, counts = time_calls(calls, warmup=warmup)
                rows.append(point("story_candles", db.label, latencies, rows=counts, view=view,
                                  rtt_ms=rtt, via="direct" if rtt is None else "proxy"))
        log.info("story: candles at RTT %s ms measured", rtt)
    return pd.DataFrame(rows)


def table(points: pd.DataFrame, *, rtt_ms: float = STORY_RTT_MS) -> pd.DataFrame:
    """The story's rows beside the figures measured here (direct and at ``rtt_ms``), and
    what physics allows at the story's own round trip (300 ms, whatever ``rtt_ms`` is)."""
    out = []
    for s in STORY_RESULTS:
        kind, what = MEASURED_AS[s.row]
        direct, proxied = _find(points, kind, what, None), _find(points, kind, what, rtt_ms)
        if kind == "rate":
            here_direct = what / (direct["p50_ms"] / 1000.0)
            here_proxy = what / (proxied["p50_ms"] / 1000.0)
        else:
            here_direct, here_proxy = direct["p50_ms"], proxied["p50_ms"]
        out.append({"row": s.row, "story": s.figure, "unit": s.unit, "target": s.target,
                    "measured_as": HOW[kind].format(what),
                    "direct_p50": here_direct, "direct_p95": _p95(direct, kind, what),
                    f"rtt_{rtt_ms:g}ms_p50": here_proxy,
                    f"rtt_{rtt_ms:g}ms_p95": _p95(proxied, kind, what),
                    "n": int(proxied["n"]), "physics": physics(s)})
    return pd.DataFrame(out)


def _find(points: pd.DataFrame, kind: str, what: Any, rtt: float | None) -> pd.Series:
    col, key = ("view", what) if kind == "view" else ("batch", what)
    sel = points[(points.get(col) == key) & (points["via"] == ("direct" if rtt is None else "proxy"))]
    if not len(sel):
        raise LookupError(f"no story point for {col}={key} at RTT {rtt}; run story.measure first")
    return sel.iloc[0]


def _p95(row: pd.Series, kind: str, what: Any) -> float:
    # a rate's 95th percentile is the batch over the 95th-percentile latency: the slow end
    return what / (row["p95_ms"] / 1000.0) if kind == "rate" else row["p95_ms"]


def physics(row: StoryRow, *, rtt_ms: float = STORY_RTT_MS) -> str:
    """Whether the story's figure is possible at its own round trip, and why not."""
    kind, what = MEASURED_AS[row.row]
    if kind == "rate":
        ceiling = float(what) / (rtt_ms / 1000.0)  # type: ignore[arg-type]  # a count
        if row.figure > ceiling:
            return (f"cannot be right: one connection paging {what} ticks per {rtt_ms:g} ms "
                    f"round trip gets at most {ceiling:,.0f} ticks/s; {row.figure:,.0f} needs "
                    f"{row.figure / ceiling:.0f}+ pages in flight at once")
        return "possible"
    if row.figure < rtt_ms:
        return (f"cannot be right: {row.figure:g} ms is less than one {rtt_ms:g} ms round trip, "
                "which every query over that network takes (a local or cached timing?)")
    return "possible"


def inconsistencies() -> list[str]:
    """What the story's table says against itself, independent of any measurement."""
    fig = {s.row: s.figure for s in STORY_RESULTS}
    notes = []
    if fig["Batch 1000 ticks"] < fig["Batch 500 ticks"]:
        notes.append(f"a page of 1000 ticks ({fig['Batch 1000 ticks']:g} ms) faster than one of "
                     f"500 ({fig['Batch 500 ticks']:g} ms): noise larger than the effect")
    for batch in (1000, 500):
        derived = batch / (fig[f"Batch {batch} ticks"] / 1000.0)
        notes.append(f"ticks/s at batch {batch} ({fig[f'Ticks/sec (batch {batch})']:,.0f}) is "
                     f"batch / latency ({derived:,.0f}): derived from the latency row, not measured")
    return notes


def record(points: pd.DataFrame, rows: pd.DataFrame) -> None:
    record_points(points)
    recording.record_table("story benchmark results", rows)
    for rec in rows.to_dict("records"):
        ok = rec["physics"] == "possible"
        recording.record_check(f"story figure: {rec['row']}", "ok" if ok else "warn",
                               detail=f"story {rec['story']:,g} {rec['unit']}; {rec['physics']}")

