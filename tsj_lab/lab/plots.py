"""The plotly figures the notebooks and the report index show.

Figures only: data comes in as DataFrames or plain records, already read and computed
by the phase modules. Each phase appends its own section.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from . import tables

#: how a time reads on every time axis and in every hover: ISO, and in UTC
TIME_HOVER = "%Y-%m-%d %H:%M:%S UTC"


# -- reports -------------------------------------------------------------------------------


def trend(points: Iterable[Mapping[str, Any]], *, title: str) -> go.Figure:
    """One line per series over runs: points carry ``at`` (ISO time), ``series``, ``value``, ``n``."""
    by_series: dict[str, list[Mapping[str, Any]]] = {}
    for p in sorted(points, key=lambda p: str(p.get("at"))):
        by_series.setdefault(str(p.get("series", "value")), []).append(p)
    fig = go.Figure()
    for name, pts in by_series.items():
        fig.add_trace(go.Scatter(
            x=[p.get("at") for p in pts], y=[p.get("value") for p in pts], name=name,
            mode="lines+markers", customdata=[p.get("n") for p in pts],
            hovertemplate="%{x}<br>%{y:,.4~g}<br>n=%{customdata}<extra>" + name + "</extra>"))
    fig.update_layout(title=title, margin={"l": 50, "r": 20, "t": 50, "b": 40},
                      xaxis={"title": "run started (UTC)", "hoverformat": TIME_HOVER},
                      showlegend=len(by_series) > 1, template="plotly_white")
    return fig


# -- provisioning --------------------------------------------------------------------------


def chunk_sizes(layout: pd.DataFrame, *, title: str = "tick_data chunks") -> go.Figure:
    """One bar per chunk (from ``schema.chunk_layout``): its time range, its size in MiB."""
    starts, ends = layout["range_start"], layout["range_end"]
    fig = go.Figure(go.Bar(
        x=starts + (ends - starts) / 2, y=layout["total_bytes"].fillna(0) / 2**20,
        width=[(e - s).total_seconds() * 1000 * 0.9 for s, e in zip(starts, ends)],
        customdata=list(zip(layout["chunk_name"], layout["is_compressed"])),
        hovertemplate="%{customdata[0]}<br>%{y:.2f} MiB<br>compressed: %{customdata[1]}"
                      "<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="chunk time range (UTC)", yaxis_title="MiB",
                      margin={"l": 50, "r": 20, "t": 50, "b": 40}, template="plotly_white")
    return fig


# -- benchmarks ----------------------------------------------------------------------------

_DB_COLORS = {"postgresql": "#636efa", "timescaledb": "#00a36c"}
_LAYOUT = {"margin": {"l": 60, "r": 20, "t": 50, "b": 50}, "template": "plotly_white"}


def window_latency(windows: pd.DataFrame, *, title: str = "Window fetch latency") -> go.Figure:
    """p50 bars per window and database, whiskers to p95, the story's targets as markers."""
    fig = go.Figure()
    for db, grp in windows.groupby("db", sort=False):
        fig.add_trace(go.Bar(
            x=grp["window"], y=grp["p50_ms"], name=f"{db} p50", marker_color=_DB_COLORS.get(db),
            error_y={"type": "data", "symmetric": False, "array": grp["p95_ms"] - grp["p50_ms"],
                     "arrayminus": [0] * len(grp)},
            customdata=list(zip(grp["p95_ms"], grp["server_p50_ms"], grp["n"])),
            hovertemplate="%{x}: p50 %{y:.1f} ms, p95 %{customdata[0]:.1f} ms<br>"
                          "server p50 %{customdata[1]:.1f} ms, n=%{customdata[2]}<extra></extra>"))
    targets = windows.dropna(subset=["target_ms"]).drop_duplicates("window")
    fig.add_trace(go.Scatter(x=targets["window"], y=targets["target_ms"], mode="markers",
                             name="story target", marker={"symbol": "line-ew-open", "size": 40,
                                                          "line": {"width": 3, "color": "red"}}))
    fig.update_layout(title=title, barmode="group", yaxis_type="log", yaxis_title="ms (log)",
                      xaxis_title="window", **_LAYOUT)
    return fig


