"""AC6-AC8 and the performance goals, judged from the workload tables: one row each.

Status: ``ok``; ``warn`` when a goal (a figure, not an acceptance criterion) is missed,
when only p50 meets an AC8 target, or when AC6 was not measured at 50 clients; ``fail``
when an acceptance criterion is missed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from ..lab import recording
from . import TIMESCALE

#: issue 24: reads to a DataFrame against the server's planning + execution, client p50 /
#: server p50: a 1 h window, a day of 1m candles from the view, a day of one symbol
GOAL_FETCH_RATIO = 1.3
GOAL_CANDLE_RATIO = 1.2
GOAL_DAY_RATIO = 1.5
GOAL_DAY_TICKS_PER_S = 1_000_000.0
GOAL_CANDLE_SPEEDUP = 30.0  # a day of 1m candles, view vs raw aggregation
#: the fetch path the goals are judged on: read_frame's (tsj_lab.db.frames)
FETCH_PATH = "columns"
#: issue 24: extra round trips of a migration through a 300 ms link over direct, per run
GOAL_MIGRATION_ROUND_TRIPS = 10.0
GOAL_MIGRATION_FRACTION = 0.8  # its rows/s against direct
GOAL_LOAD_SPEEDUP = 1.5  # the bulk loader against psql \copy
GOAL_HISTORY_SPEEDUP = 3.0  # old days into compressed chunks against psql \copy + compression
GOAL_PEAK_RSS_MIB = 1024.0  # each process of a bench-large run
#: the load paths judged (bench.ingest's `load speedup_vs_psql`, each against its psql base)
LOAD_GOALS = {"tsj_copy": ("bulk load vs psql \\copy", GOAL_LOAD_SPEEDUP),
              "history_direct": ("history load (old days, compressed) vs psql \\copy + "
                                 "compression", GOAL_HISTORY_SPEEDUP)}
#: fetch paths an analyst takes without tsj's fast path, shown beside the goal's figure
ANALYST_PATHS = {"pandas_sqlalchemy": "pandas.read_sql", "jupysql": "%%sql"}


COLUMNS = ["check", "target", "measured", "status", "detail", "ratio"]
#: how far a ratio may move between two runs and still count as the same verdict
TOLERANCE = 0.15


def judge(*, windows: pd.DataFrame | None = None, paths: pd.DataFrame | None = None,
          candle: pd.DataFrame | None = None, play: pd.DataFrame | None = None,
          clients: pd.DataFrame | None = None, db: str = TIMESCALE,
          records: Sequence[Mapping[str, Any]] = ()) -> pd.DataFrame:
    """AC6-AC8 and the performance goals, judged on ``db``'s figures: one row each; then
    the goals judged from the run's ``records`` (:func:`speed`)."""
    rows: list[dict[str, Any]] = []
    if windows is not None:
        for rec in windows[(windows["db"] == db) & windows["target_ms"].notna()].to_dict("records"):
            # p95 must meet the target; p50 meeting it alone is a warning.
            status = ("ok" if rec["p95_ms"] < rec["target_ms"]
                      else "warn" if rec["p50_ms"] < rec["target_ms"] else "fail")
            rows.append(_verdict(f"AC8 window {rec['window']}", f"< {rec['target_ms']:g} ms",
                                 rec["p95_ms"], status, f"p50 {rec['p50_ms']:.1f} ms, "
                                 f"p95 {rec['p95_ms']:.1f} ms, n={rec['n']}"))
        day = windows[(windows["db"] == db) & (windows["window"] == "1d")].to_dict("records")
        for rec in day:
            # A typical read: ticks over the median latency (rows_per_s averages the samples).
            rate = rec["rows"] / (rec["p50_ms"] / 1000.0)
            rows.append(_verdict("goal: day read", f">= {GOAL_DAY_TICKS_PER_S:,.0f} ticks/s", rate,
                                 _ok(rate >= GOAL_DAY_TICKS_PER_S),
                                 f"{rec['rows']:,.0f} ticks, p50 {rec['p50_ms']:.0f} ms "
                                 f"({rate:,.0f}/s), p95 {rec['p95_ms']:.0f} ms"))
            rows.extend(_to_frame("goal: day read to DataFrame", rec, GOAL_DAY_RATIO))
    if clients is not None:
        rows.extend(_clients_verdicts(clients[clients["db"] == db]))
    if play is not None:
        rows.extend(_replay_verdicts(play[play["db"] == db]))
    if paths is not None:
        mine = paths[paths["db"] == db].set_index("path")
        # the paths an analyst would otherwise take, for comparison (not judged)
        others = ", ".join(f"{label} {mine.loc[path, 'ratio']:.2f}x"
                           for path, label in ANALYST_PATHS.items() if path in mine.index)
        for rec in paths[(paths["db"] == db) & (paths["path"] == FETCH_PATH)].to_dict("records"):
            rows.extend(_to_frame("goal: 1h window to DataFrame", rec, GOAL_FETCH_RATIO,
                                  also=f"; analyst paths: {others}" if others else ""))
    if candle is not None:
        one = candle[(candle["db"] == db) & (candle["width"] == "1m")].set_index("source")
        if "view" in one.index:
            rows.extend(_to_frame("goal: day of 1m candles to DataFrame",
                                  one.loc["view"].to_dict(), GOAL_CANDLE_RATIO))
        if {"view", "raw"} <= set(one.index):
            speedup = one.loc["raw", "p50_ms"] / one.loc["view", "p50_ms"]
            rows.append(_goal("goal: 1m candle view vs raw", speedup, GOAL_CANDLE_SPEEDUP,
                              higher=True, unit="x", ratio=True,
                              detail=f"view p50 {one.loc['view', 'p50_ms']:.1f} ms, raw p50 "
                                     f"{one.loc['raw', 'p50_ms']:.1f} ms, n = "
                                     f"{one.loc['view', 'n']:.0f} each, in turns"))
    return pd.DataFrame(rows + speed(records).to_dict("records"), columns=COLUMNS)


