"""The fetch workloads and the verdicts, end to end on a tiny data set in both databases."""

from __future__ import annotations

import datetime as dt
import re

import pandas as pd
import psycopg
import pytest

from tsj_lab import bench
from tsj_lab.bench import verdicts, workloads
from tsj_lab.domain import TickSpec


@pytest.fixture
def pair(make_db) -> tuple[list[bench.Database], bench.Dataset]:
    """A provisioned target and a plain source holding the same tiny data set (1 tick/min)."""
    return bench.prepare(make_db(timescale=True), make_db(timescale=False),
                         TickSpec(["ES", "NQ"], dt.date(2026, 1, 18), days=1, interval_ms=60_000, seed=3))


@pytest.mark.slow
def test_keyset_pages_cover_every_row_once(pair) -> None:
    dbs, ds = pair
    # Ticks sharing an instant are where paging by time alone would skip rows.
    with psycopg.connect(dbs[1].url, autocommit=True) as conn:
        conn.execute("INSERT INTO tick_data (time, symbol, last_price, volume) "
                     "SELECT time, symbol, last_price + 1, 7 FROM tick_data "
                     "WHERE symbol = 'ES' AND time < %s", (ds.start + dt.timedelta(minutes=30),))
    def walk(url: str) -> list[pd.DataFrame]:
        return list(workloads.pages(url, symbol="ES", start=ds.start, end=ds.end, size=7))

    for d, expected in ((dbs[0], 1440), (dbs[1], 1470)):
        walked = walk(d.url)
        got = pd.concat(walked)
        assert len(got) == expected
        assert not got.duplicated(["time", "last_price", "volume"]).any()
        assert got["time"].is_monotonic_increasing
        # a page ends at an instant boundary: no instant is split between two pages
        assert sum(p["time"].nunique() for p in walked) == got["time"].nunique()
        assert {len(p) for p in walked[:-1]} <= {7, 8}
    # History older than 30 days is compressed: the same walk over compressed chunks (whose
    # rows have no ctid to page by) returns the same ticks.
    with psycopg.connect(dbs[1].url, autocommit=True) as conn:
        compressed = conn.execute("SELECT count(compress_chunk(c)) FROM show_chunks('tick_data') c"
                                  ).fetchone()[0]
    assert compressed >= 1
    again = pd.concat(walk(dbs[1].url))
    pd.testing.assert_frame_equal(again.sort_values(["time", "last_price"]).reset_index(drop=True),
                                  got.sort_values(["time", "last_price"]).reset_index(drop=True))


