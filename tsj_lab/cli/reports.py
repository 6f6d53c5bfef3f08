"""tsj report NAME [-p key value ...], tsj reports list|index."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

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


def _compare_setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("reports", nargs="*", type=Path, metavar="JSON",
                   help="two benchmark summaries, first the earlier (default: the newest "
                        "04_benchmark run and the one before it with the same parameters)")
    p.add_argument("--tolerance", type=float, default=None, metavar="F",
                   help="how far a ratio may move and still hold (default 0.15)")
    _reports_dir(p)


@command("reports compare", "two benchmark runs' verdicts side by side: does each hold "
         "(same status, ratios within 15%)?", _compare_setup)
def _reports_compare(args: argparse.Namespace) -> int:
    from ..bench import verdicts
    from ..lab import html

    if len(args.reports) not in (0, 2):
        raise ValueError(f"give two report JSON files, or none for the newest two runs "
                         f"(got {len(args.reports)})")
    if args.reports:
        pair = [_summary(p) for p in args.reports]
    else:
        pair = _last_two(html.runs(args.reports_dir or html.REPORTS_DIR))
    tolerance = verdicts.TOLERANCE if args.tolerance is None else args.tolerance
    table = verdicts.compare(*pair, tolerance=tolerance)
    print(f"{pair[0].get('started_at', '?')[:19]} against {pair[1].get('started_at', '?')[:19]}")
    print_table([{k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in r.items()}
                 for r in table.to_dict("records")])
    moved = table[~table["holds"]]
    if len(moved):
        print(f"{len(moved)} of {len(table)} verdict(s) do not hold: "
              f"{', '.join(moved['check'].head(8))}")
        return 1
    print(f"all {len(table)} verdicts hold (ratios within {tolerance:.0%})")
    return 0


def _summary(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read report summary {path}: {exc}; give a reports/*/*.json "
                         "file of notebook 04_benchmark") from exc


#: parameters that name a run's own files, not what it measured
_RUN_ONLY = ("memory_file",)


def _last_two(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The newest 04_benchmark run and the newest earlier one measured the same way."""
    bench = [r for r in runs if r.get("name") == "04_benchmark" and r.get("status") == "ok"]

    def same(r: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in (r.get("parameters") or {}).items() if k not in _RUN_ONLY}

    for earlier in bench[1:]:
        if bench and same(earlier) == same(bench[0]):
            return [earlier, bench[0]]
    raise ValueError("no two benchmark runs with the same parameters under reports/; run "
                     "'make bench' twice, or name two summaries")
