"""tsj provision, validate, refresh, retention: the provisioning phase (tsj_lab.provision.schema)."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING

from . import add_target, command, print_json, print_table, target_url

if TYPE_CHECKING:
    from ..provision.schema import ProvisionResult


def _provision_args(p: argparse.ArgumentParser) -> None:
    add_target(p)
    p.add_argument("--dry-run", action="store_true", help="print the SQL it would run; change nothing")
    p.add_argument("--migrate-data", action="store_true",
                   help="convert an existing plain tick_data holding rows "
                        "(create_hypertable(..., migrate_data => true))")
    p.add_argument("--license", choices=("timescale", "apache"),
                   help="with --dry-run: plan for this license instead of the server's "
                        "(e.g. print the production DDL against the embedded server)")
    p.add_argument("--no-validate", action="store_true", help="skip the AC1-AC6 validation")
    p.add_argument("--json", action="store_true", help="print one JSON document")


@command("provision", "create the hypertable, indexes, policies and candle views the "
         "target's edition supports (idempotent), then validate AC1-AC6", _provision_args)
def _provision(args: argparse.Namespace) -> int:
    from ..provision import schema

    if args.license and not args.dry_run:
        raise ValueError(f"--license {args.license} plans for another license and changes "
                         "nothing: add --dry-run")
    url = target_url(args)
    result = schema.provision(url, dry_run=args.dry_run, migrate_data=args.migrate_data,
                              for_license=args.license)
    rows = [] if args.dry_run or args.no_validate else schema.validate(url)
    if args.json:
        print_json({"provision": result.as_dict(), "validation": [asdict(r) for r in rows]})
    else:
        _print_provision(result, dry_run=args.dry_run)
        if rows:
            print()
            print_table([asdict(r) for r in rows], ["ac", "status", "mode", "detail"])
    return 1 if schema.failed(rows) else 0


def _print_provision(result: ProvisionResult, *, dry_run: bool) -> None:
    print(f"tsj provision: {result.target} ({result.edition} {result.timescaledb_version})")
    if dry_run:
        for step, sql in zip(result.steps, result.sql):
            print(f"\n-- {step.action}: {step.target}\n{sql}")
        print()
    else:
        for step in result.steps:
            print(f"  {step.action}: {step.target}")
    print(result.summary())


def _validate_args(p: argparse.ArgumentParser) -> None:
    add_target(p)
    p.add_argument("--json", action="store_true")


@command("validate", "the story's validation table AC1-AC6 (exit 1 on any failed row)",
         _validate_args)
def _validate(args: argparse.Namespace) -> int:
    from ..provision import schema

    rows = schema.validate(target_url(args))
    if args.json:
        print_json([asdict(r) for r in rows])
    else:
        print_table([asdict(r) for r in rows], ["ac", "status", "mode", "detail"])
    return 1 if schema.failed(rows) else 0


def _policies_args(p: argparse.ArgumentParser) -> None:
    add_target(p)
    p.add_argument("--days", type=int, default=100,
                   help="days of ticks to prove on, more than the retention (default 100)")
    p.add_argument("--keep", action="store_true", help="keep the scratch schema to look at")
    p.add_argument("--json", action="store_true")


@command("policies", "prove AC3-AC5: run each policy job once (CALL run_job) on ticks "
         "spanning more than 90 days in a scratch schema, and check what it did",
         _policies_args)
def _policies(args: argparse.Namespace) -> int:
    from ..checks import policies

    proofs = policies.prove(target_url(args), days=args.days, keep=args.keep)
    if args.json:
        print_json([asdict(p) for p in proofs])
    else:
        print_table([asdict(p) | {"seconds": f"{p.seconds:.3f}"} for p in proofs],
                    ["policy", "job_id", "status", "seconds", "detail"])
    return 1 if policies.failed(proofs) else 0


def _refresh_args(p: argparse.ArgumentParser) -> None:
    add_target(p)
    p.add_argument("--start", type=datetime.fromisoformat, metavar="ISO",
                   help="window start, with offset (continuous aggregates only)")
    p.add_argument("--end", type=datetime.fromisoformat, metavar="ISO",
                   help="window end, with offset (continuous aggregates only)")


@command("refresh", "bring candle_1m/5m/15m/1h up to date with the ticks", _refresh_args)
def _refresh(args: argparse.Namespace) -> int:
    from ..provision import schema

    done = schema.refresh_candles(target_url(args), start=args.start, end=args.end)
    print_table([{"view": r.view, "how": r.how, "seconds": f"{r.seconds:.3f}"} for r in done])
    return 0


def _retention_args(p: argparse.ArgumentParser) -> None:
    add_target(p)
    p.add_argument("--older-than", default="90 days", metavar="INTERVAL",
                   help="drop chunks whose ticks are all older than this (default: 90 days)")
    p.add_argument("--dry-run", action="store_true", help="list the chunks; drop nothing")


@command("retention", "drop tick chunks older than the retention window (drop_chunks)",
         _retention_args)
def _retention(args: argparse.Namespace) -> int:
    from ..provision import schema

    chunks = schema.apply_retention(target_url(args), older_than=args.older_than,
                                    dry_run=args.dry_run)
    verb = "would drop" if args.dry_run else "dropped"
    print(f"{verb} {len(chunks)} chunks older than {args.older_than}")
    for name in chunks:
        print(f"  {name}")
    if chunks and not args.dry_run:
        print("run 'tsj refresh' to recompute the candle views")
    return 0
