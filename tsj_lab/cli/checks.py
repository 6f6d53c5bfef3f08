"""tsj check: the integrity suite as one table; exit 1 on any fail (or warn with --strict)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from ..config import progress_enabled
from . import add_target, command, print_json, print_table, settings, source_url, target_url

if TYPE_CHECKING:
    from ..checks import CheckResult


def _setup(p: argparse.ArgumentParser) -> None:
    add_target(p, source=True)
    p.add_argument("--no-source", action="store_true",
                   help="skip reconciliation (reported as unsupported, not hidden)")
    p.add_argument("--strict", action="store_true", help="warnings fail too")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--sample", type=int, default=0, metavar="N",
                   help="compare N random buckets per candle view with the ticks (default 0: all)")
    p.add_argument("--interval-ms", type=float, metavar="MS",
                   help="expected tick spacing (default: each symbol's median step)")
    p.add_argument("--gap-multiple", type=float, default=10.0, metavar="K",
                   help="a gap is longer than K expected intervals (default 10)")
    p.add_argument("--break", dest="breaks", action="append", metavar="HH:MM-HH:MM",
                   help="a daily UTC session break (repeatable; default 21:00-23:00, "
                        "the CME halt); --break none for no window")
    p.add_argument("--all", action="store_true", help="show ok rows too (default: findings)")


@command("check", "integrity checks: reconcile source and target, tick quality, candles, "
         "layout", _setup)
def _check(args: argparse.Namespace) -> int:
    from .. import checks

    options: dict[str, Any] = {"sample": args.sample, "interval_ms": args.interval_ms,
                                  "gap_multiple": args.gap_multiple}
    if args.breaks:
        options["breaks"] = tuple(b for b in args.breaks if b.lower() != "none")
    checks.Options(**options)  # bad values fail here, before any connection
    target = target_url(args)
    source = None if args.no_source else source_url(args)
    results = checks.run(target, source_url=source, progress=progress_enabled(settings(args)),
                         **options)
    status = checks.worst(results)
    if args.json:
        print_json({"target": target.redacted, "source": source.redacted if source else None,
                    "status": status, "strict": args.strict, "summary": checks.summary(results),
                    "results": [r.as_dict() for r in results]})
    else:
        shown = [r for r in results if args.all or r.status != "ok"]
        print_table([_row(r) for r in shown] or [{"check": "all", "status": "ok"}])
        counts = ", ".join(f"{n} {s}" for s, n in checks.summary(results).items() if n)
        print(f"\n{status}: {counts} ({len(results)} rows)")
    return checks.exit_status(results, strict=args.strict)


def _row(r: CheckResult) -> dict[str, Any]:
    d = r.as_dict()
    return {"check": d["check"], "status": d["status"], "table": d["table"],
            "symbol": d["symbol"] or "", "day": d["day"] or "", "observed": d["observed"],
            "expected": d["expected"], "rows": d["rows_affected"], "detail": d["detail"]}
