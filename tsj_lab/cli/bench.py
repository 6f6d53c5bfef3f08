"""tsj bench [--quick] [--large]: the data set, then notebooks/04_benchmark.ipynb as a report,
then the live report (notebooks/07_live.ipynb, ``tsj live``) unless ``--no-live``."""

from __future__ import annotations

import argparse
import datetime as dt

from ..config import progress_enabled
from ..domain import TickSpec
from . import add_target, command, print_table, settings, source_url, target_url
from .live import add_live_options, run_report


def _setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true",
                   help="fewer samples, round trips and levels (same data set)")
    p.add_argument("--large", action="store_true",
                   help="30 days x 4 symbols, and latency against table size (long)")
    p.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                   metavar=("KEY", "VALUE"), help="override one notebook parameter (repeatable)")
    p.add_argument("--no-generate", action="store_true",
                   help="fail instead of generating a missing data set")
    p.add_argument("--replace", action="store_true",
                   help="delete and regenerate a bench day that holds another tick spacing")
    p.add_argument("--no-live", action="store_true",
                   help="skip the live report (07_live: the policies on TimescaleDB's own "
                        "scheduler while ticks arrive, about 5 minutes)")
    add_live_options(p)
    add_target(p, source=True)


@command("bench", "benchmark plain PostgreSQL against TimescaleDB into a dated report", _setup)
def _bench(args: argparse.Namespace) -> int:
    # deferred: papermill and nbconvert take a second to import, and `tsj --help` loads every command
    from .. import bench
    from ..lab import reports

    # Parameters first: a misspelt -p fails before any server starts or data is generated.
    params = bench.parameters(large=args.large, quick=args.quick)
    declared = reports.notebook_parameters(reports.notebook_path("04_benchmark"))
    params.update(reports.coerce_parameters(dict(args.parameter), declared,
                                            notebook="notebook '04_benchmark'"))
    reports.check_parameters(params, declared=declared, notebook="notebook '04_benchmark'")
    target, source = target_url(args), source_url(args)
    # Generate up front, with progress bars in the terminal, rather than inside the report;
    # with size steps only the first, so that the notebook measures the table as it grows.
    days = min(params["size_steps"]) if params["size_steps"] else params["days"]
    spec = TickSpec(tuple(params["symbols"]), dt.date.fromisoformat(params["start"]), days,
                    params["interval_ms"], params["seed"])
    _, ds = bench.prepare(target, source, spec, generate=not args.no_generate,
                          replace=args.replace)
    print(f"data set: {ds.ticks_per_symbol:,} ticks x {len(ds.symbols)} symbols "
          f"({', '.join(ds.symbols)}) in each database")
    # URLs reach the kernel in its environment (reports.run), never as parameters
    config = settings(args)
    report = reports.run("04_benchmark", parameters={"target": "target", "source": "source",
                                                     **params},
                         progress=progress_enabled(config), settings=config)
    checks = report.summary.get("checks", [])
    if checks:
        print_table([{"check": c.get("name"), "status": c.get("status"),
                      "detail": c.get("detail")} for c in checks])
    print(f"{report.status}: {report.html}")
    print(f"summary: {report.json}")
    if args.no_live:
        return 0
    # its own instance with the scheduler on (or --live / TSJ_LIVE_URL): the ticks above
    # have fixed dates, and their instance never runs a job by itself
    return 0 if run_report(config, quick=args.quick) else 1
