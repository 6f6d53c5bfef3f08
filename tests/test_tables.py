"""How tables read: prices at the instrument's tick, counts whole with separators."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import pandas as pd

from tsj_lab.lab import tables


def _cells(html: str) -> list[str]:
    return re.findall(r"<td[^>]*>([^<]*)</td>", html)


def test_tick_decimals_from_the_instrument_else_from_the_prices() -> None:
    assert tables.tick_decimals("ES") == 2 and tables.tick_decimals("EURUSD") == 5
    assert tables.tick_decimals("XYZ", [Decimal("4297.25000000"), Decimal("1.50000000")]) == 2
    assert tables.tick_decimals("XYZ", [100.0, 100.125]) == 3
    assert tables.tick_decimals(None, []) == 2


def test_describe_counts_whole_and_prices_at_the_tick() -> None:
    ticks = pd.DataFrame({"price": [16_452.75, 16_452.5, 16_453.0] * 115_200,
                          "volume": [1, 2, 3] * 115_200})
    html = tables.describe(ticks, symbol="NQ").to_html()
    cells = _cells(html)
    assert cells[:2] == ["345,600", "345,600"]  # not 345600.000000
    assert "16,452.75" in cells and "16,453.00" in cells  # NQ's tick, with separators
    assert not any(re.search(r"\.\d{3,}", c) for c in cells), cells  # no 6-decimal tails


def test_decimal_columns_show_the_decimals_they_need() -> None:
    sql = pd.DataFrame({"last_price": [Decimal("4297.25000000"), Decimal("4297.50000000")],
                        "n": [1, 2]})
    html = tables.frame_html(sql)
    assert _cells(html) == ["4,297.25", "1", "4,297.50", "2"]
    assert sql["last_price"].iloc[0] == Decimal("4297.25000000")  # the data is untouched


def test_frames_read_as_figures() -> None:
    """What the benchmark report showed: rows_per_s 1.86e+05, row counts 240.0."""
    df = pd.DataFrame({"db": ["timescaledb", "postgresql"], "rows": [240.0, float("nan")],
                       "rows_per_s": [186_343.21, 181_921.7], "p50_ms": [10.4123, 3.2],
                       "close": [16_452.75, 16_452.5], "n": [30, 30]})
    assert _cells(tables.frame_html(df)) == ["timescaledb", "240", "186,343", "10.41",
                                             "16,452.75", "30", "postgresql", "NaN", "181,922",
                                             "3.20", "16,452.50", "30"]
    figures = pd.Series({"rows": 345_600, "psql_rows_per_s": 181_921, "speedup": 1.02})
    assert _cells(tables.series_html(figures)) == ["345,600", "181,921", "1.02"]
    with pd.option_context("display.float_format", "{:.1f}".format):  # someone's own choice
        assert tables.frame_html(df) == df._repr_html_()
    long = pd.DataFrame({"x": range(1000)})
    assert "1000 rows × 1 columns" in tables.frame_html(long)  # truncated as pandas does
    assert len(_cells(tables.frame_html(long))) == pd.get_option("display.min_rows") + 1


def test_a_dataclass_reads_as_its_fields_in_utc() -> None:
    @dataclass(frozen=True)
    class Dataset:
        symbols: tuple[str, ...]
        start: datetime
        ticks_per_symbol: int

    shown = tables.record_html(Dataset(("ES", "NQ"), datetime(2026, 1, 18, tzinfo=UTC), 345_600))
    assert _cells(shown) == ["ES, NQ", "2026-01-18 00:00:00 UTC", "345,600"]
