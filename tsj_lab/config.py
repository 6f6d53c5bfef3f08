"""Settings from the environment, a ``.env`` file and arguments.

This is the only module (with the CLI and notebook parameter cells) that reads the
environment. URLs keep their password, but nothing here ever prints it: ``repr`` and
``str`` of :class:`Settings` and every message go through :func:`redact`.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from dotenv import dotenv_values
from psycopg.conninfo import conninfo_to_dict

from .domain import PRODUCTION
from .errors import ConfigError

PROJECT_DIR = Path(__file__).resolve().parent.parent
TARGET_VARS = ("TSJ_DATABASE_URL", "TIMESCALE_DATABASE_URL")
SOURCE_VAR = "TSJ_SOURCE_URL"
POOLER_VAR = "TSJ_POOLER_URL"
#: a database whose server runs TimescaleDB's job scheduler, for the live run
LIVE_VAR = "TSJ_LIVE_URL"
HOME_VAR = "TSJ_HOME"
#: connection names notebooks receive instead of URLs (papermill records parameters);
#: 'pooler' is the target through a transaction-mode pooler, for the benchmark's comparison;
#: 'live' a database with TimescaleDB's job scheduler on (tsj's own 'live' instance)
CONNECTION_NAMES = ("target", "source", "pooler", "live")
#: the embedded server's TimescaleDB builds (TSJ_EDITION): built from the full source
#: with the Timescale License half, or Debian's apache-only package
EDITIONS = ("timescale", "apache")
#: the PostgreSQL majors the embedded server can run (TSJ_PG_MAJOR): 18 as production
#: does (Debian forky's packages), 17 (Debian 13's)
PG_MAJORS = (17, 18)
_VERSION = re.compile(r"\d+\.\d+\.\d+(-[a-z0-9.-]+)?")

_PASSWORD_IN_TEXT = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)([^@\s]+)(@)")
_PASSWORD_KV = re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with every password of a connection URL or conninfo replaced by ``***``."""
    text = _PASSWORD_IN_TEXT.sub(r"\1***\3", text)
    return _PASSWORD_KV.sub(r"\1***", text)


def validate_url(url: str, *, what: str = "database URL") -> str:
    """``url`` as a PostgreSQL URL; a one-line error naming the fix otherwise.

    A libpq key=value string (``host=... port=... dbname=... user=...``), which psycopg and
    every PostgreSQL tool accept, is returned as the equivalent URL, so the rest of tsj
    handles one form. A value that does not parse is never echoed: it may hold a password.
    """
    if "://" not in url and "=" in url:
        return conninfo_url(url, what=what)
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres") or not (parts.hostname or _query_host(parts.query)):
        raise ConfigError(f"{what} {_unparsed(url)} is not a PostgreSQL URL; "
                          "use postgresql://USER@HOST:PORT/DBNAME or host=HOST port=PORT "
                          "dbname=DBNAME user=USER")
    try:
        _ = parts.port  # raises on a bad port
    except ValueError:
        raise ConfigError(f"{what} '{_shown(url)}' has a bad port; use a number 1-65535") from None
    return url


def conninfo_url(conninfo: str, *, what: str = "database URL") -> str:
    """The postgresql:// URL equivalent to a libpq ``key=value`` connection string."""
    try:
        params = {k: str(v) for k, v in conninfo_to_dict(conninfo).items() if v is not None}
    except Exception:  # psycopg.ProgrammingError, with the string in its message
        raise ConfigError(f"{what} {_unparsed(conninfo)} is not a valid key=value connection "
                          "string; use host=HOST port=PORT dbname=DBNAME user=USER, "
                          "or postgresql://USER@HOST:PORT/DBNAME") from None
    host, port = params.pop("host", ""), params.pop("port", "")
    if not host and not params.get("hostaddr"):
        raise ConfigError(f"{what} (a key=value connection string) names no host; add "
                          "host=HOST (e.g. host=127.0.0.1)")
    if "," in host or "," in port or host.startswith("/"):
        params["host"] = host  # several hosts or a socket directory: libpq's query form
        if port:
            params["port"] = port
        host = port = ""
    user, password = params.pop("user", ""), params.pop("password", None)
    userinfo = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
    netloc = (userinfo + "@" if userinfo else "") + _bracketed(host) + (":" + port if port else "")
    url = urlunsplit(("postgresql", netloc, "/" + quote(params.pop("dbname", ""), safe=""),
                      urlencode(params), ""))
    if port and not port.isdigit():
        raise ConfigError(f"{what} has a bad port {port!r}; use a number 1-65535")
    return url


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _query_host(query: str) -> bool:
    return any(k == "host" and v for k, v in parse_qsl(query))


