"""The follow mode of the parallel run: new ticks copied by time, a step every interval.

Each step, in one target transaction under the parallel run's lock (sql/sync.sql): read
each symbol's newest tick on the target and on the source (one index probe per symbol on
each side), delete the target's ticks from ``newest - overlap`` on and COPY the source's
from there (one COPY statement: one snapshot). The overlap re-copies the last second or so,
so a tick that committed after a newer one was copied, or was corrected or deleted within
the overlap, still lands exactly; anything older (a late tick into an old day, an update)
is the catch-up's (:mod:`tsj_lab.migrate.sync`). A step reads the source's newest rows
only: its cost follows the write rate, not the table's size.

Lag is measured at the start of each step, before it copies: the source's newest tick
minus the target's, the largest over the symbols. That is the high point of the saw-tooth
(the target is level right after each step), so its p95 bounds what a reader of the target
sees.

Why polling and not logical decoding: docs/migration.md ("The parallel run").
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from .. import queries
from ..db import Endpoint, connect
from ..errors import MigrationError
from ..stats import percentile
from .sync import ahead_error, newest, require_pair

log = logging.getLogger("tsj_lab")

DEFAULT_INTERVAL_S = 0.5
DEFAULT_OVERLAP_S = 1.0


@dataclass(frozen=True)
class Step:
    """One follow step: the lag it found (seconds; None: no tick on either side), rows."""

    lag_s: float | None
    rows: int
    seconds: float


@dataclass
class FollowResult:
    steps: list[Step] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.steps)

    @property
    def lags(self) -> list[float]:
        return [s.lag_s for s in self.steps if s.lag_s is not None]

    def lag(self, q: float) -> float | None:
        """The ``q``-th percentile of the step lags, in seconds (None: no step measured)."""
        return percentile(self.lags, q) if self.lags else None

    def summary(self) -> dict[str, Any]:
        lags = self.lags
        return {"steps": len(self.steps), "rows": self.rows, "lag_n": len(lags),
                "lag_p50_s": _round(self.lag(50)), "lag_p95_s": _round(self.lag(95)),
                "lag_max_s": _round(max(lags) if lags else None),
                "step_p95_s": _round(percentile([s.seconds for s in self.steps], 95)
                                     if self.steps else None)}


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


def step(src: psycopg.Connection[Any], tgt: psycopg.Connection[Any], *,
         overlap: dt.timedelta = dt.timedelta(seconds=DEFAULT_OVERLAP_S),
         force: bool = False) -> Step:
    """Copy what the source has from each symbol's newest target tick (less ``overlap``)
    on; ``tgt`` is a non-autocommit connection, ``src`` an autocommit one.

    A target ahead of the source is refused at every step (unless ``force``): a follow
    mode left running across the flip would otherwise delete the application's first
    writes to TimescaleDB, a second of them per step."""
    t0 = time.perf_counter()
    with tgt.transaction():
        tgt.execute(queries.text("sync.lock"))
        have = newest(tgt)
        want = newest(src)
        if not have:
            raise MigrationError("the target holds no ticks: run 'tsj migrate' first (follow "
                                 "copies what is newer than the target's newest tick)")
        refused = None if force else ahead_error(have, want, what="the follow mode")
        if refused is not None:
            raise refused
        floor = min(have.values()) - overlap  # where a symbol new to the target starts
        starts = {s: have[s] - overlap if s in have else floor for s in want}
        lags = [(t - have[s]).total_seconds() if s in have else (t - floor).total_seconds()
                for s, t in want.items()]
        for symbol, start in starts.items():
            tgt.execute(queries.text("sync.follow_delete"), {"symbol": symbol, "start": start})
        rows = 0
        if starts:
            params = {"symbols": list(starts), "starts": list(starts.values())}
            copy_in = queries.compose("migrate.copy_in", table="tick_data")
            with src.cursor() as sc, tgt.cursor() as tc:
                with sc.copy(queries.text("sync.follow_copy_out"), params) as out:
                    with tc.copy(copy_in) as inp:
                        for data in out:
                            inp.write(data)
                rows = tc.rowcount
    lag = max(0.0, max(lags)) if lags else None
    return Step(lag, rows, time.perf_counter() - t0)


def follow(
    source: Endpoint | str,
    target: Endpoint | str,
    *,
    interval: float = DEFAULT_INTERVAL_S,
    overlap: float = DEFAULT_OVERLAP_S,
    duration: float | None = None,
    max_steps: int | None = None,
    stop: threading.Event | None = None,
    on_step: Callable[[Step], None] | None = None,
    force: bool = False,
) -> FollowResult:
    """Keep the target level with the source's newest ticks, a step every ``interval``
    seconds, until ``duration`` seconds, ``max_steps`` steps, ``stop`` is set, or Ctrl-C
    (the step under way is rolled back whole); the steps and their lags. ``force``: see
    :func:`step`."""
    if not 0.01 <= interval <= 3600:
        raise ValueError(f"interval={interval} s is out of range; use 0.01-3600")
    if not 0 <= overlap <= 3600:
        raise ValueError(f"overlap={overlap} s is out of range; use 0-3600")
    if duration is not None and duration <= 0:
        raise ValueError(f"duration={duration} s must be positive (None: until stopped)")
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps={max_steps} must be >= 1 (None: until stopped)")
    require_pair(source, target, force=force)
    stop = stop or threading.Event()
    result = FollowResult()
    gap = dt.timedelta(seconds=overlap)
    end = None if duration is None else time.monotonic() + duration
    try:
        with connect(source, autocommit=True) as src, connect(target) as tgt:
            while not stop.is_set():
                began = time.monotonic()
                try:
                    s = step(src, tgt, overlap=gap, force=force)
                except psycopg.OperationalError as exc:
                    raise MigrationError(f"follow step failed: {' '.join(str(exc).split())}; "
                                         "run 'tsj follow' again (a step is all or nothing)"
                                         ) from exc
                result.steps.append(s)
                if on_step is not None:
                    on_step(s)
                if max_steps is not None and len(result.steps) >= max_steps:
                    break
                if end is not None and time.monotonic() >= end:
                    break
                stop.wait(max(0.0, interval - (time.monotonic() - began)))
    except KeyboardInterrupt:
        log.info("follow: interrupted after %d step(s)", len(result.steps))
    return result
