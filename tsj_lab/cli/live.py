"""tsj live: the story's policies run by TimescaleDB's own scheduler while ticks arrive,
as a dated report (notebooks/07_live.ipynb). ``tsj bench`` runs it too (``--no-live``)."""

from __future__ import annotations

import argparse
from typing import Any

from ..config import Settings, progress_enabled
from . import command, print_table, settings

#: the report's parameters for a bench run: minutes, not seconds (the notebook's own
#: defaults are the seconds CI affords)
BENCH_PARAMETERS: dict[str, Any] = {"story_seconds": 150.0, "stress_seconds": 90.0,
                                    "stress_rate": 100, "days": 95, "old_spacing_s": 60,
                                    "recent_spacing_s": 10, "story_hours": 2.0}


def add_live_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--live", metavar="URL",
                   help="a database whose server runs TimescaleDB's job scheduler (default: "
                        "TSJ_LIVE_URL, else tsj's own 'live' instance, started for the run)")


def _setup(p: argparse.ArgumentParser) -> None:
    add_live_options(p)
    p.add_argument("--quick", action="store_true",
                   help="seconds instead of minutes: the notebook's own small defaults")
    p.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                   metavar=("KEY", "VALUE"), help="override one notebook parameter (repeatable)")
    p.add_argument("--target", metavar="URL",
                   help="the bench's TimescaleDB, whose scheduler the report shows is off")


@command("live", "the story's policies on TimescaleDB's own scheduler while ticks arrive: "
                 "a dated report", _setup)
def _live(args: argparse.Namespace) -> int:
    report = run_report(settings(args), quick=args.quick, overrides=dict(args.parameter))
    return 0 if report else 1


def run_report(config: Settings, *, quick: bool = False,
               overrides: dict[str, str] | None = None) -> bool:
    """The live report on ``config``'s live database; tsj's own live instance, when it is
    the one, is started for it and stopped afterwards unless it was running. True: the
    report's checks hold."""
    # deferred: papermill and nbconvert take a second to import
    from ..db.connections import live_server
    from ..lab import reports

    path = reports.notebook_path("07_live")
    declared = reports.notebook_parameters(path)
    params: dict[str, Any] = {"live": "live", "target": "target",
                              **({} if quick else BENCH_PARAMETERS)}
    params.update(reports.coerce_parameters(overrides or {}, declared,
                                            notebook="notebook '07_live'"))
    reports.check_parameters(params, declared=declared, notebook="notebook '07_live'")
    own = None if config.live_url else live_server(config)
    was_running = own.status().running if own else True
    if own:
        own.start()
    try:
        report = reports.run("07_live", parameters=params, progress=progress_enabled(config),
                             settings=config)
    finally:
        if own and not was_running:
            own.stop()  # an idle scheduler need not outlive the run
    checks = report.summary.get("checks", [])
    if checks:
        print_table([{"check": c.get("name"), "status": c.get("status"),
                      "detail": c.get("detail")} for c in checks])
    print(f"{report.status}: {report.html}")
    print(f"summary: {report.json}")
    return not any(c.get("status") == "fail" for c in checks)
