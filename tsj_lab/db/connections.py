"""Which database a connection name means: 'target', 'source', 'pooler' or a URL.

The connections layer sits above the server layer (:mod:`tsj_lab.server`), so it can
answer with the embedded server: with no URL configured, that server is started on
demand and its databases are the answer. :func:`resolve` gives the
:class:`~tsj_lab.db.endpoint.Endpoint` the CLI and notebooks hand down.
"""

from __future__ import annotations

from ..config import CONNECTION_NAMES, Settings, validate_url
from ..errors import ConfigError
from ..server.cluster import SOURCE_DB, TARGET_DB, Embedded, from_settings
from ..server.pooler import PgBouncer
from .endpoint import Endpoint


def resolve(name: str = "target", *, settings: Settings) -> Endpoint:
    """The :class:`Endpoint` of connection ``name`` ('target', 'source', 'pooler', 'live', or
    a URL): resolved here once, then handed down; its capabilities are probed on first use."""
    url = resolve_url(name, settings=settings)
    return Endpoint(url, name=name if name in CONNECTION_NAMES else "database")


def resolve_url(name: str = "target", *, settings: Settings) -> str:
    """The URL of connection ``name`` ('target', 'source', 'pooler', 'live', or a URL).

    With no URL configured, the embedded server is started on demand: its ``tsj`` database
    (with TimescaleDB) is the target and its plain ``tsj_source`` database the source;
    'pooler' is then tsj's own PgBouncer in transaction mode in front of the target, and
    'live' the ``tsj`` database of tsj's 'live' instance, which runs the job scheduler.
    """
    if "://" in name or "=" in name:  # a URL or a libpq key=value string
        return validate_url(name)
    if name not in CONNECTION_NAMES:
        raise ValueError(f"connection name {name!r} is unknown; use one of {CONNECTION_NAMES}")
    if name == "live":
        return settings.live_url or live_server(settings).start()
    if name == "pooler":
        url = pooler_url(settings=settings)
        if url is None:
            raise ConfigError("no pooler is configured for the target; set TSJ_POOLER_URL to "
                              "its pooler URL (e.g. Supabase's port 6543)")
        return url
    url = settings.target_url if name == "target" else settings.source_url
    if url:
        return url
    server = from_settings(settings)
    server.start()
    return server.url(TARGET_DB if name == "target" else SOURCE_DB)


#: the embedded instance with TimescaleDB's job scheduler on (the live run's), and its
#: workers: one scheduler per database, a job each for the story's six policies, a spare
LIVE_INSTANCE = "live"
LIVE_WORKERS = 8


def live_server(settings: Settings) -> Embedded:
    """tsj's own server for the live run: the embedded edition and binaries, its own data
    folder (instance 'live'), the scheduler on. The bench's instance never runs it."""
    return from_settings(settings, instance=LIVE_INSTANCE, background_workers=LIVE_WORKERS)


def pooler_url(*, settings: Settings) -> str | None:
    """The target through a pooler: TSJ_POOLER_URL, else tsj's PgBouncer in front of the
    embedded server (started on demand), else None (a configured target, no pooler named).
    """
    if settings.pooler_url:
        return settings.pooler_url
    if settings.target_url:
        return None
    return PgBouncer(from_settings(settings)).start()
