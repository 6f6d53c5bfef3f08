"""The migration benchmark (tsj_lab/bench/migration.py) on tiny sizes: both sides behind
the proxy, every run verified, the round trips counted and judged against direct."""

from __future__ import annotations

import psycopg
import pandas as pd
import pytest

from tsj_lab import migrate
from tsj_lab.bench import migration


def _scratch_schemas(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_namespace "
                            "WHERE nspname LIKE 'tsj\\_mig\\_%'").fetchone()[0]


def test_migration_direct_and_through_the_proxy(make_db) -> None:
    src, tgt = make_db(timescale=False), make_db(timescale=True)
    mig = migration.measure(src, tgt, rtts=[None, 20], days=2, interval_ms=60_000,
                            story_interval_ms=60_000)
    assert mig["size"].tolist() == ["story"] * 3 + ["2 days"] * 3
    assert mig["via"].tolist() == ["direct", "proxy", "direct"] * 2  # direct around the rest
    assert mig["rows"].tolist() == [1440] * 3 + [2880] * 3 and mig["verified"].all()
    proxied = mig[mig["via"] == "proxy"]
    # both sides behind a proxy: each counted its connections and exchanges
    assert (proxied["source_connections"] >= 2).all() and (proxied["target_connections"] >= 2).all()
    assert (proxied["target_round_trips"] > proxied["target_connections"] * 3).all()
    assert proxied["extra_round_trips"].notna().all() and proxied["fraction_of_direct"].gt(0).all()
    assert _scratch_schemas(src) == 0 and _scratch_schemas(tgt) == 0


def test_judge_counts_round_trips_against_direct_of_the_same_size() -> None:
    df = pd.DataFrame({"size": ["a", "a", "a", "b", "b"],
                       "via": ["direct", "proxy", "direct", "direct", "proxy"],
                       "rtt_ms": [None, 300.0, None, None, 0.0],
                       "seconds": [0.8, 4.0, 1.2, 2.0, 2.5],
                       "rows_per_s": [120.0, 25.0, 80.0, 50.0, 40.0]})
    out = migration.judge(df)  # a's direct: the mean of its two runs, 1.0 s and 100 rows/s
    assert out["extra_round_trips"].tolist()[1] == pytest.approx(10.0)
    assert out["extra_round_trips"].isna().tolist() == [True, False, True, True, True]  # 0 ms
    assert out["fraction_of_direct"].tolist() == pytest.approx([1.2, 0.25, 0.8, 1.0, 0.8])


@pytest.mark.parametrize(("rtt_ms", "workers"), [(0.3, 1), (20, 1), (50, 2), (150, 4), (300, 8),
                                                 (2000, 8)])
def test_batches_in_flight_follow_the_round_trip(rtt_ms: float, workers: int) -> None:
    assert migrate.auto_workers(rtt_ms / 1000) == workers
