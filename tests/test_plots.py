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
    days = [date(2024, 1, d) for d in (2, 3, 4, 5)]
    box = plots.candle_controls(lambda **pick: calls.append(pick), symbols=["ES", "NQ"],
                                timeframes=candles.TIMEFRAMES, symbol="ES", timeframe="2h",
                                days=days, start=date(2024, 1, 2), end=date(2024, 1, 3))
    (symbol, timeframe), (start, end) = (row.children for row in box.children[0].children)
    assert "2h" in timeframe.options  # a width the list lacks is still offered
    assert (start.label, end.label) == ("2024-01-02", "2024-01-03")  # ISO, not 01/02/2024
    assert (start.description, end.description) == ("from (UTC)", "to (UTC, excl.)")
    symbol.value = "NQ"
    assert calls[-1] == {"symbol": "NQ", "timeframe": "2h", "start": date(2024, 1, 2),
                         "end": date(2024, 1, 3)}
    end.value = date(2024, 1, 5)
    assert calls[-1]["start"] == date(2024, 1, 2) and calls[-1]["end"] == date(2024, 1, 5)


def test_candlestick_reads_prices_at_the_tick_and_times_in_utc() -> None:
    nq = _candles()
    nq[["open", "high", "low", "close"]] += 16_440.0  # NQ's level: plotly's default says 16.45k
    fig = plots.candlestick(nq, decimals=2)
    assert fig.layout.yaxis.tickformat == ",.2f" and fig.layout.yaxis.hoverformat == ",.2f"
    assert fig.layout.yaxis2.tickformat == ",d"  # volumes whole
    assert fig.layout.xaxis2.title.text == "time (UTC)"
    assert fig.layout.xaxis.hoverformat.endswith("UTC")
    # without a tick given: the decimals the prices need (10.5, 9.8: one)
    assert plots.candlestick(_candles()).layout.yaxis.tickformat == ",.1f"


def test_a_single_candle_keeps_its_window_on_the_axis() -> None:
    one = _candles().iloc[:1].copy()
    one.attrs.update(window=(pd.Timestamp("2024-01-02", tz="UTC"),
                             pd.Timestamp("2024-01-03", tz="UTC")), decimals=2)
    fig = plots.candlestick(one)
    lo, hi = (pd.Timestamp(x) for x in fig.layout.xaxis.range)
    assert hi - lo == pd.Timedelta(days=1)  # a day, not fractions of a millisecond
    assert fig.layout.yaxis.tickformat == ",.2f"


def test_hourly_volume_says_utc() -> None:
    fig = plots.hourly_volume(candles.volume_by_hour(_candles()))
    assert fig.layout.xaxis.title.text == "hour of day (UTC)"
    assert fig.layout.yaxis.tickformat == ",d"
