"""The parallel run's catch-up and follow mode, against a source written to as an
application would (new, late, corrected and deleted ticks; a writer thread at a fixed rate)."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable

import psycopg
import pytest

from tsj_lab import checks, migrate
from tsj_lab.bench.parallelrun import Writer
from tsj_lab.cli import main
from tsj_lab.data import generate
from tsj_lab.domain import TickSpec
from tsj_lab.errors import MigrationError, SchemaError
from tsj_lab.migrate import cutover
from tsj_lab.migrate import follow as following
from tsj_lab.migrate import sync as syncing
from tsj_lab.provision import schema

#: an order-independent checksum of the whole table: the multiset of its rows
TABLE_SUM = ("SELECT count(*), coalesce(sum(hashtextextended(ROW(extract(epoch FROM time), "
             "symbol, bid_price, ask_price, last_price, volume, source, trade_id, account_id)"
             "::text, 0)::numeric), 0) FROM tick_data")


def _ago(days: int) -> dt.date:
    return dt.datetime.now(dt.UTC).date() - dt.timedelta(days=days)


def _pair(make_db: Callable[..., str], *, days: int = 3, start: int = 4,
          symbols: tuple[str, ...] = ("ES", "NQ"), interval_ms: int = 60_000) -> tuple[str, str]:
    """A source with ``days`` days from ``start`` days ago, migrated into a provisioned target."""
    src, tgt = make_db(timescale=False), make_db(timescale=True)
    schema.create_source(src)
    schema.provision(tgt)
    generate.load(src, TickSpec(symbols, _ago(start), days=days, interval_ms=interval_ms),
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


def _level(src: str, tgt: str) -> bool:
    return _one(src, TABLE_SUM) == _one(tgt, TABLE_SUM)


def _first_tick(day: dt.date, symbol: str = "ES") -> str:
    return (f"(SELECT min(time) FROM tick_data WHERE symbol = '{symbol}' AND time >= '{day}' "
            f"AND time < '{day + dt.timedelta(days=1)}')")


CHANGES = {
    "new": ["INSERT INTO tick_data (time, symbol, bid_price, ask_price, last_price, volume) "
            "SELECT max(time) + n * interval '1 s', 'ES', 1, 2, 1.5, 1 FROM tick_data, "
            "generate_series(1, 20) n GROUP BY n"],
    "late": [f"INSERT INTO tick_data (time, symbol, bid_price, ask_price, last_price, volume) "
             f"SELECT '{_ago(3)} 10:00:00+00'::timestamptz + n * interval '10 ms', 'NQ', 1, 2, "
             f"1.5, 2 FROM generate_series(1, 50) n"],
    "update": [f"UPDATE tick_data SET trade_id = '{uuid.uuid4()}', last_price = last_price + 0.25 "
               f"WHERE symbol = 'ES' AND time = {_first_tick(_ago(2))}"],
    "delete": [f"DELETE FROM tick_data WHERE symbol = 'NQ' AND time IN (SELECT time FROM "
               f"tick_data WHERE symbol = 'NQ' AND time >= '{_ago(4)}' ORDER BY time LIMIT 3)"],
}


@pytest.mark.parametrize("kinds", [["new"], ["late"], ["update"], ["delete"],
                                   ["new", "late", "update", "delete"]])
def test_one_pass_makes_the_pair_identical_after_each_change_kind(make_db, kinds) -> None:
    src, tgt = _pair(make_db)
    for kind in kinds:
        _exec(src, *CHANGES[kind])
    assert not _level(src, tgt)
    res = syncing.sync(src, tgt, progress=False)
    assert not res.level and res.days_copied == len(res.differing) >= 1
    assert _level(src, tgt), kinds  # order-independent checksum of every row
    assert res.rows_digested == _one(src, "SELECT count(*) FROM tick_data")[0]
    again = syncing.sync(src, tgt, progress=False)  # converged: nothing left to copy
    assert again.level and again.rows_copied == 0 and again.days_copied == 0
    results = checks.run(tgt, source_url=src, progress=False)
    assert [r.status for r in results if r.check == "reconcile"] == ["ok"]
    assert syncing.last_level(tgt) is not None


def test_a_corrected_tick_was_a_loop_for_migrate_and_is_one_pass_for_sync(make_db) -> None:
    """The issue's report: the count-keyed batches never copy a changed row again."""
    src, tgt = _pair(make_db, days=2, start=3)
    _exec(src, *CHANGES["update"])
    with pytest.raises(MigrationError, match=r"verification failed for 1 symbol-day.*'tsj sync'"):
        migrate.run(src, tgt, progress=False)
    assert main(["sync", "--source", src, "--target", tgt]) == 0
    migrate.run(src, tgt, progress=False)  # and migrate agrees again
    assert _level(src, tgt)


