"""Migration between two databases of the embedded server (the source without timescaledb)."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import psycopg
import pytest

from roles import drop_role, role_url

from tsj_lab import checks, migrate, queries
from tsj_lab.data import generate
from tsj_lab.migrate import paths as migrate_paths
from tsj_lab.lab import plots
from tsj_lab.provision import schema
from tsj_lab.cli import main
from tsj_lab.domain import TickSpec
from tsj_lab.errors import MigrationError, SchemaError

DAY = "2024-01-02"


def _pair(make_db: Callable[..., str], *, symbols: tuple[str, ...] = ("ES", "BTCUSD"),
          days: int = 1, interval_ms: int = 5000) -> tuple[str, str]:
    src, tgt = make_db(timescale=False), make_db(timescale=True)
    schema.create_source(src)
    schema.provision(tgt)
    generate.load(src, TickSpec(symbols, DAY, days=days, interval_ms=interval_ms), workers=1)
    return src, tgt


def _one(url: str, query: str, params: dict | None = None) -> object:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query, params).fetchone()[0]  # type: ignore[index]


def _exec(url: str, *statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for stmt in statements:
            conn.execute(stmt)


def test_migrate_copies_everything_and_verifies(make_db) -> None:
    src, tgt = _pair(make_db, days=2)
    res = migrate.run(src, tgt, include_expired=True, batch_size=5000, workers=2)
    assert res.ok and res.source_rows == res.copied_rows == 2 * 2 * 17_280
    assert res.quarantined_rows == 0 and res.skipped == 0
    assert res.batches == 2 * 2 * 4  # 17,280 rows a symbol-day in slices of <= 5000
    assert _one(tgt, "SELECT count(*) FROM tick_data") == _one(src, "SELECT count(*) FROM tick_data")
    v = res.verification
    assert len(v) == 4 and (v["status"] == "ok").all()
    assert (v["checksum_source"] == v["checksum_target"]).all()
    assert res.history["cumulative_rows"].iloc[-1] == res.source_rows
    fig = plots.migration_throughput(res.history)
    assert [len(t.x) for t in fig.data] == [res.batches, res.batches]
    # resuming a finished plan copies nothing
    again = migrate.run(src, tgt, include_expired=True, batch_size=5000)
    assert again.skipped == again.batches and again.source_rows == 0 and again.ok
    # the candle views were brought up to date: they equal a recompute of the ticks
    assert res.candles_refreshed == list(schema.CANDLE_VIEWS)
    assert again.candles_refreshed == []
    for view in schema.CANDLE_VIEWS:
        assert schema.candle_differences(tgt, view) == 0, view
    assert _one(tgt, "SELECT sum(tick_count) FROM candle_1h") == 2 * 2 * 17_280


def test_window_and_symbols_limit_the_copy(make_db) -> None:
    src, tgt = _pair(make_db, days=2)
    res = migrate.run(src, tgt, include_expired=True, batch_size=10_000, since="2024-01-03T06:00",
                      symbols="ES")
    assert res.copied_rows == 17_280 * 3 // 4
    assert _one(tgt, "SELECT count(DISTINCT symbol) FROM tick_data") == 1
    assert len(res.verification) == 1


def test_dry_run_counts_and_writes_nothing(make_db) -> None:
    src, tgt = _pair(make_db)
    before = _one(tgt, "SELECT count(*) FROM pg_class")
    d = migrate.dry_run(src, tgt, include_expired=True, batch_size=4000)
    assert d.rows == 2 * 17_280 and d.batches == 2 * 5 and d.done == 0
    assert sorted(d.counts["symbol"]) == ["BTCUSD", "ES"] and (d.counts["rows"] == 17_280).all()
    assert d.rate > 0 and d.rate_from == "sample" and d.estimated_s > 0
    assert _one(tgt, "SELECT count(*) FROM tick_data") == 0
    assert _one(tgt, "SELECT count(*) FROM pg_class") == before
    bare = make_db(timescale=True)  # counting needs no provisioned target
    d = migrate.dry_run(src, bare, include_expired=True, batch_size=4000)
    assert d.rows == 2 * 17_280 and d.rate_from.startswith("default (target not provisioned")
    assert _one(bare, "SELECT to_regclass('tick_data')") is None


def test_planted_anomalies_are_carried_counted_or_quarantined(make_db) -> None:
    src, tgt = _pair(make_db)
    _exec(src,
          # three duplicates: legal ticks, carried
          "INSERT INTO tick_data SELECT * FROM tick_data WHERE symbol = 'ES' ORDER BY time LIMIT 3",
          # a crossed quote (bid > ask) with a NULL last price: carried
          "INSERT INTO tick_data (time, symbol, bid_price, ask_price, volume) "
          "VALUES ('2024-01-02 10:00:00.1+00', 'ES', 4700, 4699.75, 1)",
          # a quote with NULL prices: carried
          "INSERT INTO tick_data (time, symbol, volume) VALUES ('2024-01-02 11:00:00.1+00', 'BTCUSD', 2)",
          # a negative volume the target's CHECK refuses: quarantined by the bisection
          "INSERT INTO tick_data (time, symbol, bid_price, ask_price, last_price, volume) "
          "VALUES ('2024-01-02 12:00:00.1+00', 'ES', 1, 2, 1, -5)",
          # times the hypertable (or tsj) cannot take: quarantined as odd rows
          "INSERT INTO tick_data (time, symbol, volume) VALUES ('-infinity', 'ES', 1), "
          "('infinity', 'BTCUSD', 1), ('20000-01-01 00:00+00', 'ES', 1)")
    _exec(tgt, "ALTER TABLE tick_data ADD CONSTRAINT volume_not_negative CHECK (volume >= 0)")
    res = migrate.run(src, tgt, include_expired=True, batch_size=3000)
    assert res.anomalies == {"crossed_quotes": 1, "null_prices": 5, "duplicates": 3}
    assert res.quarantined_rows == 4
    total = _one(src, "SELECT count(*) FROM tick_data")
    assert res.source_rows == total == res.copied_rows + res.quarantined_rows
    assert _one(tgt, "SELECT count(*) FROM tick_data") == total - 4
    with psycopg.connect(tgt) as conn:
        reasons = dict(conn.execute("SELECT volume, reason FROM tsj_migration_quarantine "
                                    "WHERE volume < 0").fetchall())
        odd = sorted(r[0] for r in conn.execute(
            "SELECT reason FROM tsj_migration_quarantine WHERE volume >= 0"))
    assert "volume_not_negative" in reasons[-5]
    assert odd == ["time is -infinity", "time is infinity",
                   "time outside the tick domain 0001-01-02..9999-12-31 UTC"]
    assert res.ok  # source = target + quarantine, day by day, checksums included
    # duplicates and the crossed quote arrived as they were
    dup = "SELECT count(*) FROM tick_data WHERE symbol = 'ES' AND time = %(t)s"
    first = _one(src, "SELECT min(time) FROM tick_data WHERE symbol = 'ES' AND time > '2000-01-01'")
    assert _one(tgt, dup, {"t": first}) == _one(src, dup, {"t": first}) == 2
    assert _one(tgt, "SELECT count(*) FROM tick_data WHERE bid_price > ask_price") == 1


def test_a_damaged_target_fails_verification_naming_the_range(make_db) -> None:
    src, tgt = _pair(make_db)
    migrate.run(src, tgt, include_expired=True, batch_size=10_000)
    # by time, not ctid: the old days landed in compressed chunks (no ctid there)
    _exec(tgt, "DELETE FROM tick_data WHERE symbol = 'BTCUSD' AND time = "
               "(SELECT min(time) FROM tick_data WHERE symbol = 'BTCUSD')")
    v = migrate.verify(src, tgt)
    assert list(v.loc[v["status"] != "ok", "symbol"]) == ["BTCUSD"]
    with pytest.raises(MigrationError, match=r"1 symbol-day.*BTCUSD 2024-01-02 \(17280 source / 17279"):
        migrate.raise_on_mismatch(v)
    # a changed value with the same count is caught by the checksum
    _exec(tgt, "UPDATE tick_data SET volume = volume + 1 WHERE symbol = 'ES' AND time = "
               "(SELECT min(time) FROM tick_data WHERE symbol = 'ES')")
    v = migrate.verify(src, tgt)
    assert sorted(v.loc[v["status"] != "ok", "symbol"]) == ["BTCUSD", "ES"]


def _checkpoints(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('tsj_migration_batches')").fetchone()[0] is None:
            return 0
        return conn.execute("SELECT count(*) FROM tsj_migration_batches").fetchone()[0]  # type: ignore[index]


def _kill_after(args: list[str], tgt: str, *, checkpoints: int, timeout: float) -> None:
    """`tsj ARGS` in a subprocess, SIGKILLed once the target holds ``checkpoints`` batches."""
    proc = subprocess.Popen([sys.executable, "-m", "tsj_lab.cli", *args],
                            env=os.environ | {"TSJ_NO_PROGRESS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while _checkpoints(tgt) < checkpoints:
        assert proc.poll() is None, f"migrate ended before the kill: {proc.stderr.read()!r}"
        assert time.monotonic() < deadline, f"no {checkpoints} checkpoints after {timeout:g} s"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL


def test_sigkill_mid_run_then_rerun_ends_exact(make_db) -> None:
    src, tgt = _pair(make_db, interval_ms=4000)
    _exec(src, "INSERT INTO tick_data SELECT * FROM tick_data WHERE symbol = 'ES' "
               "AND time < '2024-01-02 00:01+00'")  # 15 duplicated ticks must stay doubled
    _kill_after(["migrate", "--source", src, "--target", tgt, "--batch-size", "300",
                 "--include-expired"], tgt, checkpoints=5, timeout=120)
    done = _checkpoints(tgt)
    total = migrate.plan(src, batch_size=300).batches
    assert 5 <= done < len(total)
    # atomic: the target holds exactly the rows its checkpoints cover, no half batch
    assert _one(tgt, "SELECT count(*) FROM tick_data") == _one(
        tgt, "SELECT sum(copied_rows) FROM tsj_migration_batches")
    assert main(["migrate", "--source", src, "--target", tgt, "--include-expired",
                 "--batch-size", "300"]) == 0
    assert _checkpoints(tgt) == len(total)
    v = migrate.verify(src, tgt)
    assert (v["status"] == "ok").all() and (v["rows_source"] == v["rows_target"]).all()
    dups = ("SELECT count(*) FROM (SELECT 1 FROM tick_data GROUP BY time, symbol, bid_price, "
            "ask_price, last_price, volume, source, trade_id, account_id HAVING count(*) = 2) d")
    assert _one(tgt, dups) == _one(src, dups) == 15


def test_cli_dry_run_and_bad_values(make_db, capsys: pytest.CaptureFixture[str]) -> None:
    src, tgt = _pair(make_db, symbols=("NQ",), interval_ms=60_000)
    cli = ["migrate", "--source", src, "--target", tgt, "--include-expired"]  # 2024 dates
    assert main([*cli, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "2024-01-02  NQ      1440" in out and "nothing was written" in out
    assert _one(tgt, "SELECT to_regclass('tsj_migration_batches')") is None
    assert main([*cli, "--batch-size", "0"]) == 1
    assert "batch_size=0" in capsys.readouterr().err
    assert main([*cli, "--since", "soon"]) == 1
    assert "since 'soon' is not a date or time" in capsys.readouterr().err
    # a misspelt symbol is named, with the ones the source has, instead of copying nothing
    assert main([*cli, "--symbols", "NQ,NQQ"]) == 1
    assert "symbol(s) NQQ have no ticks" in (err := capsys.readouterr().err) and "it has NQ" in err
    assert main([*cli, "--symbols", "NQ", "--since", "2024-02-01", "--dry-run"]) == 1
    assert "it has no ticks there" in capsys.readouterr().err
    assert _one(tgt, "SELECT to_regclass('tsj_migration_batches')") is None
    assert main([*cli, "--since", "2024-02-01"]) == 0
    assert "nothing to migrate: the source has no ticks in the window" in capsys.readouterr().out


def test_missing_tables_name_the_fix(make_db) -> None:
    plain, empty = make_db(timescale=False), make_db(timescale=True)
    with pytest.raises(SchemaError, match="'tick_data' not found on the source"):
        migrate.plan(plain)
    schema.create_source(plain)
    with pytest.raises(SchemaError, match="target; run 'tsj provision'"):
        migrate.run(plain, empty, include_expired=True)


def test_a_table_is_never_migrated_onto_itself(make_db) -> None:
    src, _ = _pair(make_db, symbols=("ES",), interval_ms=60_000)
    with pytest.raises(MigrationError, match="source and target are the same table"):
        migrate.run(src, src, include_expired=True)
    assert _one(src, "SELECT count(*) FROM tick_data") == 1440


def test_swapped_source_and_target_are_refused(make_db) -> None:
    """A plain target is the source named as the target: a run would replace its days."""
    src, tgt = _pair(make_db, symbols=("ES",), interval_ms=60_000)
    migrate.run(src, tgt, include_expired=True)
    _exec(tgt, "DELETE FROM tick_data WHERE time IN (SELECT time FROM tick_data "
               "ORDER BY time LIMIT 7)")
    with pytest.raises(SchemaError, match=r"target .* is not a hypertable.*swapped"):
        migrate.dry_run(tgt, src, include_expired=True)
    with pytest.raises(SchemaError, match=r"target .* is not a hypertable.*swapped"):
        migrate.run(tgt, src, include_expired=True)
    assert _one(src, "SELECT count(*) FROM tick_data") == 1440  # the source lost nothing


def test_a_looser_source_schema_is_cast_to_the_target(make_db) -> None:
    """A Supabase table with float prices and a naive timestamp still migrates exactly."""
    src, tgt = make_db(timescale=False), make_db(timescale=True)
    schema.provision(tgt)
    _exec(src, "SET TimeZone = 'UTC'",
          "CREATE TABLE tick_data (time timestamp, symbol varchar(16), bid_price float8, "
          "ask_price float8, last_price float8, volume int, source text, trade_id uuid, "
          "account_id uuid)",
          "INSERT INTO tick_data SELECT '2024-01-02'::timestamp + n * interval '1 s', 'ES', "
          "4000 + n * 0.25, 4000.25 + n * 0.25, 4000 + n * 0.25, 1 + n % 7, 'feed', NULL, NULL "
          "FROM generate_series(0, 1999) n")
    res = migrate.run(src, tgt, include_expired=True, batch_size=500)
    assert res.copied_rows == 2000 and res.quarantined_rows == 0
    assert _one(tgt, "SELECT sum(bid_price) FROM tick_data") == sum(
        4000 + n * 0.25 for n in range(2000))


def test_a_source_failure_is_one_line_naming_the_batch(make_db) -> None:
    src, tgt = make_db(timescale=False), make_db(timescale=True)
    schema.provision(tgt)
    _exec(src, "CREATE TABLE tick_data (time timestamptz, symbol text, bid_price float8, "
               "ask_price float8, last_price float8, volume int, source text, trade_id uuid, "
               "account_id uuid)",
          "INSERT INTO tick_data (time, symbol, bid_price) VALUES ('2024-01-02 10:00+00', 'ES', 1e15)")
    with pytest.raises(MigrationError, match=r"batch ES \[2024-01-02.*failed: numeric field overflow"):
        migrate.run(src, tgt, include_expired=True)


def test_target_only_days_are_listed_not_failed(make_db) -> None:
    src, tgt = _pair(make_db, symbols=("ES",), interval_ms=60_000)
    generate.load(tgt, TickSpec(["NQ"], "2024-03-01", interval_ms=60_000))  # not in source
    res = migrate.run(src, tgt, include_expired=True)
    assert res.ok and res.summary()["target_only_days"] == 1 and res.summary()["mismatched_days"] == 0
    v = res.verification.set_index("symbol")
    assert v.loc["NQ", "status"] == "target_only" and v.loc["NQ", "rows_target"] == 1440
    assert v.loc["ES", "status"] == "ok"


@pytest.mark.slow
def test_a_changed_source_day_is_redone_alone_and_never_skipped_stale(make_db) -> None:
    src, tgt = _pair(make_db, days=2, interval_ms=20_000)
    first = migrate.run(src, tgt, include_expired=True, batch_size=2000)
    extra = "INSERT INTO tick_data (time, symbol, volume) VALUES ('2024-01-03 12:00:00.5+00', 'ES', 9)"
    _exec(src, extra)  # the live source got one more tick on one symbol-day
    grown = migrate.run(src, tgt, include_expired=True, batch_size=2000)
    assert grown.ok and grown.source_rows == 4321 + 0  # only ES 2024-01-03 (3 batches) redone
    assert grown.skipped == first.batches - 3
    _exec(src, "DELETE FROM tick_data WHERE volume = 9 AND time = '2024-01-03 12:00:00.5+00'")
    # same keys as the first run: not skipped
    back = migrate.run(src, tgt, include_expired=True, batch_size=2000)
    assert back.ok and back.skipped == first.batches - 3


def _ago(days: int) -> dt.date:
    return dt.datetime.now(dt.UTC).date() - dt.timedelta(days=days)


@pytest.mark.slow
def test_days_past_the_targets_retention_are_skipped_and_reported(make_db) -> None:
    src, tgt = make_db(timescale=False), make_db(timescale=True)
    schema.create_source(src)
    schema.provision(tgt)  # retention policy: 90 days
    generate.load(src, TickSpec(["ES"], _ago(95), days=3, interval_ms=600_000), workers=1)
    generate.load(src, TickSpec(["ES"], _ago(3), days=2, interval_ms=600_000), workers=1)
    d = migrate.dry_run(src, tgt)
    assert d.expired is not None and (d.expired.days, d.expired.rows) == (3, 3 * 144)
    assert d.rows == 2 * 144
    res = migrate.run(src, tgt)
    e = res.expired
    assert e is not None and not e.included and (e.days, e.rows) == (3, 3 * 144)
    assert (e.first_day, e.last_day) == (_ago(95), _ago(93))
    assert e.kept_since.date() == _ago(90) and "--include-expired" in e.describe()
    assert res.copied_rows == 2 * 144 and res.ok and len(res.verification) == 2
    assert _one(tgt, "SELECT count(*) FROM tick_data") == 2 * 144
    summary = res.summary()
    assert summary["expired_rows"] == 3 * 144 and not summary["expired_included"]
    # the integrity suite compares the kept window and says what it left out
    rec = [r for r in checks.run(tgt, source_url=src, progress=False) if r.check == "reconcile"]
    assert [r.status for r in rec] == ["ok"] and "skipped 3 source symbol-day(s)" in rec[0].detail
    # asked for: copied and verified too
    both = migrate.run(src, tgt, include_expired=True)
    assert both.expired is not None and both.expired.included and both.copied_rows == 3 * 144
    assert both.ok and len(both.verification) == 5
    # a target without a retention policy has nothing to skip
    bare = make_db(timescale=True)
    schema.provision(bare)
    _exec(bare, "SELECT remove_retention_policy('tick_data')")
    assert migrate.run(src, bare).expired is None
    assert _one(bare, "SELECT count(*) FROM tick_data") == 5 * 144


def test_cli_reports_skipped_days(make_db, capsys: pytest.CaptureFixture[str]) -> None:
    src, tgt = make_db(timescale=False), make_db(timescale=True)
    schema.create_source(src)
    schema.provision(tgt)
    generate.load(src, TickSpec(["ES"], _ago(100), days=2, interval_ms=600_000), workers=1)
    assert main(["migrate", "--source", src, "--target", tgt]) == 0
    out = capsys.readouterr().out
    assert f"skipped 2 day(s), 288 ticks ({_ago(100)}..{_ago(99)})" in out
    assert "nothing to migrate" in out and "inside the target's retention" in out


def test_measure_paths_writes_every_way_compressed(make_db) -> None:
    url = make_db(timescale=True)
    df = migrate_paths.measure(url, days=2, per_day=3000, runs=1, symbols=("ES",))
    assert list(df["way"]) == list(migrate_paths.WAYS)
    assert df["supported"].all() and df["compressed"].all(), df.to_dict("records")
    assert (df["p50_rows_per_s"] > 0).all() and (df["bytes"] > 0).all()
    assert (df["runs"] == 1).all() and (df["chunks"] == 2).all()
    rows = dict(zip(df["way"], df["rows"]))
    assert rows == {"policy": 6000, "per_day": 6000, "direct": 6000, "into_compressed": 3000}
    # the scratch schema is gone
    assert _one(url, "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'tsj_paths_%'") == 0
    with pytest.raises(ValueError, match="unknown way"):
        migrate_paths.measure(url, ways=("teleport",))


def _compress(url: str) -> None:
    """The compression policy's job, run once as the scheduler would."""
    with psycopg.connect(url, autocommit=True) as conn:
        job = conn.execute("SELECT job_id FROM timescaledb_information.jobs "
                           "WHERE proc_name = 'policy_compression'").fetchone()[0]  # type: ignore[index]
        conn.execute("CALL run_job(%s)", [job])