def _to_frame(check: str, rec: Mapping[str, Any], goal: float, *,
              also: str = "") -> list[dict[str, Any]]:
    """A read's client p50 against the server's (planning + execution) p50 of the same
    reads, timed in turns; no row when the server time was not measured."""
    server = rec.get("server_p50_ms")
    if server is None or pd.isna(server) or not server:
        return []
    plan = rec.get("server_plan_p50_ms")
    planning = f" (planning {plan:.2f})" if plan is not None and not pd.isna(plan) else ""
    return [_goal(check, rec["p50_ms"] / server, goal, higher=False, unit="x server",
                  ratio=True,
                  detail=f"client p50 {rec['p50_ms']:.2f} ms, server p50 {server:.2f} ms"
                         f"{planning}, n = {rec['n']:.0f}{also}")]


def speed(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Issue 24's goals where users wait, judged from the run's recorded metrics (by name:
    the sections that measure them record them; a goal not measured in the run has no row).
    Each missed goal's detail says by how much."""
    metrics = [r for r in records if r.get("kind", "metric") == "metric" and "value" in r]
    rows: list[dict[str, Any]] = []
    for m in _each(metrics, "migration extra round trips"):
        if m["params"].get("rtt_ms") == _largest(metrics, "migration extra round trips", "rtt_ms"):
            p = m["params"]
            rows.append(_goal(f"goal: migration at {p['rtt_ms']:g} ms, extra round trips "
                              f"({p.get('rows', 0):,.0f} rows)", m["value"],
                              GOAL_MIGRATION_ROUND_TRIPS, higher=False, unit=" round trips",
                              detail=f"{p.get('batches', '?')} batches, n = {m.get('n')} run"))
    for m in _each(metrics, "migration fraction of direct"):
        p = m["params"]
        # the goal is the long history's (a day's copy lasts a few round trips in all)
        if (p.get("rtt_ms") == _largest(metrics, "migration fraction of direct", "rtt_ms")
                and p.get("rows") == _largest(metrics, "migration fraction of direct", "rows")):
            rows.append(_goal(f"goal: migration at {p['rtt_ms']:g} ms vs direct rows/s "
                              f"({p.get('rows', 0):,.0f} rows)", m["value"],
                              GOAL_MIGRATION_FRACTION, higher=True, unit="x", ratio=True,
                              detail=f"n = {m.get('n')} run each"))
    for m in _each(metrics, "load speedup_vs_psql"):
        p = m["params"]
        if p.get("path") not in LOAD_GOALS:
            continue
        what, goal = LOAD_GOALS[p["path"]]
        rows.append(_goal(f"goal: {what}", m["value"], goal, higher=True, unit="x", ratio=True,
                          detail=f"{p.get('path')} against {p.get('base', 'psql_copy')}, "
                                 f"{p.get('rows', 0):,.0f} rows, n = {m.get('n')} each, in turns"))
    peaks = [m for m in _each(metrics, "peak RSS")]
    if peaks:
        worst = max(peaks, key=lambda m: m["value"])
        private = _each(metrics, "peak private memory")
        own = max(private, key=lambda m: m["value"]) if private else None
        # a server process's resident set counts the shared buffers it touched
        also = (f"; by private memory the largest is {own['params'].get('process')} "
                f"{own['value']:,.0f} MiB" if own else "")
        rows.append(_goal("goal: peak RSS of each process", worst["value"], GOAL_PEAK_RSS_MIB,
                          higher=False, unit=" MiB", strict=True,
                          detail=f"largest {worst['params'].get('process')} of "
                                 f"{len(peaks)} roles, n = {worst.get('n')} samples{also}"))
    return pd.DataFrame(rows, columns=COLUMNS)


def _each(metrics: Sequence[Mapping[str, Any]], name: str) -> list[Mapping[str, Any]]:
    return [m for m in metrics if m.get("name") == name and m.get("value") is not None]


def _largest(metrics: Sequence[Mapping[str, Any]], name: str, param: str) -> Any:
    values = [m["params"].get(param) for m in _each(metrics, name)]
    values = [v for v in values if v is not None]
    return max(values) if values else None


def _goal(check: str, measured: float, goal: float, *, higher: bool, unit: str, detail: str,
          ratio: bool = False, strict: bool = False) -> dict[str, Any]:
    """A goal's row: ok when met, else warn with how far it is missed."""
    if higher:
        met = measured > goal if strict else measured >= goal
        target = f"{'>' if strict else '>='} {goal:,.4g}{unit}"
    else:
        met = measured < goal if strict else measured <= goal
        target = f"{'<' if strict else '<='} {goal:,.4g}{unit}"
    shown = f"{measured:,.3g}{unit}"
    if not met and goal:
        gap = (goal / measured - 1 if higher else measured / goal - 1) if measured else float("inf")
        shown += f", missed by {gap:.0%}"
    return _verdict(check, target, measured, _ok(met), f"{shown}; {detail}", ratio=ratio)


def _clients_verdicts(clients: pd.DataFrame) -> list[dict[str, Any]]:
    """AC6 at 50 clients (else the most measured), direct and through each pooler."""
    rows = []
    via_col = clients["via"] if "via" in clients else pd.Series("direct", index=clients.index)
    for via, grp in clients.groupby(via_col, sort=False):
        at = grp[grp["clients"] == 50] if (grp["clients"] == 50).any() else grp
        rec = at.sort_values("clients").tail(1).to_dict("records")[0]
        ok = rec["errors"] == 0 and rec["peak_connections"] >= 50
        # Fewer than 50 clients measured (a quick run) is no verdict either way.
        status = "ok" if ok else "fail" if rec["clients"] >= 50 else "warn"
        servers = rec.get("server_connections")
        detail = (f"{rec['clients']} clients, {rec['peak_connections']} connected at once, "
                  + (f"{servers:.0f} server connections, " if pd.notna(servers) else "")
                  + f"{rec['errors']} errors, {rec['qps']:.0f} q/s, p95 {rec['p95_ms']:.1f} ms")
        cause = rec.get("cause")
        if isinstance(cause, str) and cause:
            detail += f"; first failure: {cause}"
        name = "AC6 50 concurrent connections" + ("" if via == "direct" else f" via {via}")
        rows.append(_verdict(name, "50 clients, 0 errors", rec["peak_connections"], status,
                             detail))
    return rows


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
                             f"{best['fps']:.2f} fps, {best['dropped']} dropped"))
    return rows


