"""The connections layer: a database as an :class:`Endpoint` (resolved once, probed once),
connections and pools on it, the capability probe, fast DataFrame reads, concurrent
clients, and the resolution of connection names ('target', 'source', 'pooler').

``conn`` (connect, pool, probe, one/scalar), ``endpoint`` (the Endpoint type), ``frames``
(named queries as column arrays, Arrow for ad-hoc SQL, SQLAlchemy) with ``columns``
(binary arrays into numpy), ``clients`` (N clients at once, AC6) and ``connections``
(names to Endpoints, starting the embedded server on demand) are its modules; the names
most phases use are importable from here.
"""

from __future__ import annotations

from .conn import (COUNTS, Capabilities, Params, Pooling, Statement, capabilities, connect,
                   connection, explain, one, pool, pooling, probe, probe_url, scalar, shown,
                   url_of, url_text, using)
from .endpoint import Endpoint, as_endpoint
from .frames import close_frames, engine, read_frame, read_query

__all__ = ["COUNTS", "Capabilities", "Endpoint", "Params", "Pooling", "Statement", "as_endpoint",
           "capabilities", "close_frames", "connect", "connection", "engine", "explain", "one",
           "pool", "pooling", "probe", "probe_url", "read_frame", "read_query", "scalar",
           "shown", "url_of", "url_text", "using"]
