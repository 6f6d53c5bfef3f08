"""The migration over a long round trip: rows/s direct and through the latency proxy.

The story's team sits about 300 ms from both clouds (they measured 340 ms), so the model
puts BOTH the source and the target behind a :class:`~tsj_lab.server.proxy.LatencyProxy`
at the same round trip; "direct" reaches both without one. Each run copies one symbol
into an empty, provisioned scratch schema of the target with ``migrate.run``'s defaults
(the batches in flight follow the round trip it measures) and is verified against the
source. Two sizes: the story's 454,600+ production ticks (one day at 190 ms) and a
history of ``days`` days, generated deterministically into a scratch schema of the
source, many batches, so a per-batch cost shows. Each proxy counts what crossed it
(connections and turns), so the round trips are counted, not guessed.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import pandas as pd

from .. import migrate
from ..data import generate
from ..db import Endpoint, as_endpoint, url_text
from ..domain import TickSpec
from ..provision import schema
from ..server.proxy import LatencyProxy

log = logging.getLogger("tsj_lab")

#: the story's production ticks: one day at 190 ms is 454,737 ticks (>= 454,600)
STORY_INTERVAL_MS = 190
SYMBOL = "ES"
START = dt.date(2026, 1, 19)


def sizes(*, days: int, interval_ms: int,
          story_interval_ms: int = STORY_INTERVAL_MS) -> dict[str, TickSpec]:
    """The two data sets: the story's ticks (a day at ``story_interval_ms``), and ``days``
    days at ``interval_ms``."""
    return {"story": TickSpec((SYMBOL,), START, days=1, interval_ms=story_interval_ms),
            f"{days} days": TickSpec((SYMBOL,), START, days=days, interval_ms=interval_ms)}


@contextmanager
def _source(source_url: Endpoint | str, spec: TickSpec) -> Iterator[Endpoint]:
    """``spec``'s ticks in a scratch schema of the source, dropped after."""
    with schema.scratch_schema(source_url, f"tsj_mig_{uuid.uuid4().hex[:8]}_source") as url:
        schema.create_source(url)
        generate.load(url, spec, progress=False)
        yield url


@contextmanager
def _via(url: Endpoint, rtt: float | None, name: str) -> Iterator[tuple[Endpoint, LatencyProxy | None]]:
    if rtt is None:
        yield url, None
        return
    with LatencyProxy.for_url(url_text(url), rtt_ms=rtt) as proxy:
        yield as_endpoint(url).through(proxy.url(url_text(url)), name=name), proxy


def run_once(source: Endpoint, target_url: Endpoint | str, spec: TickSpec,
             rtt: float | None) -> dict[str, Any]:
    """One verified migration of ``spec`` from ``source`` into a fresh scratch target:
    ``seconds`` is the copy (``MigrationResult.seconds``, what rows/s divides by),
    ``run_seconds`` the whole ``migrate.run``."""
    name = f"tsj_mig_{uuid.uuid4().hex[:8]}_target"
    with schema.scratch_schema(target_url, name) as url:
        schema.provision(url)
        with ExitStack() as stack:
            src, ps = stack.enter_context(_via(source, rtt, "source via proxy"))
            tgt, pt = stack.enter_context(_via(url, rtt, "target via proxy"))
            t0 = time.perf_counter()
            res = migrate.run(src, tgt, since=spec.start.isoformat(), symbols=[SYMBOL],
                              progress=False, include_expired=True)
            wall = time.perf_counter() - t0
            counted = {side: p.stats() for side, p in (("source", ps), ("target", pt)) if p}
    row: dict[str, Any] = {
        "via": "direct" if rtt is None else "proxy", "rtt_ms": rtt, "rows": res.source_rows,
        "batches": res.batches, "workers": res.workers, "seconds": res.seconds,
        # the whole run: checks, plan, setup, the batches, anomalies, refresh, verification
        "run_seconds": wall,
        "rows_per_s": res.rows_per_s, "verified": res.ok}
    for side, st in counted.items():
        row[f"{side}_connections"] = st.connections
        row[f"{side}_round_trips"] = st.turns
    return row


def measure(source_url: Endpoint | str, target_url: Endpoint | str, *,
            rtts: Sequence[float | None], days: int, interval_ms: int,
            story_interval_ms: int = STORY_INTERVAL_MS) -> pd.DataFrame:
    """Rows/s per size and RTT (None: direct), with each run's counted round trips per side
    and, against direct of the same size, the extra round trips and the fraction of direct
    rows/s. Direct runs first and last of each size (the proxied runs in between, longest
    round trip first), and the proxied runs are judged against the mean of the two, so a
    machine that slows down or speeds up during the section does not tilt the ratios."""
    rows = []
    proxied = sorted({float(r) for r in rtts if r is not None}, reverse=True)
    order: list[float | None] = [None, *proxied, None]
    specs = sizes(days=days, interval_ms=interval_ms, story_interval_ms=story_interval_ms)
    for size, spec in specs.items():
        with _source(as_endpoint(source_url, name="source"), spec) as src:
            for rtt in order:
                row = run_once(src, target_url, spec, rtt) | {"size": size}
                log.info("migration %s at RTT %s: %.0f rows/s", size, rtt, row["rows_per_s"])
                rows.append(row)
    return judge(pd.DataFrame(rows))


def judge(df: pd.DataFrame) -> pd.DataFrame:
    """Adds ``extra_round_trips`` ((seconds - direct's) / rtt) and ``fraction_of_direct``
    (rows/s over direct's), direct being the mean of the size's direct runs."""
    direct = df[df["via"] == "direct"].groupby("size")[["seconds", "rows_per_s"]].mean()
    base_s = df["size"].map(direct["seconds"])
    base_rate = df["size"].map(direct["rows_per_s"])
    rtt_s = df["rtt_ms"].astype(float) / 1000.0
    df["extra_round_trips"] = ((df["seconds"] - base_s) / rtt_s).where(rtt_s > 0)
    df["fraction_of_direct"] = df["rows_per_s"] / base_rate
    return df


