"""The benchmark harness: percentile maths, the fast fetch path, keyset paging, workloads.

Database tests use fresh ``make_db`` databases holding a tiny data set (one tick a
minute), so every workload runs end to end in seconds; speed is never asserted.
"""

from __future__ import annotations

import datetime as dt
import random
import time

import numpy as np
import pandas as pd
import psycopg
import pytest

from tsj_lab import bench, db, stats
from tsj_lab import queries
from tsj_lab.domain import TickSpec

START = dt.date(2026, 1, 18)
LO = dt.datetime(2026, 1, 18, tzinfo=dt.UTC)


# -- percentile maths ------------------------------------------------------------------


@pytest.mark.parametrize("q", [0, 1, 25, 50, 90, 95, 99, 100])
def test_percentile_matches_numpy(q: float) -> None:
    rng = random.Random(7)
    for n in (1, 2, 5, 100, 1001):
        values = [rng.lognormvariate(1, 0.8) for _ in range(n)]
        assert stats.percentile(values, q) == pytest.approx(np.percentile(values, q))


def test_summarize_known_data() -> None:
    st = stats.summarize(list(range(1, 101)))
    assert (st.n, st.max_ms, st.mean_ms) == (100, 100, 50.5)
    assert st.p50_ms == pytest.approx(50.5)
    assert st.p95_ms == pytest.approx(95.05)
    assert st.p99_ms == pytest.approx(99.01)


def test_bad_values_fail_up_front() -> None:
    with pytest.raises(ValueError, match="no samples"):
        stats.percentile([], 50)
    with pytest.raises(ValueError, match="outside 0-100"):
        stats.percentile([1.0], 101)
    with pytest.raises(ValueError, match="warmup"):
        bench.time_calls([lambda: None], warmup=-1)


def test_time_calls_excludes_warmup() -> None:
    calls: list[int] = []
    def call(i: int) -> int:
        calls.append(i)
        if i == 2:
            time.sleep(0.02)  # the one slow call must show as the slow sample
        return i

    latencies, results = bench.time_calls([lambda i=i: call(i) for i in range(4)], warmup=3)
    assert calls == [0, 1, 2, 0, 1, 2, 3]  # three untimed warm-ups, then each call once
    assert results == [0, 1, 2, 3] and len(latencies) == 4
    assert latencies[2] >= 20 and min(latencies) > 0, latencies  # in call order, in ms


def test_window_params_stay_inside_the_data_set() -> None:
    ds = bench.Dataset(("ES", "NQ"), LO, LO + dt.timedelta(days=1), 1440, 60000.0)
    params = bench.window_params(ds, 3600, samples=50, rng=random.Random(1))
    assert all(ds.start <= p["start"] and p["end"] <= ds.end for p in params)
    assert {p["symbol"] for p in params} == {"ES", "NQ"}
    with pytest.raises(ValueError, match="longer than the data set"):
        bench.window_params(ds, 2 * 86400, samples=1, rng=random.Random(1))


# -- against the database --------------------------------------------------------------


@pytest.fixture
def pair(make_db) -> tuple[list[bench.Database], bench.Dataset]:
    """A provisioned target and a plain source holding the same tiny data set."""
    return bench.prepare(make_db(timescale=True), make_db(timescale=False),
                         TickSpec(["ES", "NQ"], START, days=1, interval_ms=60_000, seed=3))


def test_prepare_loads_both_and_is_idempotent(pair, make_db) -> None:
    dbs, ds = pair
    assert ds.ticks_per_symbol == 1440 and ds.symbols == ("ES", "NQ")
    for d in dbs:
        assert bench.symbol_counts(d.url, start=ds.start, end=ds.end) == {"ES": 1440, "NQ": 1440}
    _, ds2 = bench.prepare(dbs[1].url, dbs[0].url,
                           TickSpec(["ES", "NQ"], START, days=1, interval_ms=60_000, seed=3))
    assert ds2 == ds
    assert bench.symbol_counts(dbs[0].url, start=ds.start, end=ds.end)["ES"] == 1440


def test_prepare_refuses_unequal_data(pair) -> None:
    dbs, ds = pair
    with psycopg.connect(dbs[0].url, autocommit=True) as conn:
        conn.execute("DELETE FROM tick_data WHERE symbol = 'NQ' AND time < %s",
                     (ds.start + dt.timedelta(hours=1),))
    with pytest.raises(Exception, match="postgresql tick_data has 1,380 ticks for NQ on 2026-01-18"):
        bench.prepare(dbs[1].url, dbs[0].url,
                      TickSpec(["ES", "NQ"], START, days=1, interval_ms=60_000, seed=3))


def test_read_frame_matches_plain_psycopg(pair) -> None:
    dbs, ds = pair
    params = {"symbol": "ES", "start": ds.start, "end": ds.start + dt.timedelta(hours=2)}
    for d in dbs:
        frame = db.read_frame(d.url, "bench.window", params)
        with psycopg.connect(d.url) as conn:
            rows = conn.execute(queries.text("bench.window_numeric"), params).fetchall()
        assert len(frame) == len(rows) == 120
        assert list(frame["time"].dt.to_pydatetime()) == [r[0] for r in rows]
        for i, col in enumerate(["bid_price", "ask_price", "last_price"], start=1):
            assert frame[col].tolist() == [float(r[i]) for r in rows]
        assert frame["volume"].tolist() == [r[4] for r in rows]
        assert str(frame["time"].dtype) == "datetime64[us, UTC]"


