"""Windows against table size (bench/sizes.py): the tables grow, and compressed days are
measured and left as they were."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest

from tsj_lab.bench import sizes


def test_latency_by_size_grows_the_tables(make_db) -> None:
    target, source = make_db(timescale=True), make_db(timescale=False)
    sized = sizes.latency_by_size(target, source, steps=[1, 2], symbols=["ES"],
                                  start=dt.date(2026, 1, 18), interval_ms=120_000, seed=3,
                                  windows=["1h"], samples=2, warmup=0, compress=False)
    assert sized[["db", "days"]].values.tolist() == [["postgresql", 1], ["timescaledb", 1],
                                                     ["postgresql", 2], ["timescaledb", 2]]
    assert (sized["workload"] == "window_by_size").all() and (sized["rows"] == 30).all()
    grew = sized.pivot_table(index="days", columns="db", values="table_bytes")
    assert (grew.loc[2] > grew.loc[1]).all()
    with pytest.raises(ValueError, match="growing day counts"):
        sizes.latency_by_size(target, source, steps=[2, 1], symbols=["ES"],
                              start=dt.date(2026, 1, 18), interval_ms=120_000, seed=3)


def test_latency_by_size_compresses_and_leaves_the_table_as_it_was(make_db) -> None:
    target, source = make_db(timescale=True), make_db(timescale=False)
    got = sizes.latency_by_size(target, source, steps=[1, 2], symbols=["ES"],
                                start=dt.date(2026, 1, 18), interval_ms=60_000, seed=3,
                                windows=["1h"], samples=2, warmup=0)
    hyper = got[got["db"].str.startswith("timescaledb")].set_index(["days", "compressed"])
    assert hyper.loc[(2, True), "table_bytes"] < hyper.loc[(2, False), "table_bytes"]
    assert (got["rows"] == 60).all() and (got["peak_rss_mb"] > 0).all()
    assert hyper.loc[(2, True), "compress_chunks"] == 1  # only the new day's chunk
    with psycopg.connect(target, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM timescaledb_information.chunks "
                            "WHERE is_compressed").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM tick_data").fetchone() == (2880,)
