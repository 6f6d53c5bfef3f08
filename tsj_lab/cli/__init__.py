"""The ``tsj`` command: one subcommand per phase, each a thin layer over the package.

Every :class:`~tsj_lab.errors.TsjError` (and a bad value, ``ValueError``) is printed as one
line on stderr, with passwords redacted, and exits with status 1; no traceback. So is any
database error a phase did not name itself (a role's statement_timeout on a statement tsj
does not bound, a dropped connection): :func:`tsj_lab.db.limits.database_error` says which
setting or what the server said, and the fix.
Subcommands are registered with :func:`command`; each gets ``args`` and returns an exit
status.

The phase modules (schema, generate, migrate, ...) are imported inside the handlers, on
purpose: building the parser, which every ``tsj`` run does (``--help``, a typo), must not
import pandas, numpy, pyarrow and plotly (about a second). ruff's PLC0415 is off for
``tsj_lab/cli/`` for that reason only (pyproject.toml).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import psycopg

from ..config import Settings, redact
from ..db.limits import database_error
from ..errors import TsjError

if TYPE_CHECKING:
    from ..db.endpoint import Endpoint

log = logging.getLogger("tsj_lab")

#: one module per phase under tsj_lab/cli/, imported when present
PHASES = ("db", "schema", "generate", "migrate", "checks", "bench", "live", "reports")

GROUP_HELP = {
    "db": "the embedded TimescaleDB: start, stop, status, url, setup, pooler",
    "reports": "the dated reports: list, index",
}

Handler = Callable[[argparse.Namespace], int]
Setup = Callable[[argparse.ArgumentParser], object]
_COMMANDS: list[tuple[list[str], str, Setup, Handler]] = []


def command(path: str, help: str, *setups: Setup) -> Callable[[Handler], Handler]:
    """Register ``handler`` as ``tsj <path>`` (``path`` may be two words: 'db start');
    each of ``setups`` adds options to its parser."""

    def setup(p: argparse.ArgumentParser) -> None:
        for add in setups:
            add(p)

    def register(handler: Handler) -> Handler:
        _COMMANDS.append((path.split(), help, setup, handler))
        return handler

    return register


def settings(args: argparse.Namespace) -> Settings:
    """Settings from the environment, with ``--target``/``--source`` (and ``--live``)
    overriding URLs; read once per command (kept on ``args``)."""
    if "_settings" not in vars(args):
        args._settings = Settings.load(
            target_url=getattr(args, "target", None), source_url=getattr(args, "source", None),
            live_url=getattr(args, "live", None))
    return args._settings


def endpoint(args: argparse.Namespace, name: str) -> Endpoint:
    """The command's Endpoint for ``name`` ('target', 'source', 'pooler'), resolved once:
    every phase of the command is handed this one object (and its one probe)."""
    from ..db.connections import resolve

    made: dict[str, Endpoint] = vars(args).setdefault("_endpoints", {})
    if name not in made:
        made[name] = resolve(name, settings=settings(args))
    return made[name]


def target(args: argparse.Namespace) -> Endpoint:
    return endpoint(args, "target")


def source(args: argparse.Namespace) -> Endpoint:
    return endpoint(args, "source")


# the names the subcommands call them by (their locals are often named target and source)
target_url, source_url = target, source


def add_json(p: argparse.ArgumentParser) -> None:
    """The ``--json`` option: JSON on stdout instead of a table."""
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def add_target(p: argparse.ArgumentParser, *, source: bool = False) -> None:
    """The ``--target`` (and ``--source``) URL options every database command shares."""
    p.add_argument("--target", metavar="URL",
                   help="TimescaleDB URL (default: TSJ_DATABASE_URL, else the embedded server)")
    if source:
        p.add_argument("--source", metavar="URL",
                       help="plain PostgreSQL URL (default: TSJ_SOURCE_URL, else embedded tsj_source)")


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def print_table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> None:
    """A plain aligned text table: what a terminal user reads."""
    if not rows:
        print("(no rows)")
        return
    columns = columns or list(rows[0])
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


# -- entry point ------------------------------------------------------------------------


def _load_commands() -> None:
    """Import the phase modules that register subcommands of their own."""
    for name in PHASES:
        try:
            importlib.import_module(f"tsj_lab.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"tsj_lab.cli.{name}":
                raise


def build_parser() -> argparse.ArgumentParser:
    _load_commands()
    parser = argparse.ArgumentParser(
        prog="tsj",
        description="tsj-lab: provision, migrate, check and benchmark a TimescaleDB tick store",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    subs = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction] = {}
    for words, help_, setup, handler in _COMMANDS:
        target = subs
        if len(words) == 2:
            if words[0] not in groups:
                grp = subs.add_parser(words[0], help=GROUP_HELP.get(words[0], words[0]))
                groups[words[0]] = grp.add_subparsers(dest="subcommand", required=True,
                                                      metavar="SUBCOMMAND")
            target = groups[words[0]]
        p = target.add_parser(words[-1], help=help_, description=help_)
        setup(p)
        p.set_defaults(handler=handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="tsj: %(message)s")
    # setting up the embedded server takes minutes once (the build): always say so
    logging.getLogger("tsj_lab.server").setLevel(logging.INFO)
    try:
        return int(args.handler(args) or 0)
    except (TsjError, ValueError) as exc:
        print(f"tsj: error: {_line(exc)}", file=sys.stderr)
        return 1
    except psycopg.Error as exc:
        print(f"tsj: error: {_line(database_error(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("tsj: interrupted", file=sys.stderr)
        return 130
    finally:
        for ep in vars(args).get("_endpoints", {}).values():
            ep.close()


def _line(exc: BaseException) -> str:
    """The error as one line without a password."""
    return redact(" ".join(str(exc).split()))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