def _verdict(check: str, target: str, measured: float, status: str, detail: str, *,
             ratio: bool = False) -> dict[str, Any]:
    """One row; ``ratio`` marks a figure that is a ratio of two measured in the same run
    (what :func:`compare` holds to a tolerance between runs)."""
    return {"check": check, "target": target, "measured": float(measured), "status": status,
            "detail": detail, "ratio": ratio}


def _ok(good: bool) -> str:
    return "ok" if good else "warn"


def record(table: pd.DataFrame) -> None:
    """Each verdict as a report check (ok / warn / fail)."""
    for rec in table.to_dict("records"):
        recording.record_check(rec["check"], rec["status"], detail=f"{rec['target']}: {rec['detail']}")


def compare(first: Mapping[str, Any], second: Mapping[str, Any], *,
            tolerance: float = TOLERANCE) -> pd.DataFrame:
    """The verdicts of two benchmark reports (their JSON summaries) side by side.

    A verdict ``holds`` when its status is the same in both and, for a ratio, the second
    run's figure is within ``tolerance`` of the first's. A check in one report only is
    listed with ``holds`` False.
    """
    a, b = _verdict_table(first), _verdict_table(second)
    both = a.merge(b, on="check", how="outer", suffixes=("_1", "_2"), sort=False)
    both["change"] = both["measured_2"] / both["measured_1"]
    is_ratio = both["ratio_1"].fillna(False).astype(bool) | both["ratio_2"].fillna(False).astype(bool)
    drift = (both["change"] - 1).abs()
    both["holds"] = ((both["status_1"] == both["status_2"])
                     & (~is_ratio | (drift <= tolerance))).astype(bool)
    return both[["check", "target_1", "measured_1", "measured_2", "change", "status_1",
                 "status_2", "holds"]].rename(columns={"target_1": "target"})


def _verdict_table(summary: Mapping[str, Any]) -> pd.DataFrame:
    found = [t for t in summary.get("tables", []) if t.get("name") == "verdicts"]
    if not found:
        raise ValueError(f"report {summary.get('name', '?')} started "
                         f"{summary.get('started_at', '?')} has no verdicts table; compare "
                         "two reports of notebook 04_benchmark")
    df = pd.DataFrame(found[0]["rows"], columns=found[0]["columns"])
    if "ratio" not in df:
        df["ratio"] = False
    return df[COLUMNS[:-2] + ["ratio"]].drop_duplicates("check")