def _shown(url: str) -> str:
    """What of a parsed URL may be printed: scheme, host, port and path, no user or password."""
    p = urlsplit(url)
    host = p.netloc.rsplit("@", 1)[-1]
    return f"{p.scheme}://{host}{p.path}"


def _unparsed(value: str) -> str:
    """How to name a value that failed to parse without showing it (it may hold a password)."""
    p = urlsplit(value)
    if p.scheme and p.netloc and " " not in value:
        return f"'{_shown(value)}'"
    return f"(the {len(value)}-character value, not shown as it may hold a password)"


def with_database(url: str, dbname: str) -> str:
    """``url`` pointing at another database on the same server."""
    p = urlsplit(url)
    return urlunsplit((p.scheme, p.netloc, "/" + dbname, p.query, p.fragment))


def with_params(url: str, **params: str) -> str:
    """``url`` with query parameters added or replaced (``sslmode``, ``passfile``...)."""
    p = urlsplit(url)
    query = dict(parse_qsl(p.query))
    query.update(params)
    return urlunsplit((p.scheme, p.netloc, p.path, urlencode(query), p.fragment))


def read_dotenv(path: Path) -> dict[str, str]:
    """The ``KEY=value`` lines of a ``.env`` file (missing file: nothing)."""
    if not path.is_file():
        return {}
    return {k: v for k, v in dotenv_values(path).items() if v is not None}


