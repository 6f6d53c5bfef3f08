"""The work loop of the loader and the migration: complete results, the first failure wins."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tsj_lab.parallel import run_parallel


class Sessions:
    """Counts the sessions workers open and close (connections, in the real callers)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.opened = self.closed = self.failed = 0

    @contextmanager
    def open(self) -> Iterator[int]:
        with self.lock:
            self.opened += 1
            number = self.opened
        try:
            yield number
        except BaseException:  # a connection rolls back here: it must see the error
            with self.lock:
                self.failed += 1
            raise
        finally:
            with self.lock:
                self.closed += 1


def test_results_are_complete_and_in_item_order() -> None:
    sessions, done, threads = Sessions(), [], set()

    def step(session: int, item: int) -> int:
        threads.add(threading.current_thread().name)
        time.sleep(0.001 * (item % 3))  # finish out of order
        return item * item

    items = list(range(50))
    out = run_parallel(items, step, session=sessions.open, workers=4, name="tsj-test",
                       on_done=lambda item, result: done.append((item, result)))
    assert out == [i * i for i in items]
    assert sorted(done) == [(i, i * i) for i in items]  # progress saw every item once
    assert sessions.opened == sessions.closed == len(threads) <= 4  # one session per worker
    assert sessions.failed == 0
    assert all(name.startswith("tsj-test") for name in threads)


def test_the_first_failure_stops_the_others_and_is_raised() -> None:
    sessions, started = Sessions(), []
    early_failed = threading.Event()

    def step(session: int, item: str) -> str:
        started.append(item)
        if item == "early":
            early_failed.set()
            raise RuntimeError("early")
        if item == "late":  # fails too, but only after "early" did
            assert early_failed.wait(5)
            raise RuntimeError("late")
        time.sleep(0.01)
        return item

    items = ["late", "early", *(f"item {i}" for i in range(200))]
    with pytest.raises(RuntimeError, match=r"^early$"):
        run_parallel(items, step, session=sessions.open, workers=2)
    assert len(started) < 10  # the other worker stopped at its item's edge
    assert sessions.opened == sessions.closed == 2  # every session closed before the raise
    assert sessions.failed == 2  # each failing step's error went through its session


def test_a_session_that_fails_to_open_is_raised() -> None:
    @contextmanager
    def refused() -> Iterator[None]:
        raise ConnectionError("connection refused")
        yield

    with pytest.raises(ConnectionError, match="refused"):
        run_parallel([1, 2, 3], lambda s, i: i, session=refused, workers=2)


def test_nothing_to_do_opens_no_session() -> None:
    sessions = Sessions()
    assert run_parallel([], lambda s, i: i, session=sessions.open, workers=4) == []
    assert sessions.opened == 0


@pytest.mark.parametrize("workers", [0, 65])
def test_a_bad_worker_count_fails_up_front(workers: int) -> None:
    with pytest.raises(ValueError, match=f"workers={workers} is out of range"):
        run_parallel([1], lambda s, i: i, session=Sessions().open, workers=workers)
