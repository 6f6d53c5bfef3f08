"""The loader: part by part, exact values by binary COPY, re-runs, the tsj generate command."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pandas as pd
import psycopg
import pytest

from tsj_lab.data import copybin, generate, prices
from tsj_lab import migrate
from tsj_lab.provision import schema
from tsj_lab.cli import main
from tsj_lab.domain import TickSpec
from tsj_lab.errors import SchemaError

DAY = "2024-01-02"  # a Tuesday


def test_loader_streams_part_by_part(make_db, monkeypatch: pytest.MonkeyPatch) -> None:
    url = make_db(timescale=False)
    schema.create_source(url)
    monkeypatch.setattr(prices, "PART_ROWS", 1000)
    sizes: list[int] = []
    real = copybin.copy_buffer

    def spy(cols: prices.Columns, **kw: object) -> bytes:
        sizes.append(len(cols))
        return real(cols, **kw)

    monkeypatch.setattr(copybin, "copy_buffer", spy)
    n = generate.load(url, TickSpec(["ES", "EURUSD"], DAY, interval_ms=10_000), workers=2)
    assert n == 2 * 8640 and sum(sizes) == n and max(sizes) <= 1000 and len(sizes) == 18
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM tick_data").fetchone()[0] == n


def test_binary_copy_stores_exact_values(make_db) -> None:
    url = make_db(timescale=False)
    schema.create_source(url)
    generate.load(url, TickSpec(["EURUSD", "NQ"], DAY, interval_ms=30_000, seed=9))
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT symbol, bid_price, ask_price, last_price, volume, trade_id, account_id,"
            " time FROM tick_data ORDER BY symbol, time").fetchall()
    for symbol in ("EURUSD", "NQ"):
        [part] = prices.plan(TickSpec([symbol], DAY, interval_ms=30_000, seed=9))
        c = prices.columns(part)
        db = [r for r in rows if r[0] == symbol]
        assert len(db) == len(c)
        tick = prices.spec_for(symbol).tick
        for i in (0, 1, len(c) // 2, len(c) - 1):
            assert db[i][1] == Decimal(int(c.bid[i])) * tick
            assert db[i][2] == Decimal(int(c.ask[i])) * tick
            assert db[i][3] == Decimal(int(c.last[i])) * tick
            assert db[i][4] == c.volume[i]
        assert sum(r[5] is not None for r in db) == int(c.has_trade.sum())
        assert db[0][7] == dt.datetime(2024, 1, 2, tzinfo=dt.UTC)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM tick_data WHERE symbol = 'NQ' AND "
                            "(bid_price % 0.25 <> 0 OR ask_price % 0.25 <> 0)").fetchone()[0] == 0


def test_worker_count_does_not_change_the_rows(make_db) -> None:
    one, two = make_db(timescale=False), make_db(timescale=False)
    for url, workers in ((one, 1), (two, 2)):
        schema.create_source(url)
        generate.load(url, TickSpec(["ES", "BTCUSD"], DAY, days=2, interval_ms=20_000), workers=workers)
    pd.testing.assert_frame_equal(migrate.digest(one), migrate.digest(two))


def test_load_into_missing_table_names_the_fix(make_db) -> None:
    with pytest.raises(SchemaError, match=r"tick_data.*tsj provision"):
        generate.load(make_db(timescale=False), TickSpec(["ES"], DAY, interval_ms=60_000))


def test_cli_generate_into_the_source(make_db, capsys: pytest.CaptureFixture[str]) -> None:
    url = make_db(timescale=False)
    assert main(["generate", "--source", url, "--symbols", "ES,NQ", "--start", DAY,
                 "--interval-ms", "60000"]) == 0
    assert "loaded 2,880 ticks into source" in capsys.readouterr().out
    assert main(["generate", "--source", url, "--interval-ms", "0"]) == 1
    assert "interval_ms=0" in capsys.readouterr().err


def test_pre_encoded_parts_load_the_same_rows(make_db) -> None:
    one, two = make_db(timescale=False), make_db(timescale=False)
    parts = prices.plan(TickSpec(["ES", "NQ"], DAY, interval_ms=30_000))
    for url, items in ((one, parts), (two, [copybin.encode(p) for p in parts])):
        schema.create_source(url)
        assert generate.write_parts(url, items, workers=2, progress=False) == 2 * 2880
    pd.testing.assert_frame_equal(migrate.digest(one), migrate.digest(two))


def test_cli_generate_provisions_an_empty_target(make_db, capsys: pytest.CaptureFixture[str]) -> None:
    url = make_db(timescale=True)
    assert main(["generate", "--target", url, "--symbols", "BTCUSD", "--start", DAY,
                 "--interval-ms", "60000", "--sessions"]) == 0
    out = capsys.readouterr().out
    assert "loaded 1,440 ticks into target" in out
    assert "refreshed candle_1m, candle_5m, candle_15m, candle_1h in" in out
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM timescaledb_information.hypertables "
                            "WHERE hypertable_name = 'tick_data'").fetchone()[0] == 1
    # clean generated data checks clean: the candle views are current
    assert main(["check", "--target", url, "--no-source"]) == 0, capsys.readouterr().out


def test_cli_generate_rerun_skips_loaded_parts_and_refuses_foreign_rows(
    make_db, capsys: pytest.CaptureFixture[str]
) -> None:
    url = make_db(timescale=False)
    args = ["generate", "--source", url, "--symbols", "ES", "--start", DAY, "--interval-ms",
            "60000", "--sessions"]
    assert main(args) == 0
    with psycopg.connect(url) as conn:
        first = conn.execute("SELECT count(*) FROM tick_data").fetchone()[0]
    capsys.readouterr()
    assert main(args) == 0  # the same run again: nothing doubled
    assert "nothing to do" in capsys.readouterr().out
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM tick_data").fetchone()[0] == first
        conn.execute("DELETE FROM tick_data WHERE ctid IN (SELECT ctid FROM tick_data LIMIT 5)")
    assert main(args) == 1  # an interrupted or foreign range: refused, untouched
    err = capsys.readouterr().err
    assert f"holds {first - 5:,} ticks of ES" in err and "--replace" in err
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM tick_data").fetchone()[0] == first - 5
    assert main([*args, "--replace"]) == 0
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM tick_data").fetchone()[0] == first


@pytest.mark.parametrize("flags, word", [
    (["--target", "postgresql://nowhere/t", "--into", "source"], "--target URL given with --into source"),
    (["--source", "postgresql://nowhere/s", "--into", "target"], "--source URL given with --into target"),
    (["--source", "postgresql://nowhere/s", "--target", "postgresql://nowhere/t"], "both given"),
])
def test_cli_generate_refuses_a_url_for_the_other_side(
    flags: list[str], word: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A URL is never silently ignored in favour of the default database of the other side."""
    assert main(["generate", *flags, "--symbols", "ES", "--start", DAY]) == 1
    assert word in capsys.readouterr().err
