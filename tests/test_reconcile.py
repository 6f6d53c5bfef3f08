"""The one comparison of day digests (checks/reconcile.py), without a database."""

from __future__ import annotations

import datetime as dt

from tsj_lab.checks import reconcile

D1, D2 = dt.date(2026, 1, 5), dt.date(2026, 1, 6)
T0, T1 = dt.datetime(2026, 1, 5, tzinfo=dt.UTC), dt.datetime(2026, 1, 5, 23, tzinfo=dt.UTC)


def day(rows: int, volume: int, checksum: int) -> tuple:
    return (rows, T0, T1, volume, checksum)


def test_each_status_from_the_digests() -> None:
    source = {("ES", D1): day(10, 100, 7), ("ES", D2): day(10, 100, 9), ("NQ", D1): day(5, 50, 3),
              ("NQ", None): (2, None, None, 20, 4)}
    target = {("ES", D1): day(10, 100, 7), ("ES", D2): day(10, 100, 8),  # a corrected price
              ("NQ", D1): day(4, 40, 1), ("BTC", D1): day(1, 1, 1)}
    quarantine = {("NQ", D1): day(1, 10, 2), ("NQ", None): (2, None, None, 20, 4)}
    got = {(c.symbol, c.day): c for c in reconcile.compare(source, target, quarantine)}
    assert {k: c.status for k, c in got.items()} == {
        ("BTC", D1): "target_only", ("ES", D1): "ok", ("ES", D2): "mismatch",
        ("NQ", D1): "quarantined", ("NQ", None): "quarantined"}
    assert [k for k in got] == [("BTC", D1), ("ES", D1), ("ES", D2), ("NQ", D1), ("NQ", None)]
    assert got["ES", D2].differing_fields() == [("checksum", 9, 8)]
    assert got["NQ", D1].same and not got["ES", D2].same and not got["BTC", D1].same


def test_a_day_missing_on_the_target_is_a_mismatch_with_every_field_shown() -> None:
    (c,) = reconcile.compare({("ES", D1): day(3, 30, 5)}, {})
    assert c.status == "mismatch" and [f for f, _s, _t in c.differing_fields()] == list(
        reconcile.FIELDS)