@dataclass(frozen=True)
class Settings:
    """Where tsj connects and keeps its files. Secrets stay out of ``repr``."""

    target_url: str | None = field(default=None, repr=False)
    source_url: str | None = field(default=None, repr=False)
    #: the target through a pooler (TSJ_POOLER_URL); None: tsj's own PgBouncer when the
    #: target is the embedded server, else no pooler comparison
    pooler_url: str | None = field(default=None, repr=False)
    #: TSJ_LIVE_URL: where the live run goes (its server must run the job scheduler);
    #: None: tsj's own 'live' instance, the one embedded server with the scheduler on
    live_url: str | None = field(default=None, repr=False)
    home: Path = PROJECT_DIR / ".tsj"
    pool_min: int = 2
    pool_max: int = 20
    port: int | None = None  # the embedded server's port; None: chosen once, remembered
    edition: str = "timescale"  # the embedded server's TimescaleDB: 'timescale' or 'apache'
    pg_major: int = PRODUCTION.pg_major  # TSJ_PG_MAJOR: the embedded server's PostgreSQL
    #: TSJ_TIMESCALEDB_VERSION: the release the timescale edition builds (its vendored
    #: archive, else GitHub's of that tag); production's unless told otherwise
    timescaledb_version: str = PRODUCTION.timescaledb
    timescaledb_source: str | None = None  # an archive to build instead (path/URL)
    apt_mirror: str | None = None  # TSJ_APT_MIRROR: a Debian mirror for the server's packages
    progress: bool = True  # TSJ_NO_PROGRESS=1: no progress bars (CI, logs)

    def __post_init__(self) -> None:
        if self.pool_min < 0 or self.pool_max < 1 or self.pool_min > self.pool_max:
            raise ValueError(
                f"pool size min={self.pool_min} max={self.pool_max} is invalid; "
                "need 0 <= min <= max and max >= 1"
            )
        if self.edition not in EDITIONS:
            raise ConfigError(f"TSJ_EDITION={self.edition!r} is unknown; set it to 'timescale' "
                              "(built from source, the default) or 'apache' (Debian's build)")
        if self.pg_major not in PG_MAJORS:
            raise ConfigError(f"TSJ_PG_MAJOR={self.pg_major} is not one the embedded server "
                              f"runs; set it to {PG_MAJORS[-1]} (production's) or "
                              f"{PG_MAJORS[0]}")
        if not _VERSION.fullmatch(self.timescaledb_version):
            raise ConfigError(f"TSJ_TIMESCALEDB_VERSION={self.timescaledb_version!r} is not a "
                              f"TimescaleDB version; use e.g. {PRODUCTION.timescaledb} "
                              "(production's) or 2.29.2")
        for name, what in (("target_url", "target URL"), ("source_url", "source URL"),
                           ("pooler_url", "pooler URL"), ("live_url", "live URL")):
            if url := getattr(self, name):  # key=value strings become URLs here, once
                object.__setattr__(self, name, validate_url(url, what=what))

    def __repr__(self) -> str:
        return (
            f"Settings(target={self.describe('target')!r}, source={self.describe('source')!r}, "
            f"home={str(self.home)!r}, pool_min={self.pool_min}, pool_max={self.pool_max}, "
            f"edition={self.edition!r}, pg_major={self.pg_major}, "
            f"timescaledb_version={self.timescaledb_version!r})"
        )

    def describe(self, name: str) -> str:
        """A printable description of connection ``name``: redacted URL or 'embedded'."""
        url = {"target": self.target_url, "source": self.source_url,
               "pooler": self.pooler_url, "live": self.live_url}.get(name)
        return redact(url) if url else "embedded"

    @classmethod
    def load(
        cls,
        *,
        env: dict[str, str] | None = None,
        dotenv: Path | None = PROJECT_DIR / ".env",
        **overrides: object,
    ) -> Settings:
        """Settings from ``.env`` then the environment (which wins), then ``overrides``."""
        merged = read_dotenv(dotenv) if dotenv else {}
        merged.update(os.environ if env is None else env)
        target = next((merged[v] for v in TARGET_VARS if merged.get(v)), None)
        values: dict[str, object] = {
            "target_url": target,
            "source_url": merged.get(SOURCE_VAR) or None,
            "pooler_url": merged.get(POOLER_VAR) or None,
            "live_url": merged.get(LIVE_VAR) or None,
            "home": Path(merged[HOME_VAR]) if merged.get(HOME_VAR) else PROJECT_DIR / ".tsj",
            "pool_min": _int(merged, "TSJ_POOL_MIN", 2),
            "pool_max": _int(merged, "TSJ_POOL_MAX", 20),
            "port": _int(merged, "TSJ_PORT", 0) or None,
            "edition": (merged.get("TSJ_EDITION") or "timescale").strip().lower(),
            "pg_major": _int(merged, "TSJ_PG_MAJOR", PRODUCTION.pg_major),
            "timescaledb_version": (merged.get("TSJ_TIMESCALEDB_VERSION") or "").strip()
                                   or PRODUCTION.timescaledb,
            "timescaledb_source": merged.get("TSJ_TIMESCALEDB_SOURCE") or None,
            "apt_mirror": (merged.get("TSJ_APT_MIRROR") or "").rstrip("/") or None,
            "progress": merged.get("TSJ_NO_PROGRESS") != "1",
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]


def child_env(settings: Settings) -> dict[str, str]:
    """This process's environment with ``settings``' URLs in tsj's variables.

    What a child process (a notebook's kernel) is started with, so that it resolves the
    connection names to the same URLs (``--target`` included) while this process's own
    environment stays as it was.
    """
    env = dict(os.environ)
    for var, url in ((TARGET_VARS[0], settings.target_url), (SOURCE_VAR, settings.source_url),
                     (POOLER_VAR, settings.pooler_url), (LIVE_VAR, settings.live_url)):
        if url:
            env[var] = url
    return env


def progress_enabled(settings: Settings) -> bool:
    """Whether to draw progress bars: on a terminal, unless TSJ_NO_PROGRESS=1."""
    return sys.stderr.isatty() and settings.progress


def _int(env: dict[str, str], key: str, default: int) -> int:
    raw = env.get(key)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{key}={raw!r} is not a whole number; set it to e.g. {default}") from None