def test_workloads_run_on_both_databases(pair) -> None:
    dbs, ds = pair
    windows = workloads.window_fetch(dbs, ds, windows=["1m", "1h", "1d"], samples=3, warmup=1)
    assert set(windows["db"]) == {"postgresql", "timescaledb"} and len(windows) == 6
    assert (windows["server_p50_ms"] > 0).all()
    assert windows.set_index(["db", "window"]).loc[("timescaledb", "1h"), "rows"] == 60
    paths = workloads.fetch_paths(dbs[1], ds, samples=2, warmup=0)
    assert set(paths["path"]) == {"psycopg_decimal", "psycopg_float", "adbc_arrow", "columns",
                                  "pandas_sqlalchemy", "jupysql"}
    assert (paths["rows"] == 60).all() and (paths["ratio"] > 0).all()
    assert (paths["n"] == 2).all() and (paths["server_n"] == 2).all()
    # the server figure is planning + execution, planning beside it; read_frame's path
    # against the generic plan it uses (direct: prepared)
    assert (paths["server_plan_p50_ms"] > 0).all()
    assert paths.set_index("path")["prepared"].to_dict()["columns"]
    fast = workloads.candle_paths(dbs[1], ds, samples=2, warmup=0)
    by_what = fast.set_index(["what", "path"])
    assert by_what["rows"].to_dict() == {
        (w, p): n for w, n in (("candles_1m_day", 1440), ("window_1h", 60), ("day", 1440))
        for p in ("columns", "adbc_arrow", "copy_numpy", "psycopg_prepared")
        if (w, p) != ("day", "psycopg_prepared")}
    assert (fast["ratio"] > 0).all() and (fast["server_n"] == 2).all()
    batches = workloads.batch_fetch(dbs, ds, sizes=[10, 50], samples=3, warmup=1)
    assert set(batches["rows"]) == {10.0, 50.0}
    candles = workloads.candles(dbs, ds, widths=["1m", "1h"], samples=2, warmup=0)
    by = candles.set_index(["db", "width", "source"])["rows"]
    assert by[("postgresql", "1m", "raw")] == by[("timescaledb", "1m", "view")] == 1440
    assert by[("timescaledb", "1h", "raw")] == 24
    clients = workloads.concurrency(dbs, ds, levels=[1, 3], queries_per_client=2)
    assert (clients["errors"] == 0).all()
    assert clients["peak_connections"].tolist() == [1, 3, 1, 3]  # all held at once
    table = verdicts.judge(windows=windows, paths=paths, candle=candles, clients=clients)
    assert {"AC8 window 1m", "AC8 window 1h", "goal: day read", "AC6 50 concurrent connections",
            "goal: 1h window to DataFrame", "goal: 1m candle view vs raw"} <= set(table["check"])
    # three clients measured: AC6 (50) is not judged either way
    assert table.set_index("check").loc["AC6 50 concurrent connections", "status"] == "warn"
    assert set(table["status"]) <= {"ok", "warn", "fail"}
    # each detail states the figure its target is about first, not only its ingredients
    detail = table.set_index("check")["detail"]
    measured = table.set_index("check")["measured"]
    assert detail["goal: 1m candle view vs raw"].startswith(
        f"{measured['goal: 1m candle view vs raw']:,.3g}x")
    for check in ("goal: 1h window to DataFrame", "goal: day of 1m candles to DataFrame",
                  "goal: day read to DataFrame"):
        assert detail[check].startswith(f"{measured[check]:,.3g}x server"), check
        assert "server p50" in detail[check] and re.search(r"n = [23]\b", detail[check])
        # a missed goal says by how much
        assert (table.set_index("check").loc[check, "status"] == "ok") != ("missed by" in detail[check])
    # what the analysts' own paths cost, in the same run, beside the goal's figure
    assert re.search(r"pandas\.read_sql [\d.]+x, %%sql [\d.]+x",
                     detail["goal: 1h window to DataFrame"])
    assert ("3 clients, 3 connected at once, 3 server connections, 0 errors"
            in detail["AC6 50 concurrent connections"])


def test_fifty_clients_hold_their_connections_at_once(pair) -> None:
    dbs, ds = pair
    clients = workloads.concurrency(dbs[1:], ds, levels=[50], queries_per_client=1)
    assert clients[["clients", "n", "errors", "peak_connections", "server_connections"]
                   ].values.tolist() == [[50, 50, 0, 50, 50]]
    table = verdicts.judge(clients=clients)
    assert table["status"].tolist() == ["ok"]


def test_clients_direct_and_through_pgbouncer_at_50_and_200(pair, pooler) -> None:
    """The bench's comparison: through the pooler, 200 clients share its 20 server connections.

    Direct runs at 50 only: 200 direct backends on the shared test server (max_connections
    200, other tests' connections beside) would measure the neighbours, not tsj.
    """
    dbs, ds = pair
    target = dbs[1]
    via = bench.Database(target.label, pooler.through(target.url), via="pgbouncer")
    got = pd.concat([workloads.concurrency([target], ds, levels=[50], queries_per_client=2),
                     workloads.concurrency([via], ds, levels=[50, 200], queries_per_client=2)])
    got = got.set_index(["via", "clients"])
    assert got.index.tolist() == [("direct", 50), ("pgbouncer", 50), ("pgbouncer", 200)]
    assert (got["errors"] == 0).all() and (got["n"] == got.index.get_level_values(1) * 2).all()
    assert (got["peak_connections"] == got.index.get_level_values(1)).all()
    assert got.loc[("direct", 50), "server_connections"] == 50
    assert 1 <= got.loc[("pgbouncer", 200), "server_connections"] <= pooler.pool_size
    table = verdicts.judge(clients=got.reset_index()).set_index("check")
    assert table.loc["AC6 50 concurrent connections via pgbouncer", "status"] == "ok"
    assert "50 clients, 50 connected at once, 50 server connections" in table.loc[
        "AC6 50 concurrent connections", "detail"]