def latency_cdf(results: pd.DataFrame, *, by: str, title: str) -> go.Figure:
    """The empirical CDF of every result row's timed samples, one line per (db, ``by``)."""
    fig = go.Figure()
    for rec in results.to_dict("records"):
        xs = sorted(rec["samples_ms"])
        ys = [(i + 1) / len(xs) for i in range(len(xs))]
        dash = "solid" if rec["db"] == "timescaledb" else "dot"
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line={"shape": "hv", "dash": dash},
                                 name=f"{rec['db']} {rec[by]}"))
    fig.update_layout(title=title, xaxis_type="log", xaxis_title="latency ms (log)",
                      yaxis_title="fraction of samples", **_LAYOUT)
    return fig


def speedup(results: pd.DataFrame, *, by: str, title: str) -> go.Figure:
    """Plain PostgreSQL p50 / TimescaleDB p50 per ``by``: above 1, the hypertable is faster."""
    p50 = results.pivot_table(index=by, columns="db", values="p50_ms", sort=False)
    ratio = p50["postgresql"] / p50["timescaledb"]
    fig = go.Figure(go.Bar(x=[str(i) for i in ratio.index], y=ratio, marker_color="#00a36c",
                           hovertemplate="%{x}: %{y:.2f}x<extra></extra>"))
    fig.add_hline(y=1, line_dash="dash", line_color="grey")
    fig.update_layout(title=title, yaxis_title="plain p50 / hypertable p50", xaxis_title=by,
                      **_LAYOUT)
    return fig