def test_read_frame_fills_identifiers(pair) -> None:
    dbs, ds = pair
    candles = db.read_frame(dbs[1].url, "candles.view_range",
                            {"symbol": "NQ", "start": ds.start, "end": ds.end},
                            identifiers={"view": "candle_1h"})
    assert len(candles) == 24 and candles["tick_count"].sum() == 1440


def test_server_times_are_positive(pair) -> None:
    dbs, ds = pair
    params = bench.window_params(ds, 600, samples=3, rng=random.Random(0))
    times = bench.server_times(dbs[1].url, "bench.window", params)
    assert len(times) == 3 and all(t > 0 for t in times)


def test_record_hands_every_row_to_reports(monkeypatch) -> None:
    from tsj_lab.lab import recording

    got: list[tuple] = []
    monkeypatch.setattr(recording, "record_result", lambda w, p, **kw: got.append((w, p, kw)))
    df = pd.DataFrame([bench.point("window", "timescaledb", [1.0, 2.0, 3.0], rows=[5, 5, 5],
                                   server=[0.5], window="1m", target_ms=50.0)])
    assert bench.record(df) == 1
    workload, params, kw = got[0]
    assert workload == "window" and params == {"db": "timescaledb", "window": "1m", "target_ms": 50.0}
    assert kw["n"] == 3 and kw["p50_ms"] == 2.0 and kw["server_p50_ms"] == 0.5
    assert kw["rows"] == 5 and kw["server_n"] == 1
    assert kw["rows_per_s"] == pytest.approx(15 / 0.006)



def test_cli_parameters_are_the_notebooks() -> None:
    from tsj_lab.lab import reports

    declared = reports.notebook_parameters(reports.notebook_path("04_benchmark"))
    for large in (False, True):
        for quick in (False, True):
            # connection names, and the memory watch's file (tsj bench adds it for its run)
            passed = set(bench.parameters(large=large, quick=quick)) | {"target", "source",
                                                                       "memory_file"}
            assert passed == set(declared)


def test_prepare_refuses_a_day_of_other_spacing(pair) -> None:
    dbs, _ = pair
    with pytest.raises(Exception, match=r"1,440 ticks for ES on 2026-01-18, not the 720.*--replace"):
        bench.prepare(dbs[1].url, dbs[0].url, TickSpec(["ES"], START, days=1, interval_ms=120_000, seed=3))


def test_time_interleaved_takes_turns() -> None:
    order: list[tuple[str, int]] = []
    fns = {k: (lambda p, k=k: order.append((k, p)) or p * 10) for k in ("a", "b", "c")}
    got = bench.time_interleaved(fns, [1, 2, 3], warmup=1)
    assert order[:3] == [("a", 1), ("b", 1), ("c", 1)]  # the warm-up round
    assert order[3:] == [("a", 1), ("b", 1), ("c", 1), ("b", 2), ("c", 2), ("a", 2),
                         ("c", 3), ("a", 3), ("b", 3)]
    assert {k: v[1] for k, v in got.items()} == {k: [10, 20, 30] for k in "abc"}
    assert all(len(v[0]) == 3 for v in got.values())


def test_replace_regenerates_a_day_of_other_spacing(pair) -> None:
    dbs, ds = pair
    _, ds2 = bench.prepare(dbs[1].url, dbs[0].url,
                           TickSpec(["ES"], START, days=1, interval_ms=120_000, seed=3), replace=True)
    assert ds2.ticks_per_symbol == 720
    for d in dbs:  # ES regenerated at the new spacing; NQ untouched
        assert bench.symbol_counts(d.url, start=ds.start, end=ds.end) == {"ES": 720, "NQ": 1440}


def test_candle_frames_are_numbers(pair) -> None:
    dbs, ds = pair
    params = {"symbol": "ES", "start": ds.start, "end": ds.end, "width": "1 hour"}
    frames = [db.read_frame(dbs[1].url, "candles.view_range", params, identifiers={"view": "candle_1h"}),
              db.read_frame(dbs[1].url, "candles.raw_range", params),
              db.read_frame(dbs[0].url, "bench.candles_raw_plain", params)]
    for frame in frames:
        assert [str(t) for t in frame.dtypes] == ["datetime64[us, UTC]"] + ["float64"] * 4 + ["int64"] * 2
    # the view, time_bucket and date_bin agree on every candle
    for other in frames[1:]:
        assert frames[0].equals(other)


def test_cli_refuses_an_unknown_parameter_before_connecting(capsys) -> None:
    from tsj_lab.cli import main

    # the URL points nowhere: the parameter check must come first
    code = main(["bench", "-p", "sampels", "5", "--target", "postgresql://u:secret@127.0.0.1:1/x"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "has no parameter 'sampels'" in err
    assert "secret" not in err and len(err.splitlines()) == 1


def test_prepare_takes_a_spacing_that_does_not_divide_the_day(make_db) -> None:
    """86,400,000 ms / 70,000 ms: the generator writes 1,235 ticks (the last one 20 s before
    midnight); the bench once expected 1,234 and refused its own data."""
    spec = TickSpec(["ES"], START, interval_ms=70_000, seed=3)
    dbs, ds = bench.prepare(make_db(timescale=True), make_db(timescale=False), spec)
    assert ds.ticks_per_symbol == spec.ticks_per_day == 1235
    assert bench.symbol_counts(dbs[1].url, start=ds.start, end=ds.end) == {"ES": 1235}
