"""The candle explorer: reading candles at any width, the summary, the checks, the report.

One small database (two symbols, one day at 2 s: 86,400 ticks) is shared by the module;
the tests only read it.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import psycopg
import pytest
from browser import rendered_dom

from tsj_lab.lab import candles, reports
from tsj_lab.data import generate
from tsj_lab.provision import schema
from tsj_lab.config import Settings, with_database
from tsj_lab.server.cluster import TARGET_DB, Embedded
from tsj_lab.errors import SchemaError

DAY = datetime(2024, 1, 2, tzinfo=UTC)


@pytest.fixture(scope="module")
def url(server: Embedded) -> Iterator[str]:
    name = f"candles_{uuid.uuid4().hex[:8]}"
    admin = server.url("postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    db_url = with_database(server.url(TARGET_DB), name)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    assert candles.ensure_sample(db_url, symbols=("ES", "BTCUSD"), start="2024-01-02") == 86_400
    schema.refresh_candles(db_url)
    yield db_url
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_target_with_ticks_gets_no_sample(url: str) -> None:
    assert candles.ensure_sample(url) == 0


def test_an_empty_pair_gets_the_same_sample_on_both_sides(make_db) -> None:
    target, source = make_db(timescale=True), make_db(timescale=False)
    loaded = candles.ensure_sample(target, source=source, symbols=("ES",), interval_ms=60_000)
    assert loaded == 1440
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    day = candles.window(yesterday)
    sides = [candles.tick_totals(u, symbol="ES", start=day[0], end=day[1])
             for u in (target, source)]
    assert sides[0] == sides[1] and sides[0]["ticks"] == 1440
    # a source with ticks next to an empty target: migrate those, do not invent others
    other = make_db(timescale=True)
    assert candles.ensure_sample(other, source=source) == 0
    assert not generate.holds_ticks(other)


@pytest.mark.parametrize("timeframe, source, count", [
    ("1m", "candle_1m", 1440), ("15m", "candle_15m", 96), ("1h", "candle_1h", 24),
    ("2m", "raw ticks", 720), ("4h", "raw ticks", 6), ("1d", "raw ticks", 1)])
def test_candles_add_up_to_the_ticks(url: str, timeframe: str, source: str, count: int) -> None:
    df = candles.read(url, symbol="ES", timeframe=timeframe, start=DAY, end=DAY + timedelta(days=1))
    assert (df.attrs["source"], len(df)) == (source, count)
    totals = candles.tick_totals(url, symbol="ES", start=DAY, end=DAY + timedelta(days=1))
    assert totals["ticks"] == 43_200
    results = candles.consistency(df, totals)
    assert all(c.ok for c in results), [c for c in results if not c.ok]
    assert list(df.columns) == list(candles.COLUMNS)


def test_a_view_and_the_raw_ticks_give_the_same_candles(url: str) -> None:
    window = {"symbol": "BTCUSD", "start": DAY, "end": DAY + timedelta(days=1)}
    view = candles.read(url, timeframe="1h", **window)
    raw = candles.read(url, timeframe="60m", **window)  # same width, no view: from the ticks
    assert raw.attrs["source"] == "raw ticks"
    pd.testing.assert_frame_equal(view, raw, check_like=True)


def test_bad_choices_fail_up_front(url: str) -> None:
    with pytest.raises(ValueError, match="timeframe '5 min' is not a width like"):
        candles.width("5 min")
    with pytest.raises(ValueError, match=r"^from 2024-01-02 00:30 UTC is not on a 1h "):
        candles.read(url, symbol="ES", timeframe="1h", start=DAY + timedelta(minutes=30),
                     end=DAY + timedelta(days=1))
    # the words and the time format of the controls: from / to, 2024-01-02 00:00 UTC
    with pytest.raises(ValueError, match=r"^to 2024-01-02T00:00:00\+00:00 is not after from "
                                         r"2024-01-03T00:00:00\+00:00; swap them"):
        candles.window("2024-01-03", "2024-01-02")
    with pytest.raises(ValueError, match="from 'yesterday-ish' is not a date"):
        candles.window("yesterday-ish")
    with pytest.raises(ValueError, match=r"symbol 'XX' has no ticks; the target has \['BTCUSD', "):
        candles.choose(url, symbol="XX")


def test_choose_defaults_to_the_first_symbol_and_its_last_day(url: str) -> None:
    assert candles.choose(url) == candles.Choice("BTCUSD", DAY, DAY + timedelta(days=1))
    picked = candles.choose(url, symbol="ES", start="2024-01-02T06:00", end="2024-01-02T12:00Z")
    assert (picked.start.hour, picked.end.hour, picked.start.tzinfo) == (6, 12, UTC)


def test_an_empty_target_is_named(make_db) -> None:
    with pytest.raises(SchemaError, match="tick_data holds no ticks; run 'tsj generate'"):
        candles.choose(make_db())


def _frame(rows: list[tuple[str, float, float, float, float, int]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["bucket", "open", "high", "low", "close", "volume"])
    df["bucket"] = pd.to_datetime(df["bucket"], utc=True)
    df["tick_count"] = 1
    return df


def test_summary_and_volume_by_hour() -> None:
    df = _frame([("2024-01-02T09:00Z", 100, 110, 95, 105, 10),
                 ("2024-01-02T09:30Z", 105, 106, 90, 99, 30),
                 ("2024-01-02T14:00Z", 99, 120, 98, 110, 60)])
    s = candles.summary(df)
    assert (s["candles"], s["volume"], s["high"], s["low"]) == (3, 100, 120, 90)
    assert s["return_pct"] == pytest.approx(10.0)
    assert s["range_pct"] == pytest.approx(30.0)
    assert (s["up_candles"], s["down_candles"]) == (2, 1)
    by_hour = candles.volume_by_hour(df)
    assert len(by_hour) == 24 and by_hour["volume"].sum() == 100
    assert by_hour.set_index("hour").loc[[9, 14], "share_pct"].tolist() == [40.0, 60.0]
    with pytest.raises(ValueError, match="no candles to summarize"):
        candles.summary(df.iloc[0:0])
    shown = candles.summary_frame(s | {"volume": 1631676, "return_pct": -3.909477},
                                  symbol="NQ").to_html()  # what the notebook and report show
    cells = dict(re.findall(r'row_heading[^>]*>(\w+)</th>\s*<td[^>]*>([^<]*)</td>', shown))
    assert cells["candles"] == "3" and cells["volume"] == "1,631,676"  # counts, separated
    assert cells["return_pct"] == "-3.91 %" and cells["range_pct"] == "30.00 %"
    assert cells["high"] == "120.00" and cells["open"] == "100.00"  # NQ's tick: 0.25
    assert candles.summary_frame(s).data.loc["candles", "value"] == 3  # the value itself stays


def test_consistency_names_a_broken_candle() -> None:
    df = _frame([("2024-01-02T09:00Z", 100, 99, 95, 105, 10)])  # high below the close
    failed = {c.name: c.detail for c in candles.consistency(df, {"ticks": 1, "volume": 11})
              if not c.ok}
    assert failed == {"high_above_body": "1 candles with high < max(open, close)",
                      "volume_matches_ticks": "candles 10, raw ticks 11"}


def test_explorer_builds_its_controls(url: str) -> None:
    box = candles.explorer(url, choice=candles.choose(url), timeframe="15m")
    rows = box.children[0].children
    controls = [c for row in rows for c in row.children]
    assert [c.description for c in controls] == ["symbol", "timeframe", "from (UTC)",
                                                 "to (UTC, excl.)"]
    assert controls[0].options == ("BTCUSD", "ES")
    start, end = controls[2:]
    assert (start.value, end.value) == (DAY.date(), DAY.date() + timedelta(days=1))  # last day
    assert (start.label, end.label) == ("2024-01-02", "2024-01-03")  # ISO, as messages say it


def test_candle_report_renders_its_candlestick(url: str, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # the notebook gets the connection name 'target'; the kernel finds this database
    # through the environment it inherits
    monkeypatch.setenv("TSJ_DATABASE_URL", url)
    report = reports.run("05_candles", settings=Settings.load(),
                         parameters={"symbol": "ES", "timeframe": "30m",
                                                   "start": "2024-01-02"}, reports_dir=tmp_path)
    summary = json.loads(report.json.read_text())
    assert summary["status"] == "ok"
    assert {c["status"] for c in summary["checks"]} == {"ok"} and len(summary["checks"]) == 5
    volume = next(m for m in summary["metrics"] if m["name"] == "volume")
    assert volume["n"] == 43_200
    dom = rendered_dom(report.html)
    assert 'class="trace boxes"' in dom, "no candlestick drawn"
    assert dom.count('class="box"') == 48  # one per 30-minute candle
    assert "rangeslider-container" in dom
