"""The figures of the candle explorer and the report index (no database needed)."""

from __future__ import annotations

from datetime import date

import pandas as pd

from tsj_lab.lab import candles, plots


def _candles() -> pd.DataFrame:
    return pd.DataFrame({
        "bucket": pd.date_range("2024-01-02", periods=4, freq="15min", tz="UTC"),
        "open": [10.0, 11.0, 10.5, 10.0], "high": [11.5, 11.2, 10.9, 12.0],
        "low": [9.5, 10.1, 9.8, 9.9], "close": [11.0, 10.5, 10.0, 11.8],
        "volume": [5, 7, 3, 9], "tick_count": [2, 3, 1, 4]})


def test_candlestick_has_a_volume_pane_and_one_range_slider() -> None:
    fig = plots.candlestick(_candles(), title="ES 15m")
    kinds = [t.type for t in fig.data]
    assert kinds == ["candlestick", "bar"]
    assert list(fig.data[1].y) == [5, 7, 3, 9]
    assert fig.data[1].marker.color == ("#26a69a", "#ef5350", "#ef5350", "#26a69a")
    assert fig.layout.xaxis.rangeslider.visible is False  # not between price and volume
    assert fig.layout.xaxis2.rangeslider.visible is True
    assert fig.layout.xaxis.matches == "x2"  # the slider moves both panes
    assert fig.layout.title.text == "ES 15m"


def test_hourly_volume_has_24_bars() -> None:
    fig = plots.hourly_volume(candles.volume_by_hour(_candles()))
    assert len(fig.data[0].x) == 24 and sum(fig.data[0].y) == 24


def test_trend_draws_one_line_per_series_in_time_order() -> None:
    points = [{"at": "2026-01-18T08:00", "series": "p50_ms", "value": 3.0, "n": 100},
              {"at": "2026-01-17T08:00", "series": "p50_ms", "value": 4.0, "n": 100},
              {"at": "2026-01-17T08:00", "series": "p95_ms", "value": 9.0, "n": 100}]
    fig = plots.trend(points, title="04_bench: window latency (ms)")
    assert [t.name for t in fig.data] == ["p50_ms", "p95_ms"]
    assert list(fig.data[0].y) == [4.0, 3.0]
    assert fig.layout.showlegend is True


def test_candle_controls_redraw_on_a_change() -> None:
    calls: list[dict] = []
    box = plots.candle_controls(lambda **pick: calls.append(pick), symbols=["ES", "NQ"],
                                timeframes=candles.TIMEFRAMES, symbol="ES", timeframe="2h",
                                start=date(2024, 1, 2), end=date(2024, 1, 3))
    symbol, timeframe, _, _ = box.children[0].children
    assert "2h" in timeframe.options  # a width the list lacks is still offered
    symbol.value = "NQ"
    assert calls[-1] == {"symbol": "NQ", "timeframe": "2h", "start": date(2024, 1, 2),
                         "end": date(2024, 1, 3)}
