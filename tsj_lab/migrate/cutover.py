"""Can the application's ``USE_TIMESCALEDB`` flag flip now? One readiness verdict.

:func:`readiness` asks, in order:

1. **lag**: each symbol's newest tick on the source against the target's (the follow
   mode keeps it within seconds);
2. **differing days**: the whole kept window compared by content (``migrate.verify``'s
   digests), with sample rows of the days that differ: which column, the source's value,
   the target's (:func:`tsj_lab.migrate.sync.differences`); the comparison is recorded,
   so the report also says when source and target were last found level as a whole;
3. **candles**: the candle views of the days the catch-up re-copied most recently equal a
   recompute from their ticks (a real-time aggregate shows a changed old day only once
   refreshed);
4. **shadow read**: the application's own questions (the AC8 windows 1m/5m/15m/1h, a day
   of 1m and 5m candles, a replay page of 2,000 ticks) asked of both databases up to the
   same instant and compared answer for answer: the source answers candles the way an
   application on Supabase must (bench.candles_raw_plain), the target from its views.

The verdict is ``go`` when the lag is within ``max_lag_s``, no day differs, the candles are
current and every shadow answer is equal; else ``no-go`` with each reason and its fix.
The switch itself and the way back are in docs/migration.md ("The switch").
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import psycopg

from .. import queries
from ..db import Endpoint, connect, scalar
from ..domain import CANDLE_BY_NAME, CANDLES
from ..provision import schema
from . import Window, verify
from .sync import (DIFF_COLUMNS, _kept, _whole, last_level, newest, record, require_pair,
                   sample_differences)

DEFAULT_MAX_LAG_S = 5.0
#: the AC8 windows the application loads (name -> length)
WINDOWS = {"1m": dt.timedelta(minutes=1), "5m": dt.timedelta(minutes=5),
           "15m": dt.timedelta(minutes=15), "1h": dt.timedelta(hours=1)}
#: the candle widths the shadow read asks for a day of
SHADOW_CANDLES = ("1m", "5m")
REPLAY_PAGE = 2000
#: the most recently re-copied symbol-days whose candles are checked
CANDLE_DAYS = 10
SHADOW_COLUMNS = ["question", "symbol", "start", "end", "source_rows", "target_rows", "equal",
                  "difference"]


@dataclass
class Readiness:
    """Everything the verdict rests on."""

    checked_at: dt.datetime
    lag: pd.DataFrame  # symbol, source_newest, target_newest, lag_s
    compared: pd.DataFrame  # migrate.verify's table over the kept window
    samples: pd.DataFrame  # sync.DIFF_COLUMNS for the first differing days
    last_level: dt.datetime | None  # the newest whole comparison that found them equal
    candles: pd.DataFrame  # symbol, day, view, differences
    shadow: pd.DataFrame  # SHADOW_COLUMNS
    max_lag_s: float
    reasons: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def go(self) -> bool:
        return not self.reasons

    @property
    def lag_s(self) -> float | None:
        return float(self.lag["lag_s"].max()) if len(self.lag) else None

    @property
    def differing(self) -> pd.DataFrame:
        c = self.compared
        return c[c["status"] != "ok"] if len(c) else c

    def verdict(self) -> str:
        """The one line: 'go: ...' or 'no-go: reason; reason'."""
        if self.go:
            return (f"go: lag {self.lag_s or 0:.1f} s <= {self.max_lag_s:g} s, "
                    f"{len(self.compared)} symbol-day(s) level, candles current, "
                    f"{len(self.shadow)} shadow reads equal")
        return "no-go: " + "; ".join(self.reasons)

    def summary(self) -> dict[str, Any]:
        return {"verdict": "go" if self.go else "no-go", "reasons": self.reasons,
                "lag_s": None if self.lag_s is None else round(self.lag_s, 3),
                "max_lag_s": self.max_lag_s, "days_compared": len(self.compared),
                "days_differing": len(self.differing),
                "last_level": self.last_level.isoformat() if self.last_level else None,
                "since_last_level_s": (round((self.checked_at - self.last_level).total_seconds())
                                       if self.last_level else None),
                "candle_days_checked": int(self.candles[["symbol", "day"]].drop_duplicates()
                                           .shape[0]) if len(self.candles) else 0,
                "shadow_reads": len(self.shadow),
                "shadow_equal": int(self.shadow["equal"].sum()) if len(self.shadow) else 0,
                "seconds": round(self.seconds, 3)}


def readiness(source: Endpoint | str, target: Endpoint | str, *, max_lag_s: float = DEFAULT_MAX_LAG_S,
              symbol: str | None = None, samples: int = 5) -> Readiness:
    """The readiness report for flipping from ``source`` to ``target``; see the module doc."""
    if not 0 <= max_lag_s <= 86_400:
        raise ValueError(f"max_lag_s={max_lag_s} is out of range; use 0-86400")
    t0 = time.perf_counter()
    started = dt.datetime.now(dt.UTC)
    facts = require_pair(source, target, force=True)  # a target ahead is reported, not refused
    lag = _lag(source, target)
    w = _kept(Window(), facts.kept_since)
    compared = verify(source, target, window=w)
    r = Readiness(started, lag, compared, pd.DataFrame(columns=DIFF_COLUMNS), None,
                  pd.DataFrame(), pd.DataFrame(columns=SHADOW_COLUMNS), max_lag_s)
    if len(r.differing) and samples:
        r.samples = sample_differences(source, target, r.differing, max_days=samples)
    record(target, "cutover", started=started, window=w, whole=_whole(w, facts),
           compared=len(compared), differing=len(r.differing), copied=0,
           rows_read=int(compared["rows_source"].sum()) if len(compared) else 0,
           rows_copied=0, seconds=time.perf_counter() - t0)
    r.last_level = last_level(target)
    r.candles = candles_current(target)
    r.shadow = shadow_read(source, target, symbol=symbol or _shadow_symbol(r))
    r.reasons = _reasons(r)
    r.seconds = time.perf_counter() - t0
    r.checked_at = dt.datetime.now(dt.UTC)  # after its own comparison was recorded
    return r


def _lag(source: Endpoint | str, target: Endpoint | str) -> pd.DataFrame:
    with connect(source, autocommit=True) as src, connect(target, autocommit=True) as tgt:
        want, have = newest(src), newest(tgt)
    rows = [{"symbol": s, "source_newest": want.get(s), "target_newest": have.get(s),
             "lag_s": ((want[s] - have[s]).total_seconds() if s in want and s in have
                       else float("inf") if s in want else 0.0)}
            for s in sorted(want.keys() | have.keys())]
    return pd.DataFrame(rows, columns=["symbol", "source_newest", "target_newest", "lag_s"])


def _shadow_symbol(r: Readiness) -> str | None:
    """The shadow read's symbol: that of the newest differing day (the application's
    questions should meet the difference, if they can), else the newest on the target."""
    bad = r.differing.dropna(subset=["day"])
    if len(bad):
        return str(bad.sort_values("day").iloc[-1]["symbol"])
    there = r.lag.dropna(subset=["target_newest"])
    return None if there.empty else str(there.sort_values("target_newest").iloc[-1]["symbol"])


def _reasons(r: Readiness) -> list[str]:
    out = []
    if r.lag_s is None:
        out.append("no ticks on either side")
    elif r.lag_s > r.max_lag_s:
        worst = r.lag.sort_values("lag_s").iloc[-1]
        out.append(f"lag {worst['lag_s']:.1f} s on {worst['symbol']} > {r.max_lag_s:g} s "
                   "(run 'tsj follow')")
    if len(r.differing):
        days = ", ".join(f"{d.symbol} {d.day}" for d in r.differing.head(3).itertuples())
        more = f" and {len(r.differing) - 3} more" if len(r.differing) > 3 else ""
        out.append(f"{len(r.differing)} symbol-day(s) differ ({days}{more}; run 'tsj sync')")
    stale = r.candles[r.candles["differences"] > 0] if len(r.candles) else r.candles
    if len(stale):
        first = stale.iloc[0]
        day = first["day"]
        out.append(f"{first['view']} of {first['symbol']} {day} differs from its ticks in "
                   f"{int(first['differences'])} row(s) (run 'tsj refresh --start "
                   f"{day}T00:00+00:00 --end {day + dt.timedelta(days=1)}T00:00+00:00')")
    unequal = r.shadow[~r.shadow["equal"]] if len(r.shadow) else r.shadow
    if len(unequal):
        out.append(f"{len(unequal)} shadow read(s) differ ({', '.join(unequal['question'])})")
    return out


def candles_current(target: Endpoint | str, *, days: int = CANDLE_DAYS) -> pd.DataFrame:
    """Per candle view, rows that differ from a recompute from the ticks, for the symbol-days
    the catch-up re-copied most recently (0 everywhere: their candles were refreshed)."""
    cols = ["symbol", "day", "view", "differences"]
    rows: list[dict[str, Any]] = []
    with connect(target, autocommit=True) as conn:
        if not schema.has_table(conn, "tsj_migration_batches"):
            return pd.DataFrame(columns=cols)
        synced = conn.execute(queries.text("sync.synced_days"), {"limit": days}).fetchall()
        views = {r[0] for r in conn.execute(queries.text("schema_catalog.candle_relations"),
                                            {"views": [c.view for c in CANDLES]})}
        for symbol, day, _ in synced:
            lo = dt.datetime.combine(day, dt.time(), dt.UTC)
            for c in CANDLES:
                if c.view not in views:
                    continue
                n = scalar(conn, queries.compose("sync.candle_diff_day", view=c.view),
                           {"symbol": symbol, "lo": lo, "hi": lo + dt.timedelta(days=1),
                            "width": c.width})
                rows.append({"symbol": symbol, "day": day, "view": c.view, "differences": int(n)})
    return pd.DataFrame(rows, columns=cols)


def shadow_read(source: Endpoint | str, target: Endpoint | str, *, symbol: str | None,
                windows: Sequence[str] = tuple(WINDOWS)) -> pd.DataFrame:
    """The application's questions asked of both databases up to the same instant (the
    older of the two newest ticks, down to the minute) and compared."""
    if symbol is None:
        return pd.DataFrame(columns=SHADOW_COLUMNS)
    rows = []
    with connect(source, autocommit=True) as src, connect(target, autocommit=True) as tgt:
        ends = [newest(src).get(symbol), newest(tgt).get(symbol)]
        if None in ends:
            return pd.DataFrame([_answer("ticks", symbol, None, None, [], [])], columns=SHADOW_COLUMNS)
        end = min(e for e in ends if e is not None).replace(second=0, microsecond=0)
        day = end.replace(hour=0, minute=0)
        for name in windows:  # AC8: the windows the chart and the replay load
            p = {"symbol": symbol, "start": end - WINDOWS[name], "end": end}
            rows.append(_answer(f"window {name}", symbol, end - WINDOWS[name], end,
                                _all(src, queries.text("bench.window"), p),
                                _all(tgt, queries.text("bench.window"), p)))
        for name in SHADOW_CANDLES:  # a day of candles, up to the last whole bucket
            c = CANDLE_BY_NAME[name]
            stop = day + (end - day) // c.width * c.width
            p = {"symbol": symbol, "start": day, "end": stop, "width": c.width}
            rows.append(_answer(f"candles {name}", symbol, day, stop,
                                _all(src, queries.text("bench.candles_raw_plain"), p),
                                _all(tgt, queries.compose("candles.view_range", view=c.view), p)))
        hour = end - dt.timedelta(hours=1)
        p = {"symbol": symbol, "start": hour, "end": end, "limit": REPLAY_PAGE}
        rows.append(_answer(f"replay page {REPLAY_PAGE}", symbol, hour, end,
                            _all(src, queries.text("bench.page_first"), p),
                            _all(tgt, queries.text("bench.page_first"), p)))
    return pd.DataFrame(rows, columns=SHADOW_COLUMNS)


def _all(conn: psycopg.Connection[Any], query: Any, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in conn.execute(query, params)]


def _answer(question: str, symbol: str, start: dt.datetime | None, end: dt.datetime | None,
            src: list[tuple[Any, ...]], tgt: list[tuple[Any, ...]]) -> dict[str, Any]:
    """One question's two answers: equal, or the first row where they part."""
    diff = ""
    if src != tgt:
        i = next((k for k, (a, b) in enumerate(zip(src, tgt)) if a != b), min(len(src), len(tgt)))
        a = src[i] if i < len(src) else "(none)"
        b = tgt[i] if i < len(tgt) else "(none)"
        diff = f"row {i + 1}: source {_show(a)} / target {_show(b)}"
    return {"question": question, "symbol": symbol, "start": start, "end": end,
            "source_rows": len(src), "target_rows": len(tgt), "equal": src == tgt,
            "difference": diff}


def _show(row: Any) -> str:
    if not isinstance(row, tuple):
        return str(row)
    return "(" + ", ".join(v.isoformat() if isinstance(v, dt.datetime) else str(v)
                           for v in row) + ")"
