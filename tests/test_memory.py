"""tsj_lab.bench.memory: the run's processes and their peak memory, read from /proc."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from tsj_lab.bench import memory, verdicts
from tsj_lab.lab import recording
from tsj_lab.server.pooler import PgBouncer

# a child that holds ~200 MiB for a moment, as a kernel's psql or a loader would
_HOG = "import time; b = bytearray(200 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096]); time.sleep(1.5)"


@pytest.mark.parametrize(("title", "role"), [
    ("postgres: tsj tsj 127.0.0.1(53412) idle", "server backend"),
    ("postgres: tsj tsj_source [local] COPY", "server backend"),
    ("postgres: checkpointer ", "server checkpointer"),
    ("postgres: TimescaleDB Background Worker Scheduler", "server TimescaleDB worker"),
    ("postgres: autovacuum launcher", "server autovacuum launcher"),
    ("postgres: parallel worker for PID 4242", "server parallel worker"),
    ("postgres: io worker 1", "server io worker"),
    ("/x/.tsj/pg18-timescale-2.24.0/usr/lib/postgresql/18/bin/postgres -D /x/data", "server backend"),
])
def test_server_roles_from_process_titles(title: str, role: str) -> None:
    assert memory.server_role(title) == role


def test_a_childs_peak_is_kept_after_it_exits(tmp_path: Path) -> None:
    out = tmp_path / "memory.json"
    with memory.Watch(out=out, interval_s=0.1) as watch:
        child = subprocess.Popen([sys.executable, "-c", _HOG])
        child.wait(30)
    snap = watch.snapshot()
    peaks = [p for p in snap.peaks.values() if p.pid == child.pid]
    assert peaks and peaks[0].role == "kernel child"
    assert 190 < peaks[0].rss_mib < 400 and peaks[0].private_mib > 190
    # the file the notebook reads holds the same figures
    again = memory.load(out)
    assert again is not None and again.samples == snap.samples
    table = again.table().set_index("process")
    assert table.loc["kernel child", "peak_rss_mib"] == pytest.approx(peaks[0].rss_mib)
    assert table.loc["tsj", "processes"] == 1


def test_the_servers_processes_and_pooler_are_watched(target_url: str, pooler: PgBouncer) -> None:
    pooled = pooler.start()
    with memory.watch_for(target_url, interval_s=0.1) as watch:
        assert watch.postmaster is not None
        with psycopg.connect(target_url) as conn, psycopg.connect(pooled) as via:
            conn.execute("SELECT count(*) FROM generate_series(1, 100000)").fetchone()
            via.execute("SELECT 1").fetchone()
            time.sleep(0.3)
    roles = set(watch.snapshot().table()["process"])
    assert {"tsj", "server postmaster", "server backend", "server checkpointer",
            "pgbouncer"} <= roles


def test_record_names_each_process_and_the_goal_is_judged() -> None:
    snap = memory.Snapshot(0.0, 12.0, 24, {
        1: memory.Peak(1, "tsj", 300.0, 250.0), 2: memory.Peak(2, "kernel", 1500.0, 1400.0),
        3: memory.Peak(3, "server backend", 200.0, 20.0),
        4: memory.Peak(4, "server backend", 180.0, 30.0)})
    before = len(recording.recorded())
    table = memory.record(snap, label="bench-large")
    new = recording.recorded()[before:]
    rss = {r["params"]["process"]: r["value"] for r in new if r.get("name") == "peak RSS"}
    assert rss == {"tsj": 300.0, "kernel": 1500.0, "server backend": 200.0}
    assert table.set_index("process").loc["server backend", "sum_private_mib"] == 50.0
    verdict = verdicts.speed(new).set_index("check").loc["goal: peak RSS of each process"]
    assert verdict["status"] == "warn" and verdict["measured"] == 1500.0
    assert "missed by 46%" in verdict["detail"] and "largest kernel of 3 roles" in verdict["detail"]
    assert "by private memory the largest is kernel 1,400 MiB" in verdict["detail"]


def test_no_watch_file_means_nothing_to_record(tmp_path: Path) -> None:
    assert memory.load("") is None
    assert memory.load(tmp_path / "absent.json") is None


def test_the_kernels_peak_is_placed_in_the_cell_that_ran(tmp_path: Path) -> None:
    def cell(source: str, start: str, end: str) -> dict[str, object]:
        return {"cell_type": "code", "source": source, "metadata": {"papermill": {
            "start_time": f"2026-12-03T10:00:{start}+00:00",
            "end_time": f"2026-12-03T10:00:{end}+00:00"}}}

    nb = tmp_path / "run.ipynb"
    nb.write_text(json.dumps({"cells": [cell("a = 1\nb = 2", "00", "10"),
                                        cell("big = load()", "10", "20"),
                                        {"cell_type": "markdown", "source": "## x", "metadata": {}}]}))
    t0 = dt.datetime(2026, 12, 3, 10, 0, tzinfo=dt.UTC).timestamp()
    snap = memory.Snapshot(t0, 20.0, 40, kernel_rss=[(t0 + 2, 200.0), (t0 + 9, 250.0),
                                                    (t0 + 15, 900.0), (t0 + 19, 400.0)])
    got = snap.by_cell(nb)
    assert got["cell"].tolist() == ["big = load()", "a = 1"]
    assert got["rss_mib"].tolist() == [900.0, 250.0] and got["seconds"].tolist() == [10.0, 10.0]