@pytest.mark.slow
def test_100_days_survive_sigkill_and_compression_and_verify(make_db) -> None:
    """Issue 12's 'done when': 100 days into a timescale target, killed mid-run, the
    compression job run in between, re-run: exact inside the retention window."""
    src, tgt = make_db(timescale=False), make_db(timescale=True)
    schema.create_source(src)
    schema.provision(tgt)
    generate.load(src, TickSpec(["ES"], _ago(100), days=100, interval_ms=600_000), workers=1)
    args = ["migrate", "--source", src, "--target", tgt, "--batch-size", "100",
            "--direct-compress"]
    _kill_after(args, tgt, checkpoints=60, timeout=60)
    assert _checkpoints(tgt) < 180  # killed mid-run: 90 kept days in 2 batches each
    assert _one(tgt, "SELECT count(*) FROM tick_data") == _one(
        tgt, "SELECT sum(copied_rows) FROM tsj_migration_batches")
    _compress(tgt)  # the compression job in between: the copied old days compressed
    assert main(args) == 0
    _compress(tgt)
    assert _one(tgt, "SELECT count(*) FROM timescaledb_information.chunks "
                     "WHERE hypertable_name = 'tick_data' AND NOT is_compressed "
                     "AND range_end <= now() - interval '30 days'") == 0
    # a day changed at the source: its batches are redone over a compressed chunk. Here
    # every DELETE of compressed rows decompresses them (no direct batch delete) and a
    # transaction may decompress 100 rows: a batch lifts the cap for itself
    _exec(tgt, *(f"ALTER DATABASE {_one(tgt, 'SELECT current_database()')} SET {s}"
                 for s in ("timescaledb.enable_compressed_direct_batch_delete = off",
                           "timescaledb.max_tuples_decompressed_per_dml_transaction = 100")))
    _exec(src, f"INSERT INTO tick_data (time, symbol, bid_price, ask_price, last_price, volume) "
               f"VALUES ('{_ago(40)} 12:00:00.5+00', 'ES', 1, 2, 1.5, 1)")
    # the cap, without the batch's lift
    with pytest.raises(psycopg.errors.ConfigurationLimitExceeded):
        _exec(tgt, f"DELETE FROM tick_data WHERE time >= '{_ago(40)}' AND time < '{_ago(39)}'")
    res = migrate.run(src, tgt, batch_size=100, direct_compress=True)
    assert res.skipped == 178 and res.copied_rows == 145 and res.direct_compress
    # the default (plain COPY, see docs/migration.md) over the same compressed day
    _exec(src, f"DELETE FROM tick_data WHERE time = '{_ago(40)} 12:00:00.5+00'")
    res = migrate.run(src, tgt, batch_size=100)
    assert res.copied_rows == 144 and not res.direct_compress
    kept = _ago(90)
    e = res.expired
    assert e is not None and (e.days, e.rows, e.first_day, e.last_day) == (
        10, 10 * 144, _ago(100), _ago(91))
    v = res.verification
    assert res.ok and len(v) == 90 and (v["status"] == "ok").all()
    assert (v["rows_source"] == v["rows_target"]).all() and v["day"].min() == kept
    n_src = _one(src, "SELECT count(*) FROM tick_data WHERE time >= %(d)s::date::timestamptz",
                 {"d": kept})
    with psycopg.connect(tgt, autocommit=True) as conn:
        total, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT (time, symbol)) FROM tick_data").fetchone()  # type: ignore[misc]
    assert total == distinct == n_src == 90 * 144  # nothing doubled, nothing expired
    results = checks.run(tgt, source_url=src, progress=False)
    failed = [(r.check, r.observed, r.detail) for r in results if r.status == "fail"]
    assert not failed, failed
    rec = [r for r in results if r.check == "reconcile"]
    assert rec[0].status == "ok" and "skipped 10 source symbol-day(s)" in rec[0].detail


