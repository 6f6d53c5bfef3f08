"""The loader: synthetic ticks (:mod:`tsj_lab.data.prices`) bulk-loaded by binary COPY.

Loading never holds more than two parts (at most ``PART_ROWS`` rows each) per worker: the
binary COPY buffer of a part is built with numpy (:mod:`tsj_lab.data.copybin`), newest tick
first, and streamed on the worker's own connection, one transaction per part, a symbol-day's
parts one after the other on one connection (:class:`Run`). Days past the compression
horizon go straight into compressed chunks, a day per transaction
(:mod:`tsj_lab.data.columnstore`). A re-run skips the parts already
loaded; "generate if empty" (:func:`ensure_data`) is the one way notebooks and checks get
demo data.
"""

from __future__ import annotations

import logging
import os
import time as _time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .. import queries
from ..provision import schema
from . import columnstore
from .copybin import COPY_SIGNATURE, COPY_TRAILER, Encoded, encode, encoded
from ..db import Endpoint, connect, scalar
from ..domain import TickSpec
from ..errors import SchemaError
from ..parallel import check_workers, rows_bar, run_parallel
from .prices import Part, plan

log = logging.getLogger("tsj_lab")


def default_workers() -> int:
    """One connection per core of this machine (the embedded server shares them), 1-4."""
    return max(1, min(4, os.cpu_count() or 1))


def load(url: Endpoint | str, spec: TickSpec, *, table: str = "tick_data", workers: int | None = None,
         progress: bool | None = None, direct: bool | None = None) -> int:
    """Generate ``spec``'s ticks and bulk-load them into ``table``; returns the rows loaded.

    Parts are generated lazily, at most two per worker at a time (the one sent, the next
    one being encoded), so memory stays bounded by ``2 * workers * PART_ROWS`` rows
    whatever ``spec.days`` is. ``direct``: see
    :func:`write_parts`.
    """
    return write_parts(url, plan(spec), table=table, workers=workers, progress=progress,
                       direct=direct)


def pending_parts(url: Endpoint | str, parts: Sequence[Part], *, table: str = "tick_data",
                  replace: bool = False) -> list[Part]:
    """The parts not loaded yet: a part already holding its ticks is skipped.

    A part's range holding some other number of ticks (an interrupted load, other data)
    is an error unless ``replace``, which deletes that range first: a re-run never
    doubles rows, and never mixes generated ticks into data it did not write.
    """
    count = queries.compose("generate.part_count", table=table)
    delete = queries.compose("generate.delete_part", table=table)
    todo: list[Part] = []
    with connect(url, autocommit=True) as conn:
        for part in parts:
            lo, hi = part.bounds()
            args = {"symbol": part.symbol, "lo": lo, "hi": hi}
            have = scalar(conn, count, args)
            if have == part.expected_rows():
                continue
            if have and not replace:
                raise SchemaError(
                    f"{table} already holds {have:,} ticks of {part.symbol} in [{lo:%Y-%m-%d %H:%M}, "
                    f"{hi:%Y-%m-%d %H:%M}) UTC, not the {part.expected_rows():,} generated there; "
                    "pass --replace to regenerate that range"
                )
            if have:
                conn.execute(delete, args)
            todo.append(part)
    return todo


def write_parts(
    url: Endpoint | str,
    parts: Sequence[Part | Encoded],
    *,
    table: str = "tick_data",
    workers: int | None = None,
    progress: bool | None = None,
    direct: bool | None = None,
) -> int:
    """Binary-COPY ``parts`` into ``table`` over ``workers`` connections, a commit per part,
    each part newest tick first (the replay index grows at its right edge).

    A :class:`Part` is generated and encoded by the worker that loads it; an
    :class:`Encoded` one (from :func:`encode`) is sent as it is. Days older than the
    compression horizon go straight into compressed chunks, a day per transaction,
    verified without reading a row back (:mod:`tsj_lab.data.columnstore`) when the server
    can (``direct`` None); ``direct`` True: every day must (else ConfigError); False:
    every part goes in plain.
    """
    workers = default_workers() if workers is None else workers
    check_workers(workers)
    _require_table(url, table)
    days, plain = ([], list(parts)) if direct is False else columnstore.split(
        url, parts, table=table, required=bool(direct))
    stmt = queries.compose("generate.copy_ticks_in", table=table)
    units: list[columnstore.Day | Run] = [*days, *runs_of(plain)]
    t0 = _time.perf_counter()
    with rows_bar(sum(p.nominal_rows for p in parts), desc=f"load {table}", progress=progress) as bar:
        done = run_parallel(units, lambda conn, unit: _copy_unit(conn, stmt, unit, table),
                            session=lambda: connect(url), workers=workers, name="tsj-load",
                            on_done=lambda unit, _rows: bar.update(unit.nominal_rows))
    total = sum(done)
    log.info("loaded %d rows into %s in %.1f s (%d days compressed on COPY)", total, table,
             _time.perf_counter() - t0, len(days))
    return total


