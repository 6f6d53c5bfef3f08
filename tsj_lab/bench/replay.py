"""The replay player, simulated on a virtual clock fed by measured fetch latencies.

A player draws ``fps`` frames a second; at ``speed`` x each frame advances the market
clock by ``speed / fps`` seconds and needs every tick up to that instant. A client buffer
feeds it: one connection fetches pages of ``batch_ticks`` with keyset pagination, one at a
time (each page starts after the last one's final tick), and keeps fetching while fewer
than ``prefetch_ticks`` ticks are buffered ahead of the play head. Playback starts once
the first ``prefetch_ticks`` are in (at least one page). ``prefetch_ticks=0`` is the
on-demand client: it asks for the next page only when the buffer is empty.

A frame whose ticks have not arrived is dropped: the play head keeps wall-clock time (as
a video player does) and the frame is not drawn. An underrun is a run of consecutive
dropped frames, counted once when the buffer first runs dry. So ``shown + dropped ==
frames == round(duration_s * fps)`` always.

Simulating on a virtual clock lets one real set of latency samples per (database, RTT,
batch size) answer every speed and prefetch depth in milliseconds, instead of minutes of
real-time playback per point; the samples come from real fetches (see
:func:`fetch_latencies`).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from .. import queries
from ..lab import recording
from . import Database, Dataset, point, time_calls, window_params
from ..db import Endpoint, as_endpoint, connection, url_text
from ..server.proxy import LatencyProxy

log = logging.getLogger("tsj_lab")


@dataclass(frozen=True)
class ReplayOutcome:
    """What one simulated playback achieved."""

    frames: int
    shown: int
    dropped: int
    underruns: int
    fps: float  # frames shown per second of playback
    ticks_played: int
    ticks_per_s: float  # ticks consumed per second of playback
    fetches: int
    startup_ms: float  # wall time to fill the first prefetch, before frame 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def simulate(
    latencies_ms: Sequence[float],
    *,
    speed: float,
    batch_ticks: int,
    prefetch_ticks: int,
    fps: float = 60.0,
    duration_s: float = 10.0,
    tick_interval_ms: float = 250.0,
    seed: int = 0,
) -> ReplayOutcome:
    """Play ``duration_s`` seconds at ``speed`` x; each fetch takes a drawn latency sample."""
    _check(latencies_ms, speed=speed, batch_ticks=batch_ticks, fps=fps, duration_s=duration_s,
           tick_interval_ms=tick_interval_ms)
    if prefetch_ticks < 0:
        raise ValueError(f"replay prefetch_ticks={prefetch_ticks} is negative; use 0 (on demand) or more")
    rng = random.Random(seed)
    draw = lambda: rng.choice(latencies_ms) / 1000.0
    frames = round(duration_s * fps)
    ticks_per_frame = speed * 1000.0 / fps / tick_interval_ms

    # Start-up: fill the first prefetch with back-to-back fetches.
    clock, buffered, fetches = 0.0, 0, 0
    while buffered < max(prefetch_ticks, 1):
        clock += draw()
        buffered += batch_ticks
        fetches += 1
    startup = clock

    shown = dropped = underruns = 0
    need, done_at, starving = 0, math.inf, False
    for k in range(frames):
        now = startup + k / fps
        need = math.floor((k + 1) * ticks_per_frame)  # ticks due by this frame
        # Deliver every fetch finished by now; the next one leaves when the last lands,
        # while the buffer holds fewer than prefetch_ticks beyond the play head (on
        # demand: once it is empty).
        while True:
            if done_at <= now:
                buffered += batch_ticks
                leave, done_at = done_at, math.inf
            else:
                leave = now
            if done_at == math.inf and buffered - need < max(prefetch_ticks, 1):
                done_at = leave + draw()
                fetches += 1
                continue
            break
        if buffered >= need:
            shown += 1
            starving = False
        else:
            dropped += 1
            underruns += not starving
            starving = True
    played = min(need, buffered)
    return ReplayOutcome(frames, shown, dropped, underruns, shown / duration_s, played,
                         played / duration_s, fetches, startup * 1000.0)


def prefetch_needed(
    latencies_ms: Sequence[float],
    *,
    speed: float,
    batch_ticks: int,
    fps: float = 60.0,
    duration_s: float = 10.0,
    tick_interval_ms: float = 250.0,
    seed: int = 0,
) -> int:
    """The smallest prefetch (ticks ahead of the play head) that drops no frame.

    Buffering the whole playback up front always works, so there is always an answer;
    when one connection's pages cannot keep up with the speed it grows with the length
    of the playback (see ``sustainable`` in :func:`playback`).
    """
    total = math.ceil(round(duration_s * fps) * speed * 1000.0 / fps / tick_interval_ms)

    def clean(prefetch: int) -> bool:
        out = simulate(latencies_ms, speed=speed, batch_ticks=batch_ticks,
                       prefetch_ticks=prefetch, fps=fps, duration_s=duration_s,
                       tick_interval_ms=tick_interval_ms, seed=seed)
        return out.dropped == 0

    if clean(0):
        return 0
    # Doubling to a clean depth, then bisection between the last unclean and clean ones.
    lo, hi = 0, 1
    while not clean(hi):
        lo, hi = hi, min(hi * 2, max(total, hi + 1))
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if clean(mid) else (mid, hi)
    return hi


def _check(latencies_ms: Sequence[float], **values: float) -> None:
    if not latencies_ms:
        raise ValueError("replay needs at least one latency sample; measure fetches first")
    if min(latencies_ms) < 0:
        raise ValueError(f"latency sample {min(latencies_ms)} ms is negative")
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"replay {name}={value} must be positive")


# -- measured fetch latencies and the playback table -----------------------------------


def fetch_latencies(dbs: Sequence[Database], dataset: Dataset, *,
                    rtts: Sequence[float | None] = (None, 0, 50, 150, 300),
                    batch_sizes: Sequence[int] = (500, 2000), samples: int = 10,
                    warmup: int = 2, seed: int = 0) -> pd.DataFrame:
    """Real keyset page fetches, direct (``rtt_ms`` None) and through the latency proxy.

    The client is psycopg on one kept connection, as a replay client would hold one, with
    no server-side prepared statements: every fetch is exactly one round trip (ADBC, the
    notebooks' path, needs three; see docs/benchmarks.md). ``connect_ms`` is the one-off
    connection set-up through the proxy.
    """
    rows = []
    for rtt in rtts:
        for db in dbs:
            with maybe_proxy(db.url, rtt) as url:
                t0 = time.perf_counter()
                with connection(url, autocommit=True) as conn:
                    connect_ms = (time.perf_counter() - t0) * 1000.0
                    # psycopg prepares a query on its 5th run, at the cost of one more
                    # round trip then; behind a proxy that showed as a 2-RTT sample.
                    conn.prepare_threshold = None
                    for size in batch_sizes:
                        latencies, frames = _time_pages(conn, dataset, size=size, samples=samples,
                                                        warmup=warmup, seed=f"{seed}-{size}")
                        rows.append(point("replay_fetch", db.label, latencies, rows=frames,
                                          rtt_ms=rtt, via="direct" if rtt is None else "proxy",
                                          batch=size) | {"connect_ms": connect_ms})
            log.info("replay fetches at RTT %s ms measured", rtt)
    return pd.DataFrame(rows)


@contextmanager
def maybe_proxy(url: Endpoint | str, rtt: float | None) -> Iterator[Endpoint | str]:
    """``url`` itself (``rtt`` None), or the same server through a :class:`LatencyProxy`
    adding ``rtt`` ms to every round trip."""
    if rtt is None:
        yield url
        return
    with LatencyProxy.for_url(url_text(url), rtt_ms=rtt) as proxy:
        yield as_endpoint(url).through(proxy.url(url_text(url)))


def _time_pages(conn: Any, dataset: Dataset, *, size: int, samples: int, warmup: int,
                seed: str) -> tuple[list[float], list[int]]:
    """Consecutive keyset pages on ``conn``: each page starts after the last one's end."""
    seconds = min((samples + warmup + 1) * size * dataset.interval_ms / 1000.0,
                  dataset.days * 86400)
    (p,) = window_params(dataset, seconds, samples=1, rng=random.Random(seed))
    base = {"symbol": p["symbol"], "start": p["start"], "end": dataset.end, "limit": size}
    cursor: dict[str, Any] = {}

    def fetch() -> int:
        if cursor:
            page = conn.execute(queries.text("bench.page_after"), base | cursor).fetchall()
        else:
            page = conn.execute(queries.text("bench.page_first"), base).fetchall()
        if page:
            cursor.update(after_time=page[-1][0])
        return len(page)

    return time_calls([fetch] * samples, warmup=warmup)


def playback(latencies: pd.DataFrame, *, speeds: Sequence[float] = (1, 10, 100, 1000),
             prefetch_ticks: int = 0, fps: float = 60.0, duration_s: float = 30.0,
             max_duration_s: float = 600.0, tick_interval_ms: float = 250.0,
             seed: int = 0) -> pd.DataFrame:
    """Every measured (db, RTT, batch) at every speed: what a client gets, what it needs.

    The simulated client prefetches ``prefetch_ticks`` (0: on demand, the story's
    benchmark client) for ``duration_s`` of playback, or longer (up to ``max_duration_s``)
    so that at least three pages are played. ``prefetch_needed_ticks`` is the smallest
    lead with no dropped frame, ``prefetch_needed_s`` the seconds of playback it covers;
    ``sustainable`` says whether one connection's fetch rate (batch / mean latency) keeps
    up with the speed at all (if not, the needed buffer grows with the playback's length).
    """
    rows = []
    for rec in latencies.to_dict("records"):
        batch, samples = int(rec["batch"]), list(rec["samples_ms"])
        mean_s = sum(samples) / len(samples) / 1000.0
        fetch_rate = batch / mean_s if mean_s > 0 else math.inf
        for speed in speeds:
            ticks_per_s = speed * 1000.0 / tick_interval_ms
            # Long enough to use up three pages (capped), so the buffer is refilled while
            # playing: with a shorter run the first page alone could cover it.
            duration = min(max(duration_s, 3 * batch / ticks_per_s), max_duration_s)
            args: dict[str, Any] = {"speed": speed, "batch_ticks": batch, "fps": fps,
                                    "duration_s": duration,
                    "tick_interval_ms": tick_interval_ms, "seed": seed}
            out = simulate(samples, prefetch_ticks=prefetch_ticks, **args)
            need = prefetch_needed(samples, **args)
            rows.append({
                "workload": "replay", "db": rec["db"], "rtt_ms": rec["rtt_ms"], "via": rec["via"],
                "batch": batch, "speed": speed, "prefetch_ticks": prefetch_ticks,
                "duration_s": duration, **out.as_dict(), "fetch_p50_ms": rec["p50_ms"],
                "needed_ticks_per_s": ticks_per_s, "fetch_ticks_per_s": fetch_rate,
                "sustainable": bool(fetch_rate >= ticks_per_s),
                "prefetch_needed_ticks": need, "prefetch_needed_s": need / ticks_per_s,
            })
    return pd.DataFrame(rows)


def record_playback(play: pd.DataFrame) -> int:
    """Each playback row as report metrics: fps reached, dropped frames, prefetch needed."""
    for rec in play.to_dict("records"):
        scope = {"db": rec["db"], "rtt_ms": rec["rtt_ms"], "via": rec["via"],
                 "batch": rec["batch"], "speed": rec["speed"], "prefetch_ticks": rec["prefetch_ticks"]}
        scope = {k: v for k, v in scope.items() if v is not None and v == v}  # drop NaN
        recording.record_metric("replay fps", rec["fps"], unit="fps", n=rec["frames"], **scope)
        recording.record_metric("replay dropped frames", rec["dropped"], unit="frames",
                                n=rec["frames"], underruns=rec["underruns"], **scope)
        if rec["sustainable"]:  # otherwise it only measures the playback's length
            recording.record_metric("replay prefetch needed", rec["prefetch_needed_s"], unit="s",
                                    n=rec["frames"], ticks=rec["prefetch_needed_ticks"], **scope)
    return len(play)