def test_a_role_that_row_level_security_filters_is_refused_before_copying(
        make_db, server, capsys) -> None:
    """Supabase's RLS: a role that sees one symbol of two would copy a part and verify it
    against the same filtered view; tsj refuses before copying anything, in one line."""
    src, tgt = _pair(make_db)
    role, password, as_role = role_url(src, server)
    _exec(src, f'GRANT SELECT ON tick_data TO "{role}"',
          "ALTER TABLE tick_data ENABLE ROW LEVEL SECURITY",
          f"""CREATE POLICY only_es ON tick_data FOR SELECT TO "{role}" USING (symbol = 'ES')""")
    try:
        # the filter is real: this role sees half of the rows, without an error
        assert _one(as_role, "SELECT count(DISTINCT symbol) FROM tick_data") == 1
        with pytest.raises(SchemaError, match=r"row-level security filters table 'tick_data' "
                                              rf"on the source for role '{role}'.*BYPASSRLS"):
            migrate.run(as_role, tgt, include_expired=True)
        assert _one(tgt, "SELECT count(*) FROM tick_data") == 0  # nothing copied
        assert main(["migrate", "--source", as_role, "--target", tgt, "--include-expired"]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("tsj: error:") and "\n" not in err and "row-level security" in err
        assert password not in err and "Traceback" not in err
        with pytest.raises(SchemaError, match="row-level security filters table 'tick_data' "
                                              "on the source"):
            checks.run(tgt, source_url=as_role)
        # the fix the message names works: BYPASSRLS reads (and copies) every row
        _exec(server.url("postgres"), f'ALTER ROLE "{role}" BYPASSRLS')
        res = migrate.run(as_role, tgt, include_expired=True)
        assert res.ok and res.copied_rows == _one(src, "SELECT count(*) FROM tick_data")
    finally:
        drop_role(server, role, src)


def test_a_filtered_plain_target_is_refused_too(make_db, server) -> None:
    """TimescaleDB refuses RLS on a hypertable with columnstore, but a plain tick_data (the
    copy back of a rollback) can be filtered: the same guard reads it."""
    tgt = make_db(timescale=False)
    schema.create_source(tgt)
    role, _password, as_role = role_url(tgt, server)
    _exec(tgt, f'GRANT ALL ON tick_data TO "{role}"',
          "ALTER TABLE tick_data ENABLE ROW LEVEL SECURITY",
          f"""CREATE POLICY only_es ON tick_data TO "{role}" USING (symbol = 'ES')""")
    try:
        with psycopg.connect(as_role, autocommit=True) as conn:
            with pytest.raises(SchemaError, match="row-level security filters table 'tick_data' "
                                                  "on the target"):
                schema.require_unfiltered(conn, "tick_data", side="target")
        with psycopg.connect(tgt, autocommit=True) as conn:  # the owner reads every row
            schema.require_unfiltered(conn, "tick_data", side="target")
    finally:
        drop_role(server, role, tgt)


def test_a_150ms_role_timeout_on_the_source_migrates_and_checks_exactly(make_db, server,
                                                                        capsys) -> None:
    """Issue 26: with a read-only source role whose statement_timeout is 150 ms, a digest of
    the window is one statement the limit ends; tsj's statements are one symbol-day each,
    under tsj's own SET LOCAL limit, so migrate and check both finish exactly."""
    src, tgt = _pair(make_db, symbols=("ES", "NQ"), days=3, interval_ms=1000)
    role, password, as_role = role_url(src, server)
    _exec(src, f'GRANT SELECT ON tick_data TO "{role}"')
    _exec(server.url("postgres"), f"""ALTER ROLE "{role}" SET statement_timeout = '150ms'""")
    try:
        # the limit is real: the window's digest as one statement (518,400 rows) is ended
        with psycopg.connect(as_role, autocommit=True) as conn:
            with pytest.raises(psycopg.errors.QueryCanceled):
                conn.execute(queries.compose("digest.day", table="tick_data"),
                             {"since": "-infinity", "until": "infinity", "symbols": None})
        assert main(["migrate", "--source", as_role, "--target", tgt, "--include-expired",
                     "--batch-size", "50000"]) == 0
        out, err = capsys.readouterr()
        assert "verified 6 symbol-day(s): source = target + quarantine" in out, err
        assert _one(tgt, "SELECT count(*) FROM tick_data") == 2 * 3 * 86_400
        main(["check", "--source", as_role, "--target", tgt, "--json"])
        out, err = capsys.readouterr()
        rec = [r for r in json.loads(out)["results"] if r["check"] == "reconcile"]
        assert err == "" and [r["status"] for r in rec] == ["ok"], (rec, err)
        assert "6 symbol-days, 518400 rows match" in rec[0]["observed"]
        assert password not in out + err
    finally:
        drop_role(server, role, src)
