"""The latency proxy: it forwards bytes intact and adds the configured round trip."""

from __future__ import annotations

import socket
import statistics
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from tsj_lab.server.proxy import LatencyProxy


@pytest.fixture
def echo() -> Iterator[tuple[str, int]]:
    """A tiny TCP echo server on localhost."""
    srv = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            threading.Thread(target=_echo, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield srv.getsockname()
    stop.set()
    thread.join(2)
    srv.close()


def _echo(conn: socket.socket) -> None:
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)


def _round_trips(addr: tuple[str, int], *, n: int, payload: bytes = b"tick") -> list[float]:
    """Milliseconds of ``n`` echo round trips on one connection (the first is a warm-up)."""
    out = []
    with socket.create_connection(addr) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(n + 1):
            t0 = time.perf_counter()
            s.sendall(payload)
            got = b""
            while len(got) < len(payload):
                got += s.recv(65536)
            out.append((time.perf_counter() - t0) * 1000.0)
            assert got == payload
    return out[1:]


@pytest.mark.parametrize("rtt_ms", [0, 80])
def test_proxy_adds_the_configured_round_trip(echo, rtt_ms: float) -> None:
    direct = statistics.median(_round_trips(echo, n=7))
    with LatencyProxy(*echo, rtt_ms=rtt_ms) as proxy:
        proxied = statistics.median(_round_trips((proxy.host, proxy.port), n=7))
    # A correctness check of the delay, not a speed goal: generous for a busy machine.
    assert proxied - direct == pytest.approx(rtt_ms, abs=15)


def test_proxy_forwards_large_payloads_intact(echo) -> None:
    payload = bytes(range(256)) * 2000  # 512 KB: many chunks each way
    with LatencyProxy(*echo, rtt_ms=10) as proxy:
        (ms,) = _round_trips((proxy.host, proxy.port), n=1, payload=payload)
    assert ms >= 10


def test_proxy_in_front_of_postgres(target_url: str) -> None:
    with LatencyProxy.for_url(target_url, rtt_ms=40) as proxy:
        url = proxy.url(target_url)
        assert proxy.port != int(target_url.split(":")[2].split("/")[0])
        with psycopg.connect(url, autocommit=True) as conn:
            t0 = time.perf_counter()
            assert conn.execute("SELECT 41 + 1").fetchone() == (42,)
            assert (time.perf_counter() - t0) * 1000.0 >= 40


def test_proxy_url_keeps_user_database_and_options() -> None:
    proxy = LatencyProxy("127.0.0.1", 5432, rtt_ms=0, listen_port=6543)
    got = proxy.url("postgresql://tsj@127.0.0.1:5432/tsj?passfile=/x/pgpass&sslmode=disable")
    assert got == "postgresql://tsj@127.0.0.1:6543/tsj?passfile=/x/pgpass&sslmode=disable"


def test_negative_rtt_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        LatencyProxy("127.0.0.1", 5432, rtt_ms=-1)


def _wait_for(check, timeout: float = 2.0) -> None:
    """The proxy's thread counts a delivery just after writing it: give it a moment."""
    end = time.monotonic() + timeout
    while not check() and time.monotonic() < end:
        time.sleep(0.01)


def test_proxy_counts_connections_and_turns(echo) -> None:
    with LatencyProxy(*echo, rtt_ms=0) as proxy:
        _round_trips((proxy.host, proxy.port), n=4)  # 5 exchanges with the warm-up
        _wait_for(lambda: proxy.stats().turns == 5)
        before = proxy.stats()
        with socket.create_connection((proxy.host, proxy.port)) as s:
            s.sendall(b"a")
            s.sendall(b"b")  # sent before the answer: the same turn
            got = b""
            while len(got) < 2:
                got += s.recv(16)
            s.sendall(b"unanswered")  # a turn only once answered
            while len(got) < 12:
                got += s.recv(16)
        _wait_for(lambda: proxy.stats().connections == 2 and proxy.stats().turns >= 7)
        stats = proxy.stats()
    assert (before.connections, before.turns, before.per_connection) == (1, 5, (5,))
    assert (stats.connections, stats.turns, stats.per_connection) == (2, 7, (5, 2))
    assert (stats - before).per_connection == (0, 2)
    assert stats.bytes_up == stats.bytes_down == 5 * 4 + 12


def test_proxy_counts_a_postgres_exchange(target_url: str) -> None:
    with LatencyProxy.for_url(target_url, rtt_ms=0) as proxy:
        with psycopg.connect(proxy.url(target_url), autocommit=True) as conn:
            connected = proxy.stats()
            conn.execute("SELECT 1")
            with conn.pipeline():
                for i in range(5):
                    conn.execute("SELECT %s::int", [i])
            after = proxy.stats()
        _wait_for(lambda: False, timeout=0.1)
        closed = proxy.stats()
    assert connected.connections == 1 and connected.turns >= 2  # startup and auth
    assert (after - connected).turns == 2  # one statement, one pipeline
    assert closed.turns == after.turns  # the Terminate is not answered
