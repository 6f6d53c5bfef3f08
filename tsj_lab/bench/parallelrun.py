"""The parallel run measured: what a catch-up pass costs, and how far the follow mode lags.

Both run in two scratch schemas of the target (a plain ``tick_data`` standing in for
Supabase, and the story's hypertable), so the user's own tables are never written:

* :func:`measure_catchup`: ``days`` of ticks migrated, one tick of one day corrected at
  the source (its count unchanged, as an application linking a tick to a trade does),
  then one catch-up pass (rows read on the source, seconds, days copied) and a second
  pass that finds nothing.
* :func:`measure_follow`: a :class:`Writer` thread writes ticks at a fixed rate (the
  story's 250 ms per symbol, or faster) while :func:`tsj_lab.migrate.follow.follow` runs;
  the lag of every step (source's newest tick minus the target's, before the step) gives
  p50/p95/max with their sample count.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from .. import migrate, queries
from ..data import generate
from ..db import Endpoint, connect
from ..domain import TickSpec
from ..migrate import follow as following
from ..migrate import sync as syncing
from ..provision import schema

#: the story's tick spacing per symbol
STORY_INTERVAL_MS = 250


class Writer:
    """A thread writing ticks into ``url``'s tick_data at a fixed rate, stamped with the
    wall clock (as the application's feed would): every ``period`` seconds the ticks due
    since the last write, ``interval_ms`` apart per symbol, in one INSERT."""

    def __init__(self, url: Endpoint | str, *, symbols: Sequence[str], interval_ms: float,
                 period: float = 0.05) -> None:
        if interval_ms <= 0 or period <= 0:
            raise ValueError(f"interval_ms={interval_ms} and period={period} must be positive")
        self.url, self.symbols = url, list(symbols)
        self.step = dt.timedelta(milliseconds=interval_ms)
        self.period = period
        self.written = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tsj-writer", daemon=True)
        self.error: BaseException | None = None

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        try:
            with connect(self.url, autocommit=True) as conn:
                nxt = dt.datetime.now(dt.UTC)
                while not self._stop.is_set():
                    now = dt.datetime.now(dt.UTC)
                    n = int((now - nxt) / self.step) + 1 if now >= nxt else 0
                    if n:
                        conn.execute(queries.text("sync.write_ticks"), {
                            "symbols": self.symbols, "n": n, "start": nxt, "step": self.step})
                        self.written += n * len(self.symbols)
                        nxt += n * self.step
                    self._stop.wait(self.period)
        except BaseException as exc:  # raised in the caller's thread by stop()
            self.error = exc


@contextmanager
def scratch_pair(url: Endpoint | str) -> Iterator[tuple[Endpoint, Endpoint]]:
    """Two scratch schemas on ``url``: a plain tick_data (the source) and the story's
    hypertable (the target); both dropped afterwards."""
    tag = uuid.uuid4().hex[:8]
    with schema.scratch_schema(url, f"tsj_pr_src_{tag}") as src, \
            schema.scratch_schema(url, f"tsj_pr_tgt_{tag}") as tgt:
        schema.create_source(src)
        schema.provision(tgt)
        yield src, tgt


@dataclass(frozen=True)
class CatchupCost:
    days: int
    symbols: int
    rows: int  # source rows in the window
    changed_days: int
    pass_rows_read: int  # source rows the pass read (digest + copy)
    pass_rows_copied: int
    pass_seconds: float
    pass_compare_seconds: float
    level_rows_read: int  # a pass over the level pair (nothing to copy)
    level_seconds: float
    level_after: bool  # the pass left the pair level

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def measure_catchup(url: Endpoint | str, *, days: int = 30, symbols: Sequence[str] = ("ES", "NQ"),
                    interval_ms: int = 60_000) -> CatchupCost:
    """One corrected tick in one day of ``days``: what a catch-up pass costs (see the
    module doc). The days end yesterday, inside the story's retention."""
    spec = TickSpec.ending_yesterday(list(symbols), days=days, interval_ms=interval_ms)
    with scratch_pair(url) as (src, tgt):
        generate.load(src, spec, workers=1)
        migrate.run(src, tgt, progress=False)
        with connect(src, autocommit=True) as conn:  # a tick linked to a trade
            conn.execute(queries.text("sync.link_one_tick"),
                         {"symbol": spec.symbols[0], "day": spec.start + dt.timedelta(days=days // 2),
                          "trade_id": str(uuid.uuid4())})
        first = syncing.sync(src, tgt, progress=False)
        second = syncing.sync(src, tgt, progress=False)
    return CatchupCost(days, len(spec.symbols), first.rows_digested, len(first.differing),
                       first.rows_read_source, first.rows_copied, first.seconds,
                       first.seconds_compare, second.rows_read_source, second.seconds,
                       second.level)


@dataclass(frozen=True)
class FollowLag:
    interval_ms: float  # the writer's spacing per symbol
    symbols: int
    seconds: float
    written: int
    steps: int
    lag_p50_s: float | None
    lag_p95_s: float | None
    lag_max_s: float | None
    level_after: bool  # one more step after the writer stopped made the newest ticks equal

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def measure_follow(url: Endpoint | str, *, interval_ms: float = STORY_INTERVAL_MS, seconds: float = 20.0,
                   symbols: Sequence[str] = ("ES", "NQ"), follow_interval: float = 0.5
                   ) -> FollowLag:
    """The follow mode's lag under a writer at ``interval_ms`` per symbol for ``seconds``."""
    if not 1 <= seconds <= 3600:
        raise ValueError(f"seconds={seconds} is out of range; use 1-3600")
    spec = TickSpec.ending_yesterday(list(symbols), days=1, interval_ms=60_000)
    with scratch_pair(url) as (src, tgt):
        generate.load(src, spec, workers=1)
        migrate.run(src, tgt, progress=False)
        with Writer(src, symbols=symbols, interval_ms=interval_ms) as writer:
            time.sleep(min(1.0, seconds / 10))
            # burn-in: the first step copies the gap between the loaded day and now
            following.follow(src, tgt, max_steps=1)
            res = following.follow(src, tgt, interval=follow_interval, duration=seconds)
        following.follow(src, tgt, max_steps=1)
        with connect(src, autocommit=True) as s, connect(tgt, autocommit=True) as t:
            level = syncing.newest(s) == syncing.newest(t)
    return FollowLag(interval_ms, len(symbols), seconds, writer.written, len(res.steps),
                     res.lag(50), res.lag(95), max(res.lags) if res.lags else None, level)
