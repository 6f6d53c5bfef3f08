"""The replay player's frame accounting on its virtual clock, and the measured fetches."""

from __future__ import annotations

import datetime as dt

import pytest

from tsj_lab import bench
from tsj_lab.bench import replay, verdicts
from tsj_lab.domain import TickSpec


@pytest.mark.parametrize("lat,speed", [([0.0], 1), ([5.0, 20.0], 100), ([300.0], 1000),
                                       ([1e6], 1000)])
def test_frames_add_up(lat: list[float], speed: float) -> None:
    out = replay.simulate(lat, speed=speed, batch_ticks=500, prefetch_ticks=500,
                          fps=60, duration_s=7.5)
    assert out.frames == 450  # duration * fps
    assert out.shown + out.dropped == out.frames
    assert out.fps == pytest.approx(out.shown / 7.5)


def test_instant_fetches_drop_nothing() -> None:
    out = replay.simulate([0.0], speed=1000, batch_ticks=100, prefetch_ticks=0,
                          duration_s=10)
    assert (out.dropped, out.underruns, out.fps) == (0, 0, 60.0)
    assert out.ticks_played == 40_000 and out.ticks_per_s == 4000


def test_an_empty_buffer_is_one_underrun_until_data_arrives() -> None:
    # One page of 100 ticks lasts 100 / (1000 x 4 ticks/s) = 25 ms of play; the next
    # page takes an hour, so every later frame is dropped in one single underrun.
    out = replay.simulate([3.6e6], speed=1000, batch_ticks=100, prefetch_ticks=100,
                          duration_s=2)
    assert out.underruns == 1
    assert out.shown == 1  # frame 0 needs 66 ticks, frame 1 needs 133
    assert out.dropped == 119 and out.ticks_played == 100


def test_each_late_page_is_a_separate_underrun() -> None:
    # On demand at 1x with 300 ms fetches: each 100-tick page (25 s) ends in a stall of
    # 50 ms (the next tick is due 250 ms after the buffer empties): 3 frames each time.
    out = replay.simulate([300.0], speed=1, batch_ticks=100, prefetch_ticks=0, duration_s=60)
    assert out.underruns == 2 and out.dropped == 2 * 3


def test_prefetch_needed_is_the_least_clean_buffer() -> None:
    lat = [280.0, 300.0, 320.0, 400.0]
    need = replay.prefetch_needed(lat, speed=100, batch_ticks=500, duration_s=20)
    assert 0 < need < 500
    assert replay.simulate(lat, speed=100, batch_ticks=500, prefetch_ticks=need,
                           duration_s=20).dropped == 0
    # One fixed latency: a lead of 300 ms of play at 400 ticks/s is 120 ticks, less the
    # ticks of the frame being drawn (400 / 60), and one tick less must stall.
    need = replay.prefetch_needed([300.0], speed=100, batch_ticks=500, duration_s=20)
    assert need == pytest.approx(120 - 400 / 60, abs=2)
    assert replay.simulate([300.0], speed=100, batch_ticks=500, prefetch_ticks=need - 1,
                           duration_s=20).dropped > 0
    assert replay.prefetch_needed([0.0], speed=1000, batch_ticks=100) == 0


def test_bad_replay_values_fail_up_front() -> None:
    with pytest.raises(ValueError, match="at least one latency"):
        replay.simulate([], speed=1, batch_ticks=1, prefetch_ticks=1)
    with pytest.raises(ValueError, match="speed"):
        replay.simulate([1.0], speed=0, batch_ticks=1, prefetch_ticks=1)
    with pytest.raises(ValueError, match="prefetch_ticks=-1"):
        replay.simulate([1.0], speed=1, batch_ticks=1, prefetch_ticks=-1)


def test_measured_fetches_feed_the_playback_table(make_db) -> None:
    dbs, ds = bench.prepare(make_db(timescale=True), make_db(timescale=False),
                            TickSpec(["ES"], dt.date(2026, 1, 18), days=1, interval_ms=60_000, seed=3))
    lat = replay.fetch_latencies(dbs, ds, rtts=[None, 20], batch_sizes=[50], samples=3, warmup=1)
    assert len(lat) == 4 and set(lat["via"]) == {"direct", "proxy"}
    proxied = lat[lat["via"] == "proxy"]
    assert (proxied["p50_ms"] >= 20).all() and (lat["rows"] == 50).all()
    table = replay.playback(lat, speeds=[1, 1000], duration_s=5, max_duration_s=60,
                            tick_interval_ms=ds.interval_ms)
    assert len(table) == 8
    assert (table["shown"] + table["dropped"] == table["frames"]).all()
    # three pages of 50 one-minute ticks: 9000 s at 1x (capped at 60 s), 9 s at 1000x
    assert (table["frames"] == table["speed"].map({1: 3600, 1000: 540})).all()


def test_ac7_verdict_names_what_the_client_needs() -> None:
    import pandas as pd

    lat = pd.DataFrame([
        {"db": "timescaledb", "rtt_ms": rtt, "via": "proxy", "batch": batch, "p50_ms": rtt,
         "samples_ms": [float(rtt)] * 5}
        for rtt in (50, 300) for batch in (100, 2000)])
    play = replay.playback(lat, speeds=[1, 1000], duration_s=10)
    table = verdicts.judge(play=play).set_index("check")
    assert list(table.index) == ["AC7 60 fps at 1x", "AC7 60 fps at 1000x"]
    assert (table["status"] == "ok").all()
    # at 1000x only pages of 2000 keep up over 300 ms (100 per 300 ms is 333 ticks/s)
    assert "RTT 300 ms, pages of 2000" in table.loc["AC7 60 fps at 1000x", "detail"]
    slow = replay.playback(lat[lat["batch"] == 100], speeds=[1000], duration_s=10)
    assert verdicts.judge(play=slow)["status"].tolist() == ["fail"]


def test_every_proxied_fetch_is_one_round_trip(make_db) -> None:
    # psycopg's automatic prepare (5th run) would cost a second round trip; not here.
    dbs, ds = bench.prepare(make_db(timescale=True), make_db(timescale=False),
                            TickSpec(["ES"], dt.date(2026, 1, 18), days=1, interval_ms=60_000, seed=3))
    lat = replay.fetch_latencies(dbs[1:], ds, rtts=[200], batch_sizes=[10], samples=8, warmup=0)
    # a second round trip would put every sample past 400 ms; a long RTT and the median
    # keep a busy machine's milliseconds (95 ms medians at 60 ms RTT, load 12) out of it
    samples = sorted(lat["samples_ms"].iloc[0])
    assert len(samples) == 8 and 200 <= samples[len(samples) // 2] < 200 * 1.5, samples
