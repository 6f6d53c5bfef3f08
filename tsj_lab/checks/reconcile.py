"""Source against target, one symbol-day at a time: the one comparison of day digests.

A day digest (``digest.day``, read per symbol-day by :mod:`tsj_lab.data.digest`) is the
row count, first and last time, volume and a multiset checksum over every column. Two
days with the same digest hold the same rows. The migration's verification, the integrity
suite's reconcile step, ``tsj sync`` and ``tsj cutover`` all judge a pair of databases with
:func:`compare`; each then says it in its own form (a DataFrame, findings, a verdict).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: a day digest's fields after its key (symbol, day)
FIELDS = ("rows", "first_time", "last_time", "volume", "checksum")
Key = tuple[str | None, dt.date | None]
Digest = tuple[Any, ...]  # rows, first_time, last_time, volume, checksum

#: statuses of a compared day
OK, QUARANTINED, TARGET_ONLY, MISMATCH = "ok", "quarantined", "target_only", "mismatch"


@dataclass(frozen=True)
class DayComparison:
    """One symbol-day on both sides (None: the side has no rows there)."""

    symbol: str | None
    day: dt.date | None  # None: rows outside the tick domain
    source: Digest | None
    target: Digest | None
    quarantined: Digest | None  # the migration's quarantine: rows the target refused

    @property
    def status(self) -> str:
        """ok (the target holds exactly the source's rows), quarantined (target + the
        quarantine add up to the source), target_only (the source has no such day), or
        mismatch."""
        if self.source is not None and self.source == self.target:
            return OK
        if self.source is None:
            return TARGET_ONLY
        if self.quarantined and sums(self.source) == sums(add(self.target, self.quarantined)):
            return QUARANTINED
        return MISMATCH

    @property
    def same(self) -> bool:
        """Whether the target holds (or has set aside) exactly the source's rows."""
        return self.status in (OK, QUARANTINED)

    def differing_fields(self) -> list[tuple[str, Any, Any]]:
        """(field, source value, target value) for each field that differs."""
        s = self.source or (None,) * len(FIELDS)
        t = self.target or (None,) * len(FIELDS)
        return [(f, a, b) for f, a, b in zip(FIELDS, s, t) if a != b]


def digests(rows: Iterable[tuple[Any, ...]]) -> dict[Key, Digest]:
    """``digest.day`` rows (symbol, day, rows, first, last, volume, checksum) by key."""
    return {(r[0], r[1]): tuple(r[2:]) for r in rows}


def compare(source: Mapping[Key, Digest], target: Mapping[Key, Digest],
            quarantined: Mapping[Key, Digest] | None = None) -> list[DayComparison]:
    """Every symbol-day either side has, in (symbol, day) order, odd rows last."""
    quarantined = quarantined or {}
    keys = sorted(source.keys() | target.keys() | quarantined.keys(), key=_order)
    return [DayComparison(k[0], k[1], source.get(k), target.get(k), quarantined.get(k))
            for k in keys]


def sums(d: Digest | None) -> tuple[Any, ...]:
    """The additive fields (rows, volume, checksum): target + quarantine = source."""
    return (0, 0, 0) if d is None else (d[0], d[3], d[4])


def add(t: Digest | None, q: Digest | None) -> Digest | None:
    """A day's digest with the quarantined rows added to the target's."""
    if t is None or q is None:
        return q if t is None else t
    return (t[0] + q[0], t[1], t[2], t[3] + q[3], t[4] + q[4])


def _order(key: Key) -> tuple[bool, str, bool, str]:
    return key[0] is None, key[0] or "", key[1] is None, str(key[1] or "")
