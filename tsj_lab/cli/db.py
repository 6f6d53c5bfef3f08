"""tsj db start|stop|status|url|setup|pooler|upgrade, and tsj probe."""

from __future__ import annotations

import argparse

from ..domain import PRODUCTION
from . import add_json, add_target, command, print_json, print_table, settings, target_url


def _embedded(args: argparse.Namespace):
    from ..server.cluster import from_settings

    return from_settings(settings(args))


@command("db start", "set up (first time) and start the embedded TimescaleDB")
def _db_start(args: argparse.Namespace) -> int:
    server = _embedded(args)
    fetched = server.ensure_binaries()
    url = server.start()
    print(f"{'installed and ' if fetched else ''}running: {url}")
    return 0


@command("db stop", "stop the embedded server")
def _db_stop(args: argparse.Namespace) -> int:
    from ..server.pooler import MODES, PgBouncer

    server = _embedded(args)
    for mode in MODES:  # a pooler in front of a stopped server serves nobody
        PgBouncer(server, mode=mode).stop()
    print("stopped" if server.stop() else "not running")
    return 0


@command("db status", "pid, port, versions and license of the embedded server",
         lambda p: p.add_argument("--json", action="store_true"))
def _db_status(args: argparse.Namespace) -> int:
    st = _embedded(args).status()
    data = {"running": st.running, "pid": st.pid, "port": st.port, "data_dir": st.data_dir,
            "flavor": st.flavor, "postgres": st.postgres_version,
            "timescaledb": st.timescaledb_version, "license": st.license,
            "edition": st.edition, "production": st.versus_production}
    if args.json:
        print_json(data)
    else:
        for k, v in data.items():
            print(f"{k:12} {v if v is not None else '-'}")
    return 0 if st.running else 3


@command("db url", "print the embedded server's URL (no password: it names a passfile)",
         lambda p: p.add_argument("--source", dest="source_db", action="store_true",
                                  help="the plain source database"))
def _db_url(args: argparse.Namespace) -> int:
    from ..server.cluster import SOURCE_DB, TARGET_DB

    print(_embedded(args).url(SOURCE_DB if args.source_db else TARGET_DB))
    return 0


@command("db setup", "download and relocate the server and PgBouncer binaries and, for the "
         "timescale edition, build TimescaleDB from source (nothing started)")
def _db_setup(args: argparse.Namespace) -> int:
    from ..server.pooler import PgBouncer

    server = _embedded(args)
    fetched = server.ensure_binaries()
    fetched = PgBouncer(server).ensure_binaries() or fetched
    print("installed" if fetched else "already installed")
    return 0


def _pooler_args(p: argparse.ArgumentParser) -> None:
    from ..server.pooler import MODES

    p.add_argument("--mode", choices=MODES, default="transaction",
                   help="PgBouncer's pool_mode (default: %(default)s, as cloud poolers hand out)")
    p.add_argument("--source", dest="source_db", action="store_true",
                   help="print the plain source database's URL through it")
    p.add_argument("--stop", action="store_true", help="stop it instead")


@command("db pooler", "PgBouncer in front of the embedded server: start it, print its URL",
         _pooler_args)
def _db_pooler(args: argparse.Namespace) -> int:
    from ..server.cluster import SOURCE_DB, TARGET_DB
    from ..server.pooler import PgBouncer

    bouncer = PgBouncer(_embedded(args), mode=args.mode)
    if args.stop:
        print("stopped" if bouncer.stop() else "not running")
        return 0
    fetched = bouncer.ensure_binaries()
    bouncer.start()
    print(f"{'installed and ' if fetched else ''}running ({args.mode} mode): "
          f"{bouncer.url(SOURCE_DB if args.source_db else TARGET_DB)}")
    return 0


def _upgrade_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="from_version", required=True, metavar="VERSION",
                   help="the TimescaleDB version whose data folder to take over (e.g. 2.24.0); "
                        "the version to update to is TSJ_TIMESCALEDB_VERSION")


@command("db upgrade", "take over the data folder of another TimescaleDB version and update "
         "the extension (ALTER EXTENSION timescaledb UPDATE; there is no way back)",
         _upgrade_args)
def _db_upgrade(args: argparse.Namespace) -> int:
    from ..server.cluster import Embedded

    server = _embedded(args)
    older = Embedded(server.home, instance=server.instance, pg_major=server.pg_major,
                     timescaledb_version=args.from_version, apt_mirror=server.apt_mirror)
    updated = server.upgrade_from(older)
    print(f"{older.dir} is now {server.dir}; TimescaleDB updated to "
          f"{server.timescaledb_version} in {', '.join(updated) or 'no database'}")
    return 0


@command("probe", "capability table of the target: versions, license, edition",
         add_target, add_json)
def _probe(args: argparse.Namespace) -> int:
    from ..db import probe_url

    url = target_url(args)
    caps = probe_url(url).as_dict()
    caps |= {"production": PRODUCTION.versus(caps["postgres_version"],
                                             caps["timescaledb_version"]),
             "target": url.redacted}
    if args.json:
        print_json(caps)
    else:
        print_table([{"property": k, "value": v} for k, v in caps.items()])
    return 0