def batch_throughput(batches: pd.DataFrame, *, title: str = "Keyset batches") -> go.Figure:
    """Ticks per second against page size, one line per database, p50 latency on hover."""
    fig = go.Figure()
    for db, grp in batches.groupby("db", sort=False):
        fig.add_trace(go.Scatter(x=grp["batch"], y=grp["rows_per_s"], name=db,
                                 mode="lines+markers", line_color=_DB_COLORS.get(db),
                                 customdata=grp["p50_ms"],
                                 hovertemplate="%{x} ticks/page: %{y:,.0f} ticks/s, "
                                               "p50 %{customdata:.1f} ms<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="ticks per page", yaxis_title="ticks/s",
                      xaxis_type="log", **_LAYOUT)
    return fig


def candle_latency(candles: pd.DataFrame, *, title: str = "A day of candles") -> go.Figure:
    """p50 per width: views and raw aggregation on each database (log scale)."""
    fig = go.Figure()
    for (db, source), grp in candles.groupby(["db", "source"], sort=False):
        fig.add_trace(go.Bar(x=grp["width"], y=grp["p50_ms"], name=f"{db} {source}",
                             hovertemplate="%{x}: %{y:.1f} ms<extra></extra>"))
    fig.update_layout(title=title, barmode="group", yaxis_type="log", yaxis_title="p50 ms (log)",
                      xaxis_title="candle width", **_LAYOUT)
    return fig


def replay_fps(play: pd.DataFrame, *,
               title: str = "Replay fps without prefetch (best page size)") -> go.Figure:
    """fps the on-demand client reaches against round trip time, one line per speed."""
    best = play.assign(rtt=play["rtt_ms"].fillna(-1)).groupby(["speed", "rtt"], as_index=False)["fps"].max()
    fig = go.Figure()
    for speed, grp in best.groupby("speed"):
        fig.add_trace(go.Scatter(x=[_rtt_label(r) for r in grp["rtt"]], y=grp["fps"],
                                 mode="lines+markers", name=f"{speed:g}x"))
    fig.add_hline(y=60, line_dash="dash", line_color="red")
    fig.update_layout(title=title, xaxis_title="round trip", yaxis_title="fps reached",
                      yaxis_range=[0, 65], **_LAYOUT)
    return fig


def prefetch_needed(play: pd.DataFrame, *, title: str = "Prefetch needed for 60 fps") -> go.Figure:
    """Smallest buffer (seconds of playback) with no dropped frame, per RTT and speed."""
    ok = play.dropna(subset=["prefetch_needed_s"])
    ok = ok[ok["sustainable"]].assign(rtt=lambda d: d["rtt_ms"].fillna(-1))
    best = ok.sort_values("prefetch_needed_s").groupby(["speed", "rtt"], as_index=False).first()
    fig = go.Figure()
    for speed, grp in best.groupby("speed"):
        grp = grp.sort_values("rtt")
        fig.add_trace(go.Scatter(
            x=[_rtt_label(r) for r in grp["rtt"]], y=grp["prefetch_needed_s"], name=f"{speed:g}x",
            mode="lines+markers", customdata=list(zip(grp["prefetch_needed_ticks"], grp["batch"])),
            hovertemplate="%{x}: %{y:.3f} s = %{customdata[0]:.0f} ticks in pages of "
                          "%{customdata[1]}<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="round trip", yaxis_title="seconds of playback buffered",
                      **_LAYOUT)
    return fig


def concurrency_curve(clients: pd.DataFrame, *, title: str = "Concurrent clients") -> go.Figure:
    """Queries per second (bars) and p50/p95 latency (lines) against the number of clients."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    via = clients["via"] if "via" in clients else pd.Series("direct", index=clients.index)
    for (db, how), grp in clients.groupby([clients["db"], via], sort=False):
        color = _DB_COLORS.get(db)
        name = db if how == "direct" else f"{db} via {how}"
        marker = "circle" if how == "direct" else "diamond"
        fig.add_trace(go.Scatter(x=grp["clients"], y=grp["qps"], name=f"{name} q/s",
                                 mode="lines+markers", line_color=color,
                                 marker_symbol=marker), secondary_y=False)
        for col, dash in (("p50_ms", "dot"), ("p95_ms", "dash")):
            fig.add_trace(go.Scatter(x=grp["clients"], y=grp[col], name=f"{name} {col[:3]}",
                                     mode="lines+markers" if how != "direct" else "lines",
                                     marker_symbol=marker,
                                     line={"color": color, "dash": dash}), secondary_y=True)
    fig.update_xaxes(type="log")  # 1 to 200 clients
    fig.update_xaxes(title_text="clients")
    fig.update_yaxes(title_text="queries/s", secondary_y=False)
    fig.update_yaxes(title_text="latency ms", secondary_y=True, rangemode="tozero")
    fig.update_layout(title=title, **_LAYOUT)
    return fig


def latency_vs_size(sized: pd.DataFrame, *, title: str = "Latency against table size") -> go.Figure:
    """p50 per window against the table's size in MiB, one line per (db, window)."""
    fig = go.Figure()
    for (db, window), grp in sized.groupby(["db", "window"], sort=False):
        fig.add_trace(go.Scatter(x=grp["table_bytes"] / 2**20, y=grp["p50_ms"], name=f"{db} {window}",
                                 mode="lines+markers",
                                 line={"dash": "solid" if db == "timescaledb" else "dot"}))
    fig.update_layout(title=title, xaxis_title="tick_data MiB", yaxis_title="p50 ms",
                      yaxis_type="log", **_LAYOUT)
    return fig


def migration_by_rtt(runs: pd.DataFrame, *, title: str = "Migration by round trip") -> go.Figure:
    """Rows/s of each size against the round trip (source and target both behind it),
    direct as a dashed line per size, from ``bench.migration.measure``."""
    fig = go.Figure()
    for size, group in runs.groupby("size", sort=False):
        proxied = group[group["via"] == "proxy"].sort_values("rtt_ms")
        fig.add_trace(go.Scatter(
            x=proxied["rtt_ms"], y=proxied["rows_per_s"], name=f"{size} via proxy",
            mode="lines+markers", customdata=proxied[["fraction_of_direct", "workers"]],
            hovertemplate="%{x:.0f} ms: %{y:,.0f} rows/s (%{customdata[0]:.2f} of direct, "
                          "%{customdata[1]} in flight)<extra></extra>"))
        for r in group[group["via"] == "direct"].itertuples():
            fig.add_hline(y=r.rows_per_s, line_dash="dash",
                          annotation_text=f"{size} direct {r.rows_per_s:,.0f} rows/s")
    fig.update_layout(title=title, xaxis_title="round trip (ms), source and target",
                      yaxis_title="rows/s", yaxis_tickformat=",.0f", yaxis_rangemode="tozero",
                      legend={"orientation": "h", "y": -0.2}, **_LAYOUT)
    return fig


def _rtt_label(rtt: float) -> str:
    return "direct" if rtt < 0 else f"{rtt:g} ms"


# -- candle explorer -------------------------------------------------------------------------


def candlestick(candles: pd.DataFrame, *, title: str = "", decimals: int | None = None,
                window: tuple[Any, Any] | None = None) -> go.Figure:
    """Candlestick over a volume pane, sharing one time axis (UTC) with a range slider under it.

    Prices read at ``decimals`` (the instrument's tick: 16,452.75, not 16.45k; default: what
    the prices need); volumes as whole numbers. ``window`` ([from, to), UTC) fixes the time
    axis: one candle alone would otherwise zoom it to fractions of a millisecond. Both
    default to what :func:`tsj_lab.lab.candles.read` noted in ``candles.attrs``.
    """
    decimals = candles.attrs.get("decimals") if decimals is None else decimals
    window = candles.attrs.get("window") if window is None else window
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.03,
                        row_heights=[0.75, 0.25])
    fig.add_trace(go.Candlestick(
        x=candles["bucket"], open=candles["open"], high=candles["high"], low=candles["low"],
        close=candles["close"], name="price"), row=1, col=1)
    rising = candles["close"] >= candles["open"]
    fig.add_trace(go.Bar(x=candles["bucket"], y=candles["volume"], name="volume",
                         marker_color=["#26a69a" if r else "#ef5350" for r in rising]),
                  row=2, col=1)
    if decimals is None:
        decimals = tables.tick_decimals(None, candles[["open", "high", "low", "close"]].stack())
    price = f",.{decimals}f"
    # the slider belongs under the last pane, not between price and volume
    fig.update_xaxes(rangeslider_visible=False, row=1, col=1)
    fig.update_xaxes(rangeslider={"visible": True, "thickness": 0.06}, title_text="time (UTC)",
                     row=2, col=1)
    fig.update_xaxes(hoverformat=TIME_HOVER)
    if window is not None:
        fig.update_xaxes(range=[pd.Timestamp(window[0]), pd.Timestamp(window[1])])
    fig.update_yaxes(title_text="price", tickformat=price, hoverformat=price, row=1, col=1)
    fig.update_yaxes(title_text="volume", tickformat=",d", hoverformat=",d", row=2, col=1)
    fig.update_layout(title=title, showlegend=False, height=620, template="plotly_white",
                      margin={"l": 70, "r": 20, "t": 50, "b": 30})
    return fig


def hourly_volume(by_hour: pd.DataFrame, *, title: str = "Volume by hour (UTC)") -> go.Figure:
    """Bars of volume per hour of day, from :func:`tsj_lab.lab.candles.volume_by_hour`."""
    fig = go.Figure(go.Bar(x=by_hour["hour"], y=by_hour["volume"],
                           customdata=by_hour["share_pct"],
                           hovertemplate="%{x}:00 UTC: %{y:,d} (%{customdata:.1f}%)<extra></extra>"))
    fig.update_layout(title=title, xaxis={"title": "hour of day (UTC)", "dtick": 1},
                      yaxis={"title": "volume", "tickformat": ",d"}, height=320,
                      template="plotly_white")
    return fig


def candle_controls(show: Any, *, symbols: list[str], timeframes: Iterable[str],
                    symbol: str, timeframe: str, days: list[Any], start: Any, end: Any) -> Any:
    """ipywidgets to pick symbol, timeframe and UTC days; ``show(**choice)`` redraws on change.

    ``show`` gets symbol, timeframe, start and end (dates, end exclusive) and displays what
    it likes; its output lands in the box's output area. The days are dropdowns of ISO
    dates (a date picker shows the browser's 01/18/2026 while every message says
    2026-01-18; a range slider's readout cut the two dates off): ``days`` are the
    midnights offered, ``start``/``end`` among them. Returns the box (display it).
    """
    # deferred: only the candle explorer's controls need ipywidgets (0.2 s to import)
    import ipywidgets as w  # noqa: PLC0415

    labels = [(f"{d:%Y-%m-%d}", d) for d in days]
    pick = {
        "symbol": w.Dropdown(options=symbols, value=symbol, description="symbol"),
        "timeframe": w.Dropdown(options=list(dict.fromkeys([*timeframes, timeframe])),
                                value=timeframe, description="timeframe"),
        "start": w.Dropdown(options=labels, value=start, description="from (UTC)"),
        "end": w.Dropdown(options=labels, value=end, description="to (UTC, excl.)",
                          style={"description_width": "initial"}),
    }
    out = w.interactive_output(show, pick)
    return w.VBox([w.VBox([w.HBox([pick["symbol"], pick["timeframe"]]),
                           w.HBox([pick["start"], pick["end"]])]), out])


# -- integrity -----------------------------------------------------------------------------


def check_overview(results: pd.DataFrame, *, title: str = "integrity checks") -> go.Figure:
    """Rows affected per check (from ``checks.run_all``), one bar colour per status."""
    colours = {"ok": "#2ca02c", "unsupported": "#7f7f7f", "warn": "#ff7f0e", "fail": "#d62728"}
    totals = (results.groupby(["check", "status"], sort=False)["rows_affected"].sum()
              .reset_index())
    fig = go.Figure()
    for status, colour in colours.items():
        part = totals[totals["status"] == status]
        if len(part):
            fig.add_trace(go.Bar(x=part["check"], y=part["rows_affected"], name=status,
                                 marker_color=colour,
                                 hovertemplate="%{x}: %{y} rows<extra>" + status + "</extra>"))
    fig.update_layout(title=title, barmode="stack", yaxis_title="rows affected",
                      margin={"l": 50, "r": 20, "t": 50, "b": 110}, template="plotly_white")
    return fig


def check_timings(timings: Mapping[str, float], *, title: str = "time per check step") -> go.Figure:
    """Seconds per step of one suite run (``checks.run(..., timings=...)``)."""
    fig = go.Figure(go.Bar(x=list(timings.values()), y=list(timings), orientation="h",
                           hovertemplate="%{y}: %{x:.2f} s<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="seconds", yaxis={"autorange": "reversed"},
                      margin={"l": 130, "r": 20, "t": 50, "b": 40}, template="plotly_white")
    return fig


# -- ticks: ingest and migration -----------------------------------------------------------


def migration_throughput(history: pd.DataFrame, *, title: str = "Migration throughput") -> go.Figure:
    """Cumulated rows over time (line) and each batch's rows/s (dots, right axis), from
    ``migrate.history``: one point per checkpoint, in commit order."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=history["finished_at"], y=history["cumulative_rows"],
                             name="rows copied", mode="lines"))
    fig.add_trace(go.Scatter(
        x=history["finished_at"], y=history["rows_per_s"], name="batch rows/s", mode="markers",
        yaxis="y2", customdata=list(zip(history["symbol"], history["batch_id"])),
        hovertemplate="batch %{customdata[1]} %{customdata[0]}<br>%{y:,.0f} rows/s<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="commit time (UTC)", yaxis_title="rows copied",
                      xaxis_hoverformat=TIME_HOVER,
                      yaxis2={"title": "rows/s per batch", "overlaying": "y", "side": "right",
                              "rangemode": "tozero"},
                      legend={"orientation": "h", "y": -0.2}, **_LAYOUT)
    return fig


def ingest_rates(figures: Mapping[str, Any], *, title: str = "Ingest into the hypertable") -> go.Figure:
    """Median rows/s of the same rows loaded four ways (``ingest.IngestResult.as_dict()``)."""
    w = figures["workers"]
    bars = {"psql \\copy (CSV ready)": figures["psql_rows_per_s"],
            f"tsj pre-encoded, {w} conn.": figures["pre_encoded_rows_per_s"],
            f"tsj streamed, {w} conn.": figures["copy_rows_per_s"],
            "tsj streamed, 1 conn.": figures["copy_1_rows_per_s"]}
    fig = go.Figure(go.Bar(x=list(bars), y=list(bars.values()),
                           text=[f"{v:,.0f}" for v in bars.values()], textposition="outside"))
    fig.update_layout(title=f"{title}: {figures['rows']:,} rows, median of {figures['repeats']}; "
                            f"pre-encoded {figures['speedup_vs_psql']}x psql \\copy",
                      yaxis_title="rows/s", **_LAYOUT)
    return fig


# -- the live run --------------------------------------------------------------------------


def live_timeline(samples: pd.DataFrame, runs: pd.DataFrame, *,
                  title: str = "Latency while the scheduler runs the jobs") -> go.Figure:
    """Insert batches and AC8 windows over the run (``samples``: at, operation, ms, during),
    each job run a shaded span (``runs``: policy, start, end), times as datetimes."""
    fig = go.Figure()
    for (operation, during), part in samples.groupby(["operation", "during"]):
        fig.add_trace(go.Scatter(x=part["at"], y=part["ms"], mode="markers",
                                 name=f"{operation}, {during}", marker={"size": 4}))
    for run in runs.itertuples():
        fig.add_vrect(x0=run.start, x1=run.end, opacity=0.15, line_width=0,
                      fillcolor="firebrick" if run.policy == "compression" else "gray",
                      annotation_text=str(run.policy), annotation_position="top left")
    fig.update_layout(title=title, yaxis={"title": "ms", "type": "log"},
                      margin={"l": 50, "r": 20, "t": 50, "b": 40}, template="plotly_white")
    return fig