def test_differences_name_the_column_and_both_values(make_db) -> None:
    src, tgt = _pair(make_db, days=1, start=2)
    trade = str(uuid.uuid4())
    was = _one(src, f"SELECT trade_id::text FROM tick_data WHERE symbol = 'ES' "
                    f"AND time = {_first_tick(_ago(2))}")[0]
    _exec(src, f"UPDATE tick_data SET trade_id = '{trade}' WHERE symbol = 'ES' "
               f"AND time = {_first_tick(_ago(2))}",
          "DELETE FROM tick_data WHERE symbol = 'ES' AND time = (SELECT max(time) FROM "
          "tick_data WHERE symbol = 'ES')")
    d = syncing.differences(src, tgt, symbol="ES", day=_ago(2))
    changed = d[d["change"] == "updated"]
    assert list(changed["column"]) == ["trade_id"]
    assert changed["source"].iloc[0] == trade and changed["target"].iloc[0] == was
    assert list(d[d["change"] == "extra on target"]["column"]) == ["(row)"]
    assert syncing.differences(src, src, symbol="ES", day=_ago(2)).empty


def test_a_whole_day_deleted_at_the_source_goes_from_the_target(make_db) -> None:
    src, tgt = _pair(make_db, days=2)
    _exec(src, f"DELETE FROM tick_data WHERE symbol = 'NQ' AND time >= '{_ago(4)}' "
               f"AND time < '{_ago(3)}'")
    res = syncing.sync(src, tgt, progress=False)
    assert res.days_deleted == 1 and res.days_copied == 0
    assert _level(src, tgt)


def test_a_writer_during_and_between_passes(make_db) -> None:
    """Passes under a writer at a fixed rate never corrupt; once it stops, one pass levels."""
    src, tgt = _pair(make_db, days=2, start=2)
    with Writer(src, symbols=["ES", "NQ"], interval_ms=50) as writer:
        time.sleep(0.3)
        _exec(src, *CHANGES["update"])
        first = syncing.sync(src, tgt, progress=False)
        time.sleep(0.3)
        second = syncing.sync(src, tgt, progress=False)
    assert writer.written > 0 and first.days_copied >= 1 and second.rows_copied > 0
    _exec(src, *CHANGES["late"])  # between runs
    syncing.sync(src, tgt, progress=False)
    assert _level(src, tgt)


def _sync_checkpoints(url: str) -> int:
    return _one(url, "SELECT count(*) FROM tsj_migration_batches WHERE plan_key LIKE 'sync-%'")[0]


