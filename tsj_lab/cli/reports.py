"""tsj report NAME [-p key value ...], tsj reports list|index."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import progress_enabled
from . import add_json, add_target, command, print_json, print_table, settings


def _setup_report(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="notebook under notebooks/, e.g. 05_candles")
    p.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                   metavar=("KEY", "VALUE"),
                   help="notebook parameter, typed like its default (repeatable)")
    p.add_argument("--json", action="store_true", help="print the JSON summary")
    p.add_argument("--notebooks-dir", type=Path, default=None, metavar="DIR",
                   help="where NAME.ipynb is (default: notebooks/)")
    p.add_argument("--reports-dir", type=Path, default=None, metavar="DIR",
                   help="where the report goes (default: reports/)")
    add_target(p, source=True)


@command("report", "run notebooks/NAME.ipynb into reports/YYYY-MM-DD/ (ipynb, html, json)",
         _setup_report)
def _report(args: argparse.Namespace) -> int:
    # deferred: papermill and nbconvert take a second to import, and `tsj --help` loads every command
    from ..lab import reports

    config = settings(args)  # a bad --target or --source fails here, before a kernel starts
    notebooks_dir: Path = args.notebooks_dir or reports.NOTEBOOKS_DIR
    reports_dir: Path = args.reports_dir or reports.REPORTS_DIR
    path = reports.notebook_path(args.name, notebooks_dir=notebooks_dir)
    params = reports.coerce_parameters(dict(args.parameter), reports.notebook_parameters(path),
                                        notebook=f"notebook {path.stem!r}")
    # --target/--source reach the kernel in its environment (reports.run), never as parameters
    report = reports.run(args.name, parameters=params, progress=progress_enabled(config),
                         notebooks_dir=notebooks_dir, reports_dir=reports_dir, settings=config)
    if args.json:
        print_json(report.summary)
    else:
        print(f"{report.status}: {report.html}")
        print(f"summary: {report.json}")
    return 0


def _reports_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reports-dir", type=Path, default=None, metavar="DIR",
                   help="default: reports/")


@command("reports list", "the runs under reports/, newest first",
         _reports_dir, add_json)
def _reports_list(args: argparse.Namespace) -> int:
    # deferred: papermill and nbconvert take a second to import, and `tsj --help` loads every command
    from ..lab import html

    where = args.reports_dir or html.REPORTS_DIR
    rows = [{"started": r.get("started_at", "")[:19], "name": r.get("name"),
             "status": r.get("status"), "duration_s": r.get("duration_s"),
             "html": str(Path(where) / r["folder"] / f"{r['stem']}.html")}
            for r in html.runs(where)]
    if args.json:
        print_json(rows)
    else:
        print_table(rows)
    return 0


@command("reports index", "regenerate reports/index.html from the runs' JSON summaries",
         _reports_dir)
def _reports_index(args: argparse.Namespace) -> int:
    # deferred: papermill and nbconvert take a second to import, and `tsj --help` loads every command
    from ..lab import html

    print(html.write_index(args.reports_dir or html.REPORTS_DIR))
    return 0
