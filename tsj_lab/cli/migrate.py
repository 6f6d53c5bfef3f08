"""tsj migrate: source tick_data -> target hypertable, resumable, verified."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from . import add_target, command, print_json, print_table, source_url, target_url

if TYPE_CHECKING:
    from ..db import Endpoint
    from ..migrate import DryRun


def _setup(p: argparse.ArgumentParser) -> None:
    add_target(p, source=True)
    p.add_argument("--batch-size", type=int, default=None,  # None: migrate.DEFAULT_BATCH_SIZE
                   help="most rows per batch (one transaction, one checkpoint; default 100000)")
    p.add_argument("--since", help="first time to copy (ISO; default: the beginning)")
    p.add_argument("--until", help="copy times before this (ISO; default: the end)")
    p.add_argument("--symbols", help="comma-separated symbols (default: all)")
    p.add_argument("--workers", type=int, default=1,
                   help="batches copied in parallel (default 1: the source is production)")
    p.add_argument("--include-expired", action="store_true",
                   help="also copy days older than the target's retention horizon (its "
                        "retention job would drop them; skipped and reported by default)")
    p.add_argument("--direct-compress", action="store_true",
                   help="COPY days older than the target's compress_after straight into "
                        "compressed chunks (TimescaleDB 2.23+; off by default: see "
                        "docs/migration.md)")
    p.add_argument("--measure-paths", action="store_true",
                   help="measure the ways history reaches compressed chunks on the target (in a "
                        "scratch schema; the source is not read) and print the figures")
    p.add_argument("--dry-run", action="store_true",
                   help="counts per day and symbol and an estimated time; writes nothing")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


@command("migrate", "copy tick_data from the source into the target hypertable", _setup)
def _migrate(args: argparse.Namespace) -> int:
    from .. import migrate

    if args.measure_paths:
        return _measure_paths(target_url(args), as_json=args.json)
    src, tgt = source_url(args), target_url(args)
    batch = migrate.DEFAULT_BATCH_SIZE if args.batch_size is None else args.batch_size
    opts = {"batch_size": batch, "since": args.since, "until": args.until,
            "symbols": args.symbols, "include_expired": args.include_expired}
    if args.dry_run:
        return _dry_run(migrate.dry_run(src, tgt, **opts), as_json=args.json)
    result = migrate.run(src, tgt, workers=args.workers,
                         direct_compress=args.direct_compress or None, **opts)
    if args.json:
        print_json(result.summary())
        return 0
    print_table([{"field": k, "value": v} for k, v in result.summary().items()])
    if result.quarantined_rows:
        print(f"\n{result.quarantined_rows} row(s) quarantined in tsj_migration_quarantine "
              "this run; the newest:")
        shown = migrate.quarantined(tgt, limit=10)[["time", "symbol", "volume", "reason"]]
        print_table(shown.astype(object).where(shown.notna(), "").to_dict("records"))
    if result.expired is not None and result.expired.rows:
        print(f"\n{result.expired.describe()}")
    if not result.batches:
        print("\nnothing to migrate: the source has no ticks in the window"
              + (" inside the target's retention" if result.expired and result.expired.rows
                 else ""))
        return 0
    print(f"\nverified {len(result.verification)} symbol-day(s): source = target + quarantine")
    if result.candles_refreshed:
        print(f"refreshed {', '.join(result.candles_refreshed)}")
    note = migrate.pooler_note(src, tgt)
    if note:
        print(note)
    return 0


def _dry_run(d: DryRun, *, as_json: bool) -> int:
    summary = {"plan_key": d.plan_key, "batches": d.batches, "done": d.done, "rows": d.rows,
               "rate_rows_per_s": round(d.rate), "rate_from": d.rate_from,
               "estimated_s": round(d.estimated_s, 1),
               **(d.expired.summary() if d.expired else {})}
    # day is empty for rows outside the tick domain (they go to the quarantine)
    counts = [r | {"day": "odd" if r["day"] is None or r["day"] != r["day"] else str(r["day"])}
              for r in d.counts.to_dict("records")]
    if as_json:
        print_json(summary | {"counts": counts})
        return 0
    print_table(counts, ["day", "symbol", "rows"])
    print()
    print_table([{"field": k, "value": v} for k, v in summary.items()])
    if d.expired is not None and d.expired.rows:
        print(f"\n{d.expired.describe()}")
    print("\ndry run: nothing was written")
    return 0


def _measure_paths(url: Endpoint, *, as_json: bool) -> int:
    from ..migrate.paths import measure

    df = measure(url)
    rows = df.astype(object).where(df.notna(), "").to_dict("records")
    if as_json:
        print_json({"paths": rows})
        return 0
    print_table(rows, ["way", "runs", "rows", "p50_rows_per_s", "min_rows_per_s",
                       "max_rows_per_s", "bytes", "compressed", "supported", "note"])
    return 0
