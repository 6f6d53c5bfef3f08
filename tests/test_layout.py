"""The story's layout (AC2, AC3, AC5), judged once: provisioning's validation rows and the
integrity checks' findings come from the same judges in tsj_lab.provision.layout."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from tsj_lab import checks
from tsj_lab.data import generate
from tsj_lab.provision import layout, schema
from tsj_lab.domain import Finding, TickSpec

STORY = layout.Layout("tick_data", "timescale", True, chunks=3, time_column="time",
                      chunk_interval=layout.CHUNK_INTERVAL, settings=("symbol", '"time" DESC'),
                      compression_job=1000, compress_after=layout.COMPRESS_AFTER,
                      retention_job=1001, drop_after=layout.RETENTION)


def _judged(lay: layout.Layout) -> list[tuple[str, str]]:
    return [(f.check, f.status) for f in (layout.judge_hypertable(lay),
                                          layout.judge_compression(lay),
                                          layout.judge_retention(lay))]


def test_the_storys_layout_is_ok_and_each_departure_fails() -> None:
    assert _judged(STORY) == [("chunk_interval", "ok"), ("compression", "ok"),
                              ("retention", "ok")]
    got = layout.judge_hypertable(replace(STORY, chunk_interval=timedelta(days=7)))
    assert (got.status, got.observed, got.expected) == ("fail", "7 days", "1 day")
    assert "set_chunk_time_interval('tick_data', INTERVAL '1 day')" in got.detail
    for change in [{"settings": ("symbol", "time")}, {"compress_after": timedelta(days=7)},
                   {"compression_job": None, "compress_after": None},
                   {"retention_job": None, "drop_after": None},
                   {"drop_after": timedelta(days=30)}]:
        broken = replace(STORY, **change)
        (bad,) = [f for f in (layout.judge_compression(broken), layout.judge_retention(broken))
                  if f.status != "ok"]
        assert bad.status == "fail" and "run 'tsj provision'" in bad.detail, change
    assert layout.judge_compression(replace(STORY, settings=None)).status == "fail"
    plain = layout.Layout("tick_data", "timescale", hypertable=False)
    assert layout.judge_hypertable(plain).observed == "not a hypertable"
    apache = replace(STORY, license="apache")
    assert _judged(apache)[1:] == [("compression", "unsupported"), ("retention", "unsupported")]


def test_validation_and_checks_judge_a_broken_layout_alike(
        make_db: Callable[..., str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A wrong compression orderby and 2-day chunks: AC3 and AC2 fail in 'tsj provision's
    table, and 'compression' and 'chunk_interval' fail in 'tsj check', in the same words;
    replacing the one judge changes both."""
    url = make_db(timescale=True)
    schema.provision(url)
    day = datetime.now(UTC).date() - timedelta(days=2)
    generate.load(url, TickSpec(["ES"], day, interval_ms=60_000), progress=False, workers=1)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER TABLE tick_data SET (timescaledb.compress_orderby = 'time')")
        conn.execute("SELECT set_chunk_time_interval('tick_data', INTERVAL '2 days')")

    def both() -> list[tuple[str, str, str]]:
        rows = {r.ac: r for r in schema.validate(url, pool_size=2)}
        found = {r.check: r for r in checks.run(url, progress=False)}
        out = []
        for ac, check in (("AC2", "chunk_interval"), ("AC3", "compression")):
            # validation appends the story's own query to the same finding's detail
            assert rows[ac].detail.startswith(found[check].detail), (rows[ac], found[check])
            out.append((ac, rows[ac].status, found[check].status))
        return out

    assert both() == [("AC2", "fail", "fail"), ("AC3", "fail", "fail")]
    found = {r.check: r for r in checks.run(url, progress=False)}
    assert 'orderby="time", policy job' in found["compression"].detail
    assert found["chunk_interval"].observed == "2 days"

    def lenient(lay: layout.Layout, **_: object) -> Finding:
        return Finding("compression", "warn", lay.table, detail="judged in one place")

    monkeypatch.setattr(layout, "judge_compression", lenient)
    assert both()[1] == ("AC3", "warn", "warn")
