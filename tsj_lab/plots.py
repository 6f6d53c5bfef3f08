"""The plotly figures the notebooks and the report index show.

Figures only: data comes in as DataFrames or plain records, already read and computed
by the phase modules. Each phase appends its own section.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import plotly.graph_objects as go

if TYPE_CHECKING:
    import pandas as pd

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
            hovertemplate="%{x}<br>%{y}<br>n=%{customdata}<extra>" + name + "</extra>"))
    fig.update_layout(title=title, margin={"l": 50, "r": 20, "t": 50, "b": 40},
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
