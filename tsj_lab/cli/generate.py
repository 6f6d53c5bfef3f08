"""tsj generate: deterministic synthetic ticks, bulk-loaded into the target or the source."""

from __future__ import annotations

import argparse
import datetime as dt
import time

from ..config import progress_enabled
from ..domain import DEFAULT_SEED, DEFAULT_SYMBOLS, TickSpec
from . import add_target, command, settings, source_url, target_url


def _setup(p: argparse.ArgumentParser) -> None:
    add_target(p, source=True)
    p.add_argument("--symbols", default=",".join(DEFAULT_SYMBOLS),
                   help="comma-separated symbols (default: %(default)s)")
    p.add_argument("--start", default=None, help="first UTC day, YYYY-MM-DD (default: yesterday)")
    p.add_argument("--days", type=int, default=1, help="number of days (default: 1)")
    p.add_argument("--interval-ms", type=int, default=250,
                   help="milliseconds between ticks of a symbol (default: 250: 345,600 a day)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed (default: %(default)s)")
    p.add_argument("--sessions", action="store_true",
                   help="leave out the futures' daily halt and the weekend closes")
    p.add_argument("--workers", type=int, default=None, help="parallel connections (default: cores)")
    p.add_argument("--replace", action="store_true",
                   help="regenerate ranges that hold other ticks (default: refuse; ranges "
                   "already holding the generated ticks are always skipped)")
    p.add_argument("--no-direct", action="store_true",
                   help="write every day plain (default: days older than the target's "
                   "compression horizon go straight into compressed chunks, verified, when "
                   "the server can)")
    p.add_argument("--into", choices=("target", "source"), default=None,
                   help="load the target hypertable (default) or the plain source table; "
                   "--source URL implies source")


def _into(args: argparse.Namespace) -> str:
    """Which side to load; a URL for the other side is refused, never silently ignored."""
    if args.source and args.target:
        raise ValueError("--target and --source both given; generate loads one of them")
    into = args.into or ("source" if args.source else "target")
    if (into == "source" and args.target) or (into == "target" and args.source):
        flag = "--target" if args.target else "--source"
        raise ValueError(f"{flag} URL given with --into {into}; drop --into, or name the "
                         f"{into}'s URL with --{into}")
    return into


@command("generate", "generate ticks and bulk-load them (binary COPY, parallel)", _setup)
def _generate(args: argparse.Namespace) -> int:
    from ..data import generate, prices  # see cli/__init__.py
    from ..provision import schema

    start = args.start or (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1))
    parts = prices.plan(TickSpec(args.symbols, start, args.days, args.interval_ms, args.seed,
                                 args.sessions))
    into = _into(args)
    if into == "source":
        url = source_url(args)
        if not generate.table_exists(url):
            schema.create_source(url)
    else:
        url = target_url(args)
        if not generate.table_exists(url):
            schema.provision(url)
    todo = generate.pending_parts(url, parts, replace=args.replace)
    skipped = f"; {len(parts) - len(todo)} of {len(parts)} parts were already loaded"
    if not todo:
        print(f"nothing to do: all {len(parts)} parts are already in {into} tick_data")
        return 0
    t0 = time.perf_counter()
    rows = generate.write_parts(url, todo, workers=args.workers,
                                progress=progress_enabled(settings(args)),
                                direct=False if args.no_direct else None)
    secs = time.perf_counter() - t0
    print(f"loaded {rows:,} ticks into {into} tick_data in {secs:.1f} s "
          f"({rows / max(secs, 1e-9):,.0f} rows/s){skipped if len(todo) < len(parts) else ''}")
    if into == "target":  # the candle views show the new ticks only once refreshed
        bounds = [p.bounds() for p in todo]
        done = schema.refresh_written(url, start=min(lo for lo, _ in bounds),
                                      end=max(hi for _, hi in bounds))
        if done:
            print(f"refreshed {', '.join(r.view for r in done)} in "
                  f"{sum(r.seconds for r in done):.1f} s")
    return 0