def ensure_data(target_url: Endpoint | str, spec: TickSpec, *,
                source_url: Endpoint | str | None = None) -> tuple[int, int]:
    """Generated ticks for a target (and source) that hold none; (target, source) rows loaded.

    Only when neither side holds ticks: the target is provisioned and loaded with ``spec``
    and its candle views brought up to date, and the source (if any) gets the same rows, so
    a later migration or reconciliation finds both sides equal. Existing ticks on either
    side are never touched (0, 0): a notebook or check then works on what is there.
    """
    if holds_ticks(target_url) or (source_url is not None and holds_ticks(source_url)):
        return 0, 0
    schema.provision(target_url)
    target_rows = load(target_url, spec, progress=False)
    schema.refresh_candles(target_url)
    source_rows = 0
    if source_url is not None:
        schema.create_source(source_url)
        source_rows = load(source_url, spec, progress=False)
    return target_rows, source_rows


def holds_ticks(url: Endpoint | str, table: str = "tick_data") -> bool:
    """Whether ``table`` exists at ``url`` and holds a row: "is there data already?"."""
    with connect(url, autocommit=True) as conn:
        return schema.has_rows(conn, table)


def ensure_source(url: Endpoint | str, spec: TickSpec) -> int:
    """A plain (source) tick_data holding ``spec``'s ticks: created and loaded only when it
    is empty. Returns the rows loaded, 0 when the table already had some (left alone)."""
    parts = plan(spec)  # checked before anything is created
    if not table_exists(url):
        schema.create_source(url)
    if holds_ticks(url):
        return 0
    return write_parts(url, parts, progress=False)


@dataclass(frozen=True)
class Run:
    """One symbol-day's parts, newest first, loaded one after the other on one connection
    (a commit per part): the replay index (symbol, time DESC) then grows at one edge, and
    never from two connections at once (which cost 20-30 % in the ingest benchmark)."""

    items: tuple[Part | Encoded, ...]

    @property
    def nominal_rows(self) -> int:
        return sum(p.nominal_rows for p in self.items)


def runs_of(parts: Sequence[Part | Encoded]) -> list[Run]:
    """``parts`` as :class:`Run` s, in (day, symbol) order; parts without a day (an
    :class:`Encoded` built by hand) each a run of their own."""
    groups: dict[tuple[Any, str, int], list[Part | Encoded]] = {}
    for i, p in enumerate(parts):
        key = (p.day, p.symbol, 0) if p.day is not None else (None, "", i)
        groups.setdefault(key, []).append(p)
    return [Run(tuple(sorted(g, key=lambda p: -p.index)))
            for _, g in sorted(groups.items(), key=lambda kv: (str(kv[0][0]), kv[0][1], kv[0][2]))]


def _copy_unit(conn: Any, stmt: Any, unit: columnstore.Day | Run, table: str) -> int:
    if isinstance(unit, columnstore.Day):
        return columnstore.copy_day(conn, stmt, unit, table=table)
    return sum(_copy_part(conn, stmt, enc) for enc in encoded(unit.items))


def _copy_part(conn: Any, stmt: Any, part: Part | Encoded) -> int:
    enc = part if isinstance(part, Encoded) else encode(part)
    with conn.cursor() as cur:
        with cur.copy(stmt) as copy:
            copy.write(COPY_SIGNATURE)
            copy.write(enc.data)
            copy.write(COPY_TRAILER)
    conn.commit()
    return enc.rows


def table_exists(url: Endpoint | str, table: str = "tick_data") -> bool:
    """Whether ``table`` is visible at ``url`` (see :func:`tsj_lab.provision.schema.has_table`)."""
    with connect(url, autocommit=True) as conn:
        return schema.has_table(conn, table)


def _require_table(url: Endpoint | str, table: str) -> None:
    if not table_exists(url, table):
        raise SchemaError(f"table '{table}' not found; run 'tsj provision' (target) "
                          "or 'tsj generate --source' (source)")
