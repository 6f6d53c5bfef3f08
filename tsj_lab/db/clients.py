"""Many clients at once through the configured pooling: AC6's measurement.

Validation (``tsj validate``, AC6) and the benchmark's concurrency workload share it. The
clients hold connections of one psycopg_pool pool (tsj's built-in pooling) to the URL as
given, which may itself be a pooler (PgBouncer, Supavisor, a cloud pooler). Every client
first takes a connection and runs one query while all of them hold one ("connected at
once"), then runs its queries, each in its own short transaction that also asks
``pg_backend_pid()``: a transaction-mode pooler hands each transaction a server connection
of its own pool, so the distinct backend pids are the server connections the clients used.
Direct, that is one per client; through a pooler, at most its pool size.

A failure carries its real cause: the first error a client met, or, when the pool could not
open every connection, the error a fresh connection gets (``too many clients already``,
PgBouncer's ``no more connections allowed (max_client_conn)``).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from .. import queries
from ..config import redact, validate_url
from .conn import connect, pooling, scalar
from .endpoint import Endpoint
from ..errors import ConnectError
from ..stats import percentile

log = logging.getLogger("tsj_lab")


@dataclass(frozen=True)
class ClientRun:
    """What ``clients`` concurrent clients did: both sides of the pooling, and the figures."""

    clients: int  # clients started
    connected: int  # clients that held a connection at the same moment
    server_connections: int  # distinct server backends that served their transactions
    queries: int  # timed statements that succeeded
    errors: int  # statements or connections that failed
    wall_s: float  # from the start signal to the last client's end
    latencies_ms: list[float] = field(repr=False)  # each timed statement, pool wait included
    rows: list[int] = field(repr=False)  # rows each timed statement returned
    via: str = "direct"  # 'direct' or 'pooler' (the URL reaches the server through one)
    cause: str | None = None  # the first failure, one line, no password

    @property
    def ok(self) -> bool:
        return self.errors == 0 and self.connected == self.clients and self.queries > 0

    @property
    def qps(self) -> float:
        return self.queries / self.wall_s if self.wall_s > 0 else math.nan

    @property
    def p95_ms(self) -> float:
        return percentile(self.latencies_ms, 95) if self.latencies_ms else math.nan

    def describe(self) -> str:
        """One line with both sides: clients, server connections, errors, q/s, p95."""
        side = ("through a pooler" if self.via == "pooler" else "direct")
        text = (f"{self.connected} of {self.clients} clients connected at once ({side}), "
                f"{self.server_connections} server connections, {self.queries} queries, "
                f"{self.errors} errors")
        if self.queries:
            text += f", {self.qps:,.0f} q/s, p95 {self.p95_ms:.1f} ms"
        return text + (f"; first failure: {self.cause}" if self.cause else "")


Work = Callable[[int], tuple[str, dict[str, Any]]]


def run(url: Endpoint | str, *, clients: int, queries_per_client: int = 10, work: Work | None = None,
        timeout: float = 30.0) -> ClientRun:
    """``clients`` clients at once on a pool of as many connections to ``url``.

    ``work(i)`` gives the i-th timed statement and its parameters (default: the backend
    pid query). Failures are counted and the first one kept as ``cause``; nothing raises
    but a bad argument.
    """
    if clients < 1 or queries_per_client < 1:
        raise ValueError(f"clients={clients} and queries_per_client={queries_per_client} "
                         "must be at least 1")
    if timeout <= 0:
        raise ValueError(f"timeout={timeout} must be positive seconds")
    conninfo = validate_url(url) if isinstance(url, str) else url.url
    work = work or (lambda i: (queries.text("schema_catalog.backend_pid"), {}))
    try:
        via = "pooler" if pooling(url).pooled else "direct"
        kwargs: dict[str, Any] = {"connect_timeout": 10}
        if not pooling(url).prepares:
            kwargs["prepare_threshold"] = None
    except ConnectError as exc:
        return _failed(clients, str(exc))
    pool = ConnectionPool(conninfo, min_size=clients, max_size=clients, timeout=timeout,
                          name=f"tsj-clients-{clients}", open=False, kwargs=kwargs)
    # The pool logs every refused connection attempt, again and again while it retries;
    # the run reports the cause once, in its result.
    pool_log = logging.getLogger("psycopg.pool")
    level = pool_log.level
    pool_log.setLevel(logging.ERROR)
    try:
        pool.open(wait=False)
        opened = _wait_open(pool, clients, timeout)
        if opened < clients:  # asked while the pool still holds its connections
            return _failed(clients, _refusal(url, opened, clients, timeout), via=via,
                           connected=opened)
        return _drive(pool, clients=clients, per_client=queries_per_client, work=work,
                      timeout=timeout, via=via)
    finally:
        pool.close()
        pool_log.setLevel(level)


def _drive(pool: ConnectionPool, *, clients: int, per_client: int, work: Work,
           timeout: float, via: str) -> ClientRun:
    held = threading.Barrier(clients, timeout=timeout)  # all hold a connection at once
    go = threading.Barrier(clients + 1, timeout=timeout)  # then the clock starts
    lock = threading.Lock()
    pid_sql = queries.text("schema_catalog.backend_pid")
    seen: dict[str, Any] = {"connected": 0, "pids": set(), "lat": [], "rows": [],
                            "errors": 0, "cause": None}

    def fail(exc: BaseException) -> None:
        with lock:
            seen["errors"] += 1
            if seen["cause"] is None:
                seen["cause"] = _one_line(exc)

    def client(k: int) -> None:
        try:
            with pool.connection(timeout=timeout) as conn:
                pid = scalar(conn, pid_sql)
                conn.commit()  # idle, not in a transaction: a pooler may lend the server out
                with lock:
                    seen["connected"] += 1
                    seen["pids"].add(pid)
                held.wait()
                go.wait()
                for j in range(per_client):
                    stmt, params = work(k * per_client + j)
                    t0 = time.perf_counter()
                    try:
                        n = len(conn.execute(stmt, params).fetchall())
                        ms = (time.perf_counter() - t0) * 1000.0
                        pid = scalar(conn, pid_sql)
                        conn.commit()
                    except psycopg.OperationalError:
                        raise
                    except psycopg.Error as exc:
                        conn.rollback()
                        fail(exc)
                        continue
                    with lock:
                        seen["lat"].append(ms)
                        seen["rows"].append(n)
                        seen["pids"].add(pid)
        except threading.BrokenBarrierError:
            held.abort()
            go.abort()
        except Exception as exc:  # a client that failed is the finding here, not a crash
            fail(exc)
            held.abort()
            go.abort()

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    try:
        go.wait()
    except threading.BrokenBarrierError:
        pass
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    cause = seen["cause"]
    if cause is None and seen["connected"] < clients:
        cause = (f"only {seen['connected']} of {clients} clients held a connection within "
                 f"{timeout:g} s")
    return ClientRun(clients, seen["connected"], len(seen["pids"]), len(seen["lat"]),
                     seen["errors"], wall, seen["lat"], seen["rows"], via, cause)


def _wait_open(pool: ConnectionPool, clients: int, timeout: float) -> int:
    """How many connections the pool opened, waiting up to ``timeout`` for all of them.

    Not ``pool.wait()``: it closes the pool on timeout, and the connections it holds are
    what makes one more connection show the refusal's cause.
    """
    deadline = time.monotonic() + timeout
    while True:
        opened = int(pool.get_stats().get("pool_available", 0))
        if opened >= clients or time.monotonic() > deadline:
            return min(opened, clients)
        time.sleep(0.05)


def _refusal(url: Endpoint | str, opened: int, clients: int, timeout: float) -> str:
    """Why the pool stopped short: what a fresh connection is told, with the fix."""
    try:
        connect(url, autocommit=True).close()
    except ConnectError as exc:
        said = str(exc).split(": ", 1)[-1].rsplit("; check the URL", 1)[0]
        return f"the pool opened {opened} of {clients} connections; one more was refused: {said}"
    return f"the pool opened {opened} of {clients} connections in {timeout:g} s"


def _failed(clients: int, cause: str, *, via: str = "direct", connected: int = 0) -> ClientRun:
    return ClientRun(clients, connected, 0, 0, max(1, clients - connected), 0.0, [], [], via,
                     redact(cause))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return redact(f"{type(exc).__name__}: {text}")[:300]
