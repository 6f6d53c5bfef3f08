"""History straight into compressed chunks: sorted, verified, a day whole or not at all."""

from __future__ import annotations

import dataclasses
import datetime as dt

import psycopg
import pytest

from tsj_lab.cli import main
from tsj_lab.data import columnstore, copybin, generate, prices
from tsj_lab.domain import TickSpec
from tsj_lab.errors import ConfigError, LoadError
from tsj_lab.provision import schema

OLD = "2024-01-02"  # far past the story's 30-day compression horizon


def _chunks(url: str) -> dict[str, int]:
    """Each chunk's first day and catalog status (1: compressed; 2 unordered, 8 partial)."""
    with psycopg.connect(url) as conn:
        return {str(r[0].date()): r[1] for r in conn.execute(
            "SELECT i.range_start, c.status FROM timescaledb_information.chunks i "
            "JOIN _timescaledb_catalog.chunk c ON c.table_name = i.chunk_name "
            "WHERE i.hypertable_name = 'tick_data'")}


def _per_day(url: str) -> list[tuple[str, str, int, int]]:
    with psycopg.connect(url) as conn:
        return [(str(d), s, n, int(v)) for d, s, n, v in conn.execute(
            "SELECT time::date, symbol, count(*), sum(volume) FROM tick_data GROUP BY 1, 2 ORDER BY 1, 2")]


def test_copy_buffer_sends_the_newest_tick_first() -> None:
    cols = prices.columns(prices.plan(TickSpec(["ES"], OLD, interval_ms=60_000))[0])
    data = copybin.copy_buffer(cols)
    first = int.from_bytes(data[6:14], "big", signed=True)  # nfields, length, then time
    assert first == int(cols.time_us.max()) and 0 < cols.has_trade.sum() < len(cols)
    assert len(data) == len(copybin.copy_buffer(cols, descending=False))


def test_encoded_keeps_the_order_and_the_bytes_while_encoding_ahead() -> None:
    parts = prices.plan(TickSpec(["ES", "NQ"], OLD, interval_ms=60_000))
    mixed = [parts[0], copybin.encode(parts[1])]
    for items in (parts, mixed):
        got = list(copybin.encoded(items))
        assert [(e.symbol, e.data) for e in got] == [
            (p.symbol, copybin.encode(p).data) for p in parts]


def test_old_days_go_in_compressed_and_sorted_new_days_plain(make_db) -> None:
    url, plain = make_db(timescale=True), make_db(timescale=True)
    recent = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=2)
    for db, direct in ((url, None), (plain, False)):
        schema.provision(db)
        for start, days in ((OLD, 2), (recent, 1)):
            generate.load(db, TickSpec(["ES", "NQ"], start, days, interval_ms=30_000),
                          workers=2, progress=False, direct=direct)
    got = _chunks(url)  # compressed, neither unordered nor partial: nothing left for the job
    assert got == {"2024-01-02": 1, "2024-01-03": 1, str(recent): 0}
    assert set(_chunks(plain).values()) == {0}
    assert _per_day(url) == _per_day(plain) and len(_per_day(url)) == 6


def test_a_refused_day_is_one_line_and_not_written(make_db) -> None:
    url = make_db(timescale=True)
    schema.provision(url)
    with psycopg.connect(url) as conn:  # the server refuses NQ's ticks of the second day
        conn.execute("ALTER TABLE tick_data ADD CONSTRAINT no_nq CHECK "
                     "(symbol <> 'NQ' OR time < '2024-01-03')")
    with pytest.raises(LoadError) as err:
        generate.load(url, TickSpec(["ES", "NQ"], OLD, 2, interval_ms=60_000), workers=1,
                      progress=False)
    msg = str(err.value)
    assert "2024-01-03 of tick_data refused by the server" in msg and "no_nq" in msg
    assert "\n" not in msg and "nothing of that day was written" in msg
    assert _chunks(url) == {"2024-01-02": 1}  # the first day whole, the second not begun
    assert [d for d, *_ in _per_day(url)] == ["2024-01-02", "2024-01-02"]


def test_a_day_that_does_not_verify_is_rolled_back(make_db, monkeypatch: pytest.MonkeyPatch) -> None:
    url = make_db(timescale=True)
    schema.provision(url)
    real = copybin.encode

    def off_by_one(part: prices.Part) -> copybin.Encoded:  # the client's newest tick, wrong
        enc = real(part)
        return dataclasses.replace(enc, max_us=enc.max_us + 1) if part.symbol == "NQ" else enc

    monkeypatch.setattr(copybin, "encode", off_by_one)
    with pytest.raises(LoadError, match=r"2024-01-02 of tick_data did not verify: the "
                                        r"columnstore holds ES 1,440 ticks .*rolled back"):
        generate.load(url, TickSpec(["ES", "NQ"], OLD, interval_ms=60_000), progress=False)
    assert _chunks(url) == {} and _per_day(url) == []


def test_direct_true_refuses_a_day_it_cannot_compress(make_db) -> None:
    url = make_db(timescale=True)
    schema.provision(url)
    recent = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    with pytest.raises(ConfigError, match=f"cannot load {recent} of tick_data compressed: "
                                          f"{recent} is not older than the compression horizon"):
        generate.load(url, TickSpec(["ES"], recent, interval_ms=60_000), direct=True)
    generate.load(url, TickSpec(["ES"], OLD, interval_ms=60_000))
    with pytest.raises(ConfigError, match="already has a chunk"):  # a chunk of its own only
        generate.write_parts(url, [copybin.encode(p) for p in
                                   prices.plan(TickSpec(["NQ"], OLD, interval_ms=60_000))],
                             direct=True)


def test_the_apache_edition_and_plain_tables_load_plain(make_db) -> None:
    url = make_db(timescale=False)
    schema.create_source(url)
    with psycopg.connect(url) as conn:
        assert columnstore.horizon(conn).before is None
    assert generate.load(url, TickSpec(["ES"], OLD, interval_ms=60_000)) == 1440


def test_cli_generate_loads_old_days_compressed(make_db, capsys: pytest.CaptureFixture[str]) -> None:
    url = make_db(timescale=True)
    assert main(["generate", "--target", url, "--symbols", "ES", "--start", OLD,
                 "--interval-ms", "60000"]) == 0
    assert "loaded 1,440 ticks into target" in capsys.readouterr().out
    assert _chunks(url) == {OLD: 1}
    with psycopg.connect(url) as conn:  # the candle views see the ticks written compressed
        assert conn.execute("SELECT count(*) FROM candle_1m").fetchone()[0] == 1440
    assert main(["generate", "--target", url, "--symbols", "NQ", "--start", "2024-01-03",
                 "--interval-ms", "60000", "--no-direct"]) == 0
    assert _chunks(url) == {OLD: 1, "2024-01-03": 0}
