"""tsj migrate: source tick_data -> target hypertable, resumable, verified."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from ..config import progress_enabled
from . import add_target, command, print_json, print_table, settings, source_url, target_url

if TYPE_CHECKING:
    from ..db import Endpoint
    from ..migrate import DryRun
    from ..migrate.preflight import Preflight


def _setup(p: argparse.ArgumentParser) -> None:
    add_target(p, source=True)
    p.add_argument("--batch-size", type=int, default=None,  # None: migrate.DEFAULT_BATCH_SIZE
                   help="most rows per batch (one transaction, one checkpoint; default 100000)")
    p.add_argument("--since", help="first time to copy (ISO; default: the beginning)")
    p.add_argument("--until", help="copy times before this (ISO; default: the end)")
    p.add_argument("--symbols", help="comma-separated symbols (default: all)")
    p.add_argument("--workers", type=int, default=None,
                   help="batches copied in parallel (default: 1 on a near link, the source "
                        "is production; up to 8 at a 300 ms round trip)")
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
                   help="the preflight (what source and target allow this role, each item "
                        "ok / warn / blocker with the fix), then counts per day and symbol "
                        "and an estimated time; writes nothing")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


@command("migrate", "copy tick_data from the source into the target hypertable", _setup)
def _migrate(args: argparse.Namespace) -> int:
    if args.measure_paths:
        return _measure_paths(target_url(args), as_json=args.json)
    src, tgt = source_url(args), target_url(args)
    # the command's single steps (preflight, plan, verification, the quarantine shown) share
    # one connection per side; the batches have their own
    with src.held(), tgt.held():
        return _migrate_on(args, src, tgt)


def _migrate_on(args: argparse.Namespace, src: Endpoint, tgt: Endpoint) -> int:
    from .. import migrate
    from ..migrate import preflight

    batch = migrate.DEFAULT_BATCH_SIZE if args.batch_size is None else args.batch_size
    opts = {"batch_size": batch, "since": args.since, "until": args.until,
            "symbols": args.symbols, "include_expired": args.include_expired}
    if args.dry_run:
        pf = preflight.check(src, tgt)
        if pf.blockers:  # counting would fail (or lie) the same way: the table says why
            _print_preflight(pf, as_json=args.json)
            pf.require()
        return _dry_run(migrate.dry_run(src, tgt, **opts), pf, as_json=args.json)
    result = migrate.run(src, tgt, workers=args.workers,
                         progress=progress_enabled(settings(args)),
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


def _print_preflight(pf: Preflight, *, as_json: bool) -> None:
    if as_json:
        print_json({"preflight": pf.rows(), "preflight_status": pf.status})
        return
    print_table(pf.rows(), ["side", "item", "status", "value", "fix"])
    print(f"\npreflight: {pf.status}\n")


def _dry_run(d: DryRun, pf: Preflight, *, as_json: bool) -> int:
    summary = {"plan_key": d.plan_key, "batches": d.batches, "done": d.done, "rows": d.rows,
               "rate_rows_per_s": round(d.rate), "rate_from": d.rate_from,
               "estimated_s": round(d.estimated_s, 1),
               **(d.expired.summary() if d.expired else {})}
    # day is empty for rows outside the tick domain (they go to the quarantine)
    counts = [r | {"day": "odd" if r["day"] is None or r["day"] != r["day"] else str(r["day"])}
              for r in d.counts.to_dict("records")]
    if as_json:
        print_json(summary | {"counts": counts, "preflight": pf.rows(),
                              "preflight_status": pf.status})
        return 0
    _print_preflight(pf, as_json=False)
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


# -- the parallel run: sync, follow, cutover ------------------------------------------------


def _sync_setup(p: argparse.ArgumentParser) -> None:
    add_target(p, source=True)
    p.add_argument("--since", help="first time to compare (ISO; default: the hypertable's "
                                   "first kept day; with --reverse: the flip, required)")
    p.add_argument("--until", help="compare times before this (ISO; default: the end)")
    p.add_argument("--symbols", help="comma-separated symbols (default: all)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="most rows per copied batch (default 100000)")
    p.add_argument("--reverse", action="store_true",
                   help="the copy back after a flip: --source is the TimescaleDB, --target the "
                        "plain table, whose days from --since on are made equal to it")
    p.add_argument("--force", action="store_true",
                   help="forward even when the target holds ticks newer than the source's "
                        "(it took writes: they would be deleted)")
    p.add_argument("--samples", type=int, default=5, metavar="DAYS",
                   help="show sample differing rows of this many days (default 5; 0: none)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


@command("sync", "catch-up: re-copy the symbol-days whose content differs between source and "
         "target (new, late, corrected and deleted ticks)", _sync_setup)
def _sync(args: argparse.Namespace) -> int:
    from .. import migrate
    from ..migrate import sync

    src, tgt = source_url(args), target_url(args)
    batch = migrate.DEFAULT_BATCH_SIZE if args.batch_size is None else args.batch_size
    res = sync.sync(src, tgt, since=args.since, until=args.until, symbols=args.symbols,
                    batch_size=batch, reverse=args.reverse, force=args.force,
                    samples=max(0, args.samples))
    if args.json:
        print_json(res.summary() | {"samples": res.samples.to_dict("records")})
        return 0
    print_table([{"field": k, "value": v} for k, v in res.summary().items()])
    if len(res.samples):
        print("\nsample differences found (before copying):")
        print_table(_records(res.samples))
    if res.skipped_odd:
        print(f"\n{res.skipped_odd} symbol(s) differ in rows outside the tick domain: "
              "'tsj migrate' quarantines those")
    print("\nlevel: nothing differed" if res.level else
          f"\ncopied {res.days_copied} and deleted {res.days_deleted} symbol-day(s); the "
          "target now equals the source as it was read (writes since are the next pass's)")
    return 0


def _records(df: Any) -> list[dict[str, Any]]:
    return df.astype(object).where(df.notna(), "").to_dict("records")


def _follow_setup(p: argparse.ArgumentParser) -> None:
    add_target(p, source=True)
    p.add_argument("--interval", type=float, default=0.5, metavar="S",
                   help="seconds between steps (default 0.5)")
    p.add_argument("--overlap", type=float, default=1.0, metavar="S",
                   help="seconds before each symbol's newest target tick copied again, for "
                        "ticks committed out of order (default 1)")
    p.add_argument("--duration", type=float, metavar="S",
                   help="stop after this many seconds (default: until Ctrl-C)")
    p.add_argument("--steps", type=int, metavar="N", help="stop after N steps")
    p.add_argument("--force", action="store_true",
                   help="follow even when the target holds ticks newer than the source's "
                        "(it took writes: the newest second of them would be deleted)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


@command("follow", "keep the target's newest ticks level with the source's, copying by time "
         "every interval (Ctrl-C stops)", _follow_setup)
def _follow(args: argparse.Namespace) -> int:
    from ..migrate.follow import follow

    res = follow(source_url(args), target_url(args), interval=args.interval,
                 overlap=args.overlap, duration=args.duration, max_steps=args.steps,
                 force=args.force)
    if args.json:
        print_json(res.summary())
    else:
        print_table([{"field": k, "value": v} for k, v in res.summary().items()])
    return 0


def _cutover_setup(p: argparse.ArgumentParser) -> None:
    add_target(p, source=True)
    p.add_argument("--max-lag", type=float, default=5.0, metavar="S",
                   help="most seconds the target's newest tick may trail the source's "
                        "(default 5)")
    p.add_argument("--symbol", help="the shadow read's symbol (default: the newest on the target)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


@command("cutover", "readiness to flip USE_TIMESCALEDB: lag, differing days with rows, last "
         "level verification, candles, shadow reads; exit 0 only on go", _cutover_setup)
def _cutover(args: argparse.Namespace) -> int:
    from ..migrate.cutover import readiness

    r = readiness(source_url(args), target_url(args), max_lag_s=args.max_lag, symbol=args.symbol)
    if args.json:
        print_json(r.summary() | {"verdict_line": r.verdict(), "lag": _records(r.lag),
                                  "differing": _records(r.differing.astype({
                                      "checksum_source": str, "checksum_target": str})),
                                  "samples": _records(r.samples), "candles": _records(r.candles),
                                  "shadow": _records(r.shadow)})
        return 0 if r.go else 1
    print_table(_records(r.lag))
    if len(r.differing):
        print("\ndiffering symbol-days:")
        print_table(_records(r.differing[["symbol", "day", "rows_source", "rows_target",
                                          "quarantined", "status"]]))
        if len(r.samples):
            print("\nsample rows (which column, source value, target value):")
            print_table(_records(r.samples))
    if len(r.candles):
        print("\ncandles of the days the catch-up re-copied:")
        print_table(_records(r.candles))
    print("\nshadow reads (the application's questions, asked of both):")
    print_table(_records(r.shadow))
    s = r.summary()
    print(f"\nlast whole level verification: {s['last_level'] or 'never'}"
          + (f" ({s['since_last_level_s']} s ago)" if s["last_level"] else ""))
    print(r.verdict())
    return 0 if r.go else 1