def test_a_catch_up_killed_in_the_middle_resumes_exact(make_db) -> None:
    src, tgt = _pair(make_db, days=12, start=13, symbols=("ES",), interval_ms=30_000)
    for k in range(1, 13):  # one corrected tick in each day
        _exec(src, f"UPDATE tick_data SET account_id = '{uuid.uuid4()}' WHERE symbol = 'ES' "
                   f"AND time = {_first_tick(_ago(k))}")
    proc = subprocess.Popen([sys.executable, "-m", "tsj_lab.cli", "sync", "--source", src,
                             "--target", tgt, "--batch-size", "200"],
                            env=os.environ | {"TSJ_NO_PROGRESS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _sync_checkpoints(tgt) < 20:
        assert proc.poll() is None, f"sync ended before the kill: {proc.stderr.read()!r}"  # type: ignore[union-attr]
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    killed = _sync_checkpoints(tgt)
    assert 20 <= killed < 12 * 15  # 2,880 rows a day in batches of 200: 15 a day
    res = syncing.sync(src, tgt, batch_size=200, progress=False)
    assert 0 < res.days_copied < 12  # the days copied before the kill are level
    assert _level(src, tgt)


def _compress(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        job = conn.execute("SELECT job_id FROM timescaledb_information.jobs "
                           "WHERE proc_name = 'policy_compression'").fetchone()[0]  # type: ignore[index]
        conn.execute("CALL run_job(%s)", [job])


def test_a_correction_into_a_compressed_day_lands(make_db) -> None:
    src, tgt = _pair(make_db, days=2, start=41, interval_ms=30_000)
    _compress(tgt)
    assert _one(tgt, "SELECT count(*) FILTER (WHERE is_compressed) FROM "
                     "timescaledb_information.chunks WHERE hypertable_name = 'tick_data'")[0] == 2
    # TimescaleDB's DML limit, lowered so that a day's re-copy exceeds it (as a day of the
    # story's 345,600 ticks exceeds the default 100,000): the batch lifts it for itself
    db = _one(tgt, "SELECT current_database()")[0]
    _exec(tgt, f"ALTER DATABASE {db} SET timescaledb.max_tuples_decompressed_per_dml_transaction = 100",
          f"ALTER DATABASE {db} SET timescaledb.enable_compressed_direct_batch_delete = off")
    _exec(src, f"UPDATE tick_data SET last_price = last_price + 1 WHERE symbol = 'NQ' "
               f"AND time = {_first_tick(_ago(40), 'NQ')}")
    res = syncing.sync(src, tgt, progress=False)
    assert res.days_copied == 1 and _level(src, tgt)


def test_the_swapped_and_the_newer_target_guards(make_db) -> None:
    src, tgt = _pair(make_db, days=1, start=2)
    with pytest.raises(SchemaError, match="not swapped"):
        syncing.sync(tgt, src)
    with pytest.raises(SchemaError, match="--reverse copies from the hypertable"):
        syncing.sync(src, tgt, reverse=True, since=str(_ago(2)))
    with pytest.raises(ValueError, match="needs --since"):
        syncing.sync(tgt, src, reverse=True)
    _exec(tgt, "INSERT INTO tick_data (time, symbol, volume) VALUES (now(), 'ES', 1)")
    with pytest.raises(MigrationError, match=r"newer than the source's newest.*--reverse"):
        syncing.sync(src, tgt)


def test_the_copy_back_after_a_flip(make_db) -> None:
    """The rollback: TimescaleDB took the writes after the flip; copied back into the
    plain table, which ends level with it from the flip on."""
    src, tgt = _pair(make_db, days=2, start=2)
    assert syncing.sync(src, tgt, progress=False).level
    flip = dt.datetime.now(dt.UTC)
    with Writer(tgt, symbols=["ES", "NQ"], interval_ms=100) as writer:  # the app writes TimescaleDB
        time.sleep(0.5)
    # one of the pre-flip ticks is corrected after the flip, on TimescaleDB
    _exec(tgt, "UPDATE tick_data SET trade_id = gen_random_uuid() WHERE symbol = 'ES' "
               "AND time = (SELECT max(time) FROM tick_data WHERE symbol = 'ES')")
    assert writer.written > 0
    back = syncing.sync(tgt, src, reverse=True, since=flip, progress=False)
    assert back.rows_copied >= writer.written and back.reverse
    assert _level(src, tgt)  # every row since the flip is back; older ones were level
    assert _one(src, "SELECT to_regclass('tsj_migration_batches')")[0] is None  # nothing of tsj's


def test_follow_keeps_the_newest_ticks_level_under_a_writer(make_db) -> None:
    src, tgt = _pair(make_db, days=1, start=1)
    stop = threading.Event()
    out: dict[str, following.FollowResult] = {}
    runner = threading.Thread(target=lambda: out.update(
        r=following.follow(src, tgt, interval=0.1, stop=stop)))
    with Writer(src, symbols=["ES", "NQ"], interval_ms=25) as writer:
        runner.start()
        time.sleep(2.0)
        # a tick corrected within the overlap lands too
        _exec(src, "UPDATE tick_data SET volume = 999 WHERE symbol = 'NQ' "
                   "AND time = (SELECT max(time) FROM tick_data WHERE symbol = 'NQ')")
        time.sleep(0.5)
    stop.set()
    runner.join()
    res = out["r"]
    assert len(res.steps) >= 5 and res.rows > 0 and len(res.lags) == len(res.steps)
    following.follow(src, tgt, max_steps=1)  # the writer stopped: one step levels the pair
    assert _level(src, tgt)
    assert writer.written > 0 and res.summary()["lag_n"] == len(res.steps)


def test_follow_refuses_an_empty_target_and_bad_values(make_db) -> None:
    src, tgt = make_db(timescale=False), make_db(timescale=True)
    schema.create_source(src)
    schema.provision(tgt)
    generate.load(src, TickSpec(("ES",), _ago(1), interval_ms=600_000), workers=1)
    with pytest.raises(MigrationError, match="target holds no ticks: run 'tsj migrate' first"):
        following.follow(src, tgt, max_steps=1)
    with pytest.raises(ValueError, match="interval=0 s"):
        following.follow(src, tgt, interval=0)


def test_cli_sync_and_follow(make_db, capsys: pytest.CaptureFixture[str]) -> None:
    src, tgt = _pair(make_db, days=1, start=2)
    _exec(src, *CHANGES["update"][:0], f"UPDATE tick_data SET volume = 7 WHERE symbol = 'NQ' "
                                       f"AND time = {_first_tick(_ago(2), 'NQ')}")
    assert main(["sync", "--source", src, "--target", tgt]) == 0
    out = capsys.readouterr().out
    assert "days_copied" in out and "updated" in out and "volume" in out
    assert main(["sync", "--source", src, "--target", tgt, "--json"]) == 0
    assert '"days_differing": 0' in capsys.readouterr().out
    assert main(["follow", "--source", src, "--target", tgt, "--steps", "2"]) == 0
    assert "lag_p95_s" in capsys.readouterr().out
    assert main(["sync", "--source", tgt, "--target", src]) == 1
    assert "not swapped" in capsys.readouterr().err


def test_sync_follow_and_cutover_through_a_transaction_pooler(make_db, pooler) -> None:
    """Supabase's port 6543: the lock is a transaction's, each batch and step one transaction,
    psycopg's prepared statements off (PgBouncer without prepared-statement support)."""
    src, tgt = _pair(make_db, days=1, start=1)
    psrc, ptgt = pooler.through(src), pooler.through(tgt)
    _exec(src, f"UPDATE tick_data SET volume = 7 WHERE symbol = 'NQ' "
               f"AND time = {_first_tick(_ago(1), 'NQ')}",
          "INSERT INTO tick_data (time, symbol, volume) "
          "SELECT max(time) + interval '1 s', 'ES', 1 FROM tick_data WHERE symbol = 'ES'")
    assert following.follow(psrc, ptgt, max_steps=3).rows > 0
    res = syncing.sync(psrc, ptgt, progress=False)
    assert res.days_copied == 1 and _level(src, tgt)
    r = cutover.readiness(psrc, ptgt)
    assert r.go, r.reasons
