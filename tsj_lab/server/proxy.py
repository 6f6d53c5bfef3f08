"""A TCP proxy that adds network latency, to replay a cloud round trip on localhost.

Every chunk read from one side is delivered to the other side ``rtt_ms / 2`` later, in
order, so a request/response exchange costs one extra ``rtt_ms``: the story's cloud had
about 300 ms. It models delay only (no bandwidth cap, no loss): what dominates a tick
fetch from a distant region. The proxy runs an asyncio loop in a daemon thread so that
blocking clients (psycopg, ADBC) can use it from ordinary code::

    with LatencyProxy("127.0.0.1", 5432, rtt_ms=150) as proxy:
        psycopg.connect(proxy.url(url))
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from urllib.parse import urlsplit, urlunsplit

log = logging.getLogger("tsj_lab")

_CHUNK = 1 << 16


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
        try:
            await asyncio.gather(_pipe(client_r, up_w, delay), _pipe(up_r, client_w, delay),
                                 return_exceptions=True)
        except asyncio.CancelledError:
            # close() cancels live connections; ending quietly keeps asyncio from
            # logging the cancellation as an error of the connection callback.
            up_w.close()
            client_w.close()
        finally:
            self._connections.discard(me)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Copy ``reader`` to ``writer``, each chunk held back ``delay`` seconds from its arrival.

    A reader task stamps chunks as they arrive and a writer task releases them when due,
    so a chunk's delay does not add to the next one's (latency, not a throughput cap).
    """
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def read() -> None:
        try:
            while data := await reader.read(_CHUNK):
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
