"""A batch over a long round trip (tsj_lab.migrate._copy_pipelined): its round trips
counted through the latency proxy, and its guarantees kept while pipelined."""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg
import pytest

from tsj_lab import migrate, queries
from tsj_lab.data import generate
from tsj_lab.db import Endpoint
from tsj_lab.domain import TickSpec
from tsj_lab.errors import MigrationError
from tsj_lab.provision import schema
from tsj_lab.server.proxy import LatencyProxy

DAY = "2024-01-02"


def _pair(make_db: Callable[..., str]) -> tuple[str, str]:
    src, tgt = make_db(timescale=False), make_db(timescale=True)
    schema.create_source(src)
    schema.provision(tgt)
    generate.load(src, TickSpec(("ES",), DAY, days=1, interval_ms=20_000), workers=1)
    return src, tgt


def _settled(proxy: LatencyProxy) -> int:
    time.sleep(0.05)  # the proxy's thread counts a delivery just after writing it
    return proxy.stats().turns


def test_a_batch_costs_the_same_few_round_trips_whatever_its_size(make_db) -> None:
    src, tgt = _pair(make_db)
    with Endpoint(tgt).held() as conn:
        conn.execute(queries.text("migrate.create_batches"))
        conn.execute(queries.text("migrate.upgrade_batches_held"))
        conn.execute(queries.text("migrate.create_quarantine"))
    turns = []
    for batch_size in (4320, 400):  # 1 batch of the day, then 11
        p = migrate.plan(src, batch_size=batch_size, target_url=tgt, include_expired=True)
        with LatencyProxy.for_url(src, rtt_ms=0) as ps, LatencyProxy.for_url(tgt, rtt_ms=0) as pt, \
                psycopg.connect(ps.url(src), autocommit=True) as s, \
                psycopg.connect(pt.url(tgt), autocommit=True) as t:
            for batch in p.batches:
                before = (_settled(ps), _settled(pt))
                res = migrate.copy_batch(s, t, batch, plan=p)
                assert res.copied_rows == res.source_rows > 0 and res.quarantined_rows == 0
                turns.append((_settled(ps) - before[0], _settled(pt) - before[1]))
    # source: BEGIN with the limits, COPY out, COMMIT; target: its opening, COPY in (2),
    # the checkpoint with its checksum and COMMIT; the two sides' waits overlap
    assert set(turns) == {(3, 4)} and len(turns) == 1 + 11
    held = migrate.verify(src, tgt)
    assert (held["status"] == "ok").all() and held["rows_target"].sum() == 4320


def test_a_range_holding_other_rows_fails_the_batch_whole(make_db) -> None:
    src, tgt = _pair(make_db)
    with psycopg.connect(tgt, autocommit=True) as conn:
        # another writer, as the server sees it: one more row in the batch's range
        conn.execute("""
            CREATE FUNCTION sneak() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF pg_trigger_depth() = 1 THEN
                INSERT INTO tick_data (time, symbol, bid_price, ask_price, last_price, volume,
                                       source) VALUES ('2024-01-02 12:00:00.5+00', 'ES', 1, 2, 1.5,
                                       1, 'sneak');
              END IF;
              RETURN NULL;
            END $$;
            CREATE TRIGGER sneak AFTER INSERT ON tick_data FOR EACH STATEMENT
            EXECUTE FUNCTION sneak();""")
    with pytest.raises(MigrationError, match="holds another number in that range"):
        migrate.run(src, tgt, progress=False, verify_after=False, include_expired=True)
    with psycopg.connect(tgt, autocommit=True) as conn:
        # nothing of the batch committed: no rows, no checkpoint
        assert conn.execute("SELECT count(*) FROM tick_data").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM tsj_migration_batches").fetchone() == (0,)
        conn.execute("DROP TRIGGER sneak ON tick_data")
    res = migrate.run(src, tgt, progress=False, include_expired=True)
    assert res.ok and res.copied_rows == 4320
