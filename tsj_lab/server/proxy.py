"""A TCP proxy that adds network latency, to replay a cloud round trip on localhost.

Every chunk read from one side is delivered to the other side ``rtt_ms / 2`` later, in
order, so a request/response exchange costs one extra ``rtt_ms``: the story's cloud had
about 300 ms. It models delay only (no bandwidth cap, no loss): what dominates a tick
fetch from a distant region. The proxy runs an asyncio loop in a daemon thread so that
blocking clients (psycopg, ADBC) can use it from ordinary code::

    with LatencyProxy("127.0.0.1", 5432, rtt_ms=150) as proxy:
        psycopg.connect(proxy.url(url))

It counts what crosses it (:meth:`LatencyProxy.stats`): connections opened and *turns*,
the request/response exchanges a client waited for. A turn starts when the client sends
after having received (or sends first on a connection) and counts once the server's
answer reaches the client, so a connect with SCRAM is 3 turns (startup, two SASL steps), a
pipeline of statements 1, a COPY into the server 2 (the statement, then the data and its
end) and a closing Terminate, which nobody answers, none. The figures count round trips
instead of guessing them from the time they took.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

log = logging.getLogger("tsj_lab")

_CHUNK = 1 << 16


@dataclass
class Link:
    """What crossed one proxied connection: turns (see the module doc) and bytes."""

    turns: int = 0
    bytes_up: int = 0  # client -> server
    bytes_down: int = 0  # server -> client
    #: the client spoke since the server's last delivery to it: the next delivery ends a turn
    _asked: bool = field(default=False, repr=False)
    #: the client has spoken and nothing was delivered to it since
    _spoke: bool = field(default=False, repr=False)

    def sent(self, n: int) -> None:
        """The client's bytes reached the proxy."""
        self.bytes_up += n
        if not self._spoke:
            self._asked, self._spoke = True, True

    def delivered(self, n: int) -> None:
        """The server's bytes reached the client."""
        self.bytes_down += n
        self._spoke = False
        if self._asked:
            self.turns += 1
            self._asked = False


@dataclass(frozen=True)
class ProxyStats:
    """The proxy's counters so far: connections opened and turns, in total and per
    connection (in the order they were opened)."""

    connections: int
    turns: int
    bytes_up: int
    bytes_down: int
    per_connection: tuple[int, ...]  # turns of each connection

    def __sub__(self, before: ProxyStats) -> ProxyStats:
        """What happened between ``before`` and this snapshot."""
        k = before.connections
        per = tuple(t - (before.per_connection[i] if i < k else 0)
                    for i, t in enumerate(self.per_connection))
        return ProxyStats(self.connections - k, self.turns - before.turns,
                          self.bytes_up - before.bytes_up, self.bytes_down - before.bytes_down,
                          per)


class LatencyProxy:
    """Forwards ``listen_host:port`` to ``upstream``, adding ``rtt_ms`` per round trip."""

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        rtt_ms: float,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
    ) -> None:
        if rtt_ms < 0:
            raise ValueError(f"proxy rtt_ms={rtt_ms} is negative; use 0 or more")
        self.upstream = (upstream_host, int(upstream_port))
        self.rtt_ms = float(rtt_ms)
        self.host = listen_host
        self.port = listen_port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._links: list[Link] = []

    @classmethod
    def for_url(cls, url: str, *, rtt_ms: float) -> LatencyProxy:
        """A proxy in front of the server that ``url`` names."""
        parts = urlsplit(url)
        return cls(parts.hostname or "127.0.0.1", parts.port or 5432, rtt_ms=rtt_ms)

    def url(self, url: str) -> str:
        """``url`` with host and port replaced by the proxy's (user, database, query kept)."""
        parts = urlsplit(url)
        userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        netloc = f"{userinfo}{self.host}:{self.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    def stats(self) -> ProxyStats:
        """The counters so far (a snapshot; subtract two for what happened between)."""
        links = list(self._links)
        return ProxyStats(len(links), sum(k.turns for k in links),
                          sum(k.bytes_up for k in links), sum(k.bytes_down for k in links),
                          tuple(k.turns for k in links))

    def start(self) -> LatencyProxy:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._serve, self.host, self.port)
                )
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:  # reported to start()'s caller below
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name=f"tsj-proxy-{self.rtt_ms:g}ms",
                                        daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        log.info("latency proxy %s:%s -> %s:%s at %g ms RTT", self.host, self.port,
                 *self.upstream, self.rtt_ms)
        return self

    def close(self) -> None:
        loop = self._loop
        if loop is None:
            return

        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = None

    def __enter__(self) -> LatencyProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(*self.upstream)
        except OSError as exc:
            log.warning("latency proxy: upstream %s:%s refused: %s", *self.upstream, exc)
            client_w.close()
            return
        delay = self.rtt_ms / 2000.0
        me = asyncio.current_task()
        assert me is not None
        self._connections.add(me)
        link = Link()
        self._links.append(link)
        try:
            await asyncio.gather(_pipe(client_r, up_w, delay, on_read=link.sent),
                                 _pipe(up_r, client_w, delay, on_write=link.delivered),
                                 return_exceptions=True)
        except asyncio.CancelledError:
            # close() cancels live connections; ending quietly keeps asyncio from
            # logging the cancellation as an error of the connection callback.
            up_w.close()
            client_w.close()
        finally:
            self._connections.discard(me)


def _ignore(n: int) -> None:
    pass


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float, *,
                on_read: Callable[[int], None] = _ignore,
                on_write: Callable[[int], None] = _ignore) -> None:
    """Copy ``reader`` to ``writer``, each chunk held back ``delay`` seconds from its arrival.

    A reader task stamps chunks as they arrive and a writer task releases them when due,
    so a chunk's delay does not add to the next one's (latency, not a throughput cap).
    ``on_read`` hears of each chunk as it arrives, ``on_write`` as it is delivered.
    """
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def read() -> None:
        try:
            while data := await reader.read(_CHUNK):
                on_read(len(data))
                queue.put_nowait((time.monotonic() + delay, data))
        finally:  # EOF or a reset: let the writer finish what it holds, then close
            queue.put_nowait((time.monotonic() + delay, b""))

    async def write() -> None:
        while True:
            due, data = await queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                break
            on_write(len(data))
            writer.write(data)
            await writer.drain()

    reading = asyncio.ensure_future(read())
    try:
        await write()
    finally:
        reading.cancel()
        try:
            writer.close()
        except Exception:  # the other side may already be gone
            pass
