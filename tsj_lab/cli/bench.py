"""tsj bench [--quick] [--large]: the data set, then notebooks/04_benchmark.ipynb as a report,
then the live report (notebooks/07_live.ipynb, ``tsj live``) unless ``--no-live``."""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
from pathlib import Path
from typing import Any

from ..config import progress_enabled
from ..db import Endpoint
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
    from ..bench import memory
    from ..lab import reports

    # Parameters first: a misspelt -p fails before any server starts or data is generated.
    params = bench.parameters(large=args.large, quick=args.quick)
    declared = reports.notebook_parameters(reports.notebook_path("04_benchmark"))
    params.update(reports.coerce_parameters(dict(args.parameter), declared,
                                            notebook="notebook '04_benchmark'"))
    reports.check_parameters(params, declared=declared, notebook="notebook '04_benchmark'")
    target, source = target_url(args), source_url(args)
    # the run's processes watched from here on: the notebook records their peak memory
    with tempfile.TemporaryDirectory(prefix="tsj-memory-") as tmp, \
            memory.watch_for(target, out=Path(tmp) / "memory.json") as watch:
        params["memory_file"] = str(watch.out)
        ok, executed = _bench_report(args, params, target, source)
        table = watch.snapshot().table()
    cells = watch.snapshot().by_cell(executed) if executed else None
    if cells is not None and len(cells):
        print("the kernel's largest resident set, by cell of the benchmark notebook:")
        print_table([{"MiB": f"{r['rss_mib']:,.0f}", "s": f"{r['seconds'] or 0:,.0f}",
                      "cell": r["cell"]} for r in cells.head(5).to_dict("records")])
    print_table([{"process": r["process"], "processes": r["processes"],
                  "peak RSS MiB": f"{r['peak_rss_mib']:,.0f}",
                  "peak private MiB": f"{r['peak_private_mib']:,.0f}"}
                 for r in table.to_dict("records")])
    print(f"run: {watch.snapshot().seconds:,.0f} s")
    return 0 if ok else 1


def _bench_report(args: argparse.Namespace, params: dict[str, Any], target: Endpoint,
                  source: Endpoint) -> tuple[bool, Path | None]:
    """The data set, the benchmark report and (unless --no-live) the live report; whether
    all went well, and the executed benchmark notebook."""
    from .. import bench
    from ..lab import reports

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
    executed = report.notebook
    if args.no_live:
        return True, executed
    # its own instance with the scheduler on (or --live / TSJ_LIVE_URL): the ticks above
    # have fixed dates, and their instance never runs a job by itself
    return run_report(config, quick=args.quick), executed


def _versions_setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("--versions", default=None, metavar="A,B",
                   help="TimescaleDB versions to compare, production's first (default: "
                        "production's 2.24.0 and the newest vendored release)")
    p.add_argument("--days", type=int, default=3, help="days of ticks, ending now (default 3)")
    p.add_argument("--symbols", default="ES,NQ", help="symbols (default ES,NQ)")
    p.add_argument("--interval-ms", type=int, default=1000,
                   help="tick spacing in ms (default 1000: a few minutes in all)")
    p.add_argument("--samples", type=int, default=10, help="samples per latency (default 10)")
    p.add_argument("--keep", action="store_true", help="leave the servers running")


@command("bench-versions", "the same data and workloads on production's TimescaleDB and a "
         "newer release, side by side, into a dated report", _versions_setup)
def _bench_versions(args: argparse.Namespace) -> int:
    from ..bench import versions

    started = dt.datetime.now(dt.UTC)
    chosen = [v.strip() for v in args.versions.split(",")] if args.versions else None
    result = versions.compare(versions=chosen, settings=settings(args), days=args.days,
                              symbols=tuple(s.strip() for s in args.symbols.split(",")),
                              interval_ms=args.interval_ms, samples=args.samples,
                              keep=args.keep)
    paths = versions.write_report(result, started=started,
                                  parameters={"samples": args.samples})
    def shown(x: float) -> str:
        return "-" if x != x else f"{x:.4g}"  # NaN: not measured on that version

    print_table([{"figure": r["figure"], **{v: shown(r[v]) for v in result.versions},
                  "ratio": shown(r["ratio"]), "n": r["n"]}
                 for r in result.figures.to_dict("records")])
    for line in result.findings():
        print(f"- {line}")
    print(f"report: {paths['html']}")
    print(f"summary: {paths['json']}")
    return 0
