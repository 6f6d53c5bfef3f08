"""Readiness to flip (tsj cutover), and the switch and switch back as docs/migration.md
lays them out, with a writer thread standing in for the application."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable

import psycopg
import pytest

from tsj_lab import migrate
from tsj_lab.errors import MigrationError
from tsj_lab.bench.parallelrun import Writer
from tsj_lab.cli import main
from tsj_lab.data import generate
from tsj_lab.domain import TickSpec
from tsj_lab.migrate import cutover
from tsj_lab.migrate import follow as following
from tsj_lab.migrate import sync as syncing
from tsj_lab.provision import schema

TABLE_SUM = ("SELECT count(*), coalesce(sum(hashtextextended(ROW(extract(epoch FROM time), "
             "symbol, bid_price, ask_price, last_price, volume, source, trade_id, account_id)"
             "::text, 0)::numeric), 0) FROM tick_data")


def _pair(make_db: Callable[..., str], *, days: int = 2) -> tuple[str, str]:
    """Ticks up to yesterday (the windows of the shadow read end at the newest tick)."""
    src, tgt = make_db(timescale=False), make_db(timescale=True)
    schema.create_source(src)
    schema.provision(tgt)
    generate.load(src, TickSpec.ending_yesterday(("ES", "NQ"), days=days, interval_ms=5_000),
                  workers=1)
    migrate.run(src, tgt, progress=False)
    return src, tgt


def _exec(url: str, *statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for stmt in statements:
            conn.execute(stmt)


def _one(url: str, query: str) -> tuple:
    with psycopg.connect(url, autocommit=True) as conn:
        return tuple(conn.execute(query).fetchone())  # type: ignore[arg-type]


def _correct_newest_hour(url: str) -> None:
    """One tick of the last hour corrected (the shadow read's windows see it)."""
    _exec(url, "UPDATE tick_data SET last_price = last_price + 0.25 WHERE symbol = 'ES' AND "
               "time = (SELECT max(time) - interval '10 min' FROM tick_data WHERE symbol = 'ES')")


def test_go_on_a_level_pair_and_no_go_with_the_row_on_one_corrected_tick(make_db, capsys) -> None:
    src, tgt = _pair(make_db)
    r = cutover.readiness(src, tgt)
    assert r.go, r.reasons
    assert r.verdict().startswith("go:") and r.lag_s == 0 and r.last_level is not None
    assert len(r.shadow) == 7 and r.shadow["equal"].all() and (r.shadow["source_rows"] > 0).all()
    _correct_newest_hour(src)
    assert main(["cutover", "--source", src, "--target", tgt]) == 1
    out = capsys.readouterr().out
    assert "no-go: 1 symbol-day(s) differ" in out and "run 'tsj sync'" in out
    assert "last_price" in out and "updated" in out  # the row: which column, both values
    r = cutover.readiness(src, tgt)
    assert not r.go and list(r.samples["column"]) == ["last_price"]
    s, t = r.samples[["source", "target"]].iloc[0]
    assert float(s) == float(t) + 0.25
    bad = r.shadow[~r.shadow["equal"]]
    assert "window 1h" in set(bad["question"]) and bad["difference"].str.contains("row").all()
    assert any("shadow read(s) differ" in x for x in r.reasons)
    # the catch-up repairs it, refreshes the day's candles, and the verdict turns
    res = syncing.sync(src, tgt, progress=False)
    assert res.days_copied == 1 and res.candles_refreshed == 1
    assert main(["cutover", "--source", src, "--target", tgt]) == 0
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1].startswith("go:")
    r = cutover.readiness(src, tgt)
    assert len(r.candles) == 4 and (r.candles["differences"] == 0).all()


def test_stale_candles_and_lag_are_no_go(make_db) -> None:
    src, tgt = _pair(make_db, days=1)
    _correct_newest_hour(src)
    assert syncing.sync(src, tgt, progress=False).candles_refreshed == 1
    assert cutover.readiness(src, tgt).go
    # the same correction written to both sides behind tsj's back: the ticks level, the
    # materialized candles of that day stale
    for url in (src, tgt):
        _correct_newest_hour(url)
    r = cutover.readiness(src, tgt)
    assert not r.go and r.differing.empty
    stale = [x for x in r.reasons if "differs from its ticks" in x]
    assert stale and "tsj refresh --start" in stale[0], r.reasons
    day = r.candles.loc[r.candles["differences"] > 0, "day"].iloc[0]
    assert main(["refresh", "--target", tgt, "--start", f"{day}T00:00+00:00",
                 "--end", f"{day + dt.timedelta(days=1)}T00:00+00:00"]) == 0
    assert cutover.readiness(src, tgt).go
    # a tick the follow mode has not copied yet
    _exec(src, "INSERT INTO tick_data (time, symbol, volume) "
               "SELECT max(time) + interval '60 s', 'NQ', 1 FROM tick_data WHERE symbol = 'NQ'")
    r = cutover.readiness(src, tgt, max_lag_s=5)
    assert not r.go and any(x.startswith("lag 60.0 s on NQ > 5 s") for x in r.reasons), r.reasons
    following.follow(src, tgt, max_steps=1)
    assert cutover.readiness(src, tgt).go


def test_the_switch_and_the_switch_back(make_db) -> None:
    """docs/migration.md's sequence: follow under the application's writes, stop writes,
    final catch-up, go, flip; TimescaleDB takes writes; flip back: the forward catch-up
    refuses, the copy back brings Supabase level, and the readiness check says go for the
    reverse pair too."""
    src, tgt = _pair(make_db, days=1)
    stop = threading.Event()
    runner = threading.Thread(target=following.follow, args=(src, tgt),
                              kwargs={"interval": 0.1, "stop": stop})
    with Writer(src, symbols=["ES", "NQ"], interval_ms=50):
        runner.start()
        time.sleep(1.5)
    # 1. writes stopped (the application in maintenance); 2. the follow mode drains
    time.sleep(0.3)
    stop.set()
    runner.join()
    _exec(src, "UPDATE tick_data SET trade_id = gen_random_uuid() WHERE symbol = 'NQ' AND "
               "time = (SELECT min(time) FROM tick_data WHERE symbol = 'NQ')")
    # 3. the final catch-up, 4. the final verification: go
    syncing.sync(src, tgt, progress=False)
    assert cutover.readiness(src, tgt).go
    assert _one(src, TABLE_SUM) == _one(tgt, TABLE_SUM)
    # 5. the flip: the application writes TimescaleDB now
    flip = dt.datetime.now(dt.UTC)
    with Writer(tgt, symbols=["ES", "NQ"], interval_ms=50) as writer:
        time.sleep(1.0)
    # the flip back: Supabase lacks what TimescaleDB took; forward would delete it, and so
    # would a follow mode left running (a step at a time): both refuse, nothing is deleted
    taken = _one(tgt, TABLE_SUM)
    with pytest.raises(MigrationError, match="took writes"):
        syncing.sync(src, tgt, progress=False)
    with psycopg.connect(src, autocommit=True) as s, psycopg.connect(tgt) as t, \
            pytest.raises(MigrationError, match="which the follow mode would delete"):
        following.step(s, t)
    assert _one(tgt, TABLE_SUM) == taken
    back = syncing.sync(tgt, src, reverse=True, since=flip, progress=False)
    assert back.rows_copied >= writer.written > 0
    assert _one(src, TABLE_SUM) == _one(tgt, TABLE_SUM)
    assert cutover.readiness(src, tgt).go  # level again: the parallel run can resume
