"""Work items over a few threads, each with its own session (a connection, or a pair).

The loader (:func:`tsj_lab.data.generate.write_parts`) and the migration
(:func:`tsj_lab.migrate.migrate`) share it: a worker opens its session once, takes items
one at a time from a common queue, and stops at an item edge as soon as another worker
has failed, so the first failure is what the caller sees.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from tqdm.auto import tqdm


S = TypeVar("S")  # a worker's session
T = TypeVar("T")  # a work item
R = TypeVar("R")  # an item's result

MAX_WORKERS = 64


def run_parallel(
    items: Sequence[T],
    step: Callable[[S, T], R],
    *,
    session: Callable[[], AbstractContextManager[S]],
    workers: int,
    name: str = "tsj-work",
    on_done: Callable[[T, R], None] | None = None,
) -> list[R]:
    """``step(session, item)`` for every item over at most ``workers`` threads; the results
    in the order of ``items``.

    Each thread enters one ``session()`` for all its items (none is opened when there is
    nothing to do). The first exception, in a worker or the caller's Ctrl-C, stops every
    worker after its current item (an item is never cut in half) and is raised once all
    have stopped. ``on_done(item, result)`` runs in the worker after each item (progress).
    """
    check_workers(workers)
    pending = iter(enumerate(items))
    results: dict[int, R] = {}
    errors: list[BaseException] = []
    lock, failed = threading.Lock(), threading.Event()

    def fail(exc: BaseException) -> None:
        with lock:
            if not any(e is exc for e in errors):
                errors.append(exc)
        failed.set()

    def work() -> None:
        try:
            with session() as sess:
                while not failed.is_set():
                    with lock:
                        taken = next(pending, None)
                    if taken is None:
                        return
                    i, item = taken
                    try:
                        result = step(sess, item)
                    except BaseException as exc:
                        fail(exc)  # at once: the others stop while this session closes
                        raise  # through the session, which rolls back on an error
                    with lock:
                        results[i] = result
                    if on_done is not None:
                        on_done(item, result)
        except BaseException as exc:  # raised in the caller's thread below
            fail(exc)

    _run_threads(work, min(workers, len(items)), name=name, failed=failed)
    if errors:
        raise errors[0]
    return [results[i] for i in range(len(items))]


def check_workers(workers: int) -> None:
    """A worker count of 1-:data:`MAX_WORKERS`, or ValueError (before anything connects)."""
    if not 1 <= workers <= MAX_WORKERS:
        raise ValueError(f"workers={workers} is out of range; use 1-{MAX_WORKERS}")


def _run_threads(work: Callable[[], None], count: int, *, name: str,
                 failed: threading.Event) -> None:
    """``count`` threads of ``work``, waited for; Ctrl-C asks them to stop, then waits too."""
    if not count:
        return
    with ThreadPoolExecutor(max_workers=count, thread_name_prefix=name) as ex:
        futures = [ex.submit(work) for _ in range(count)]
        try:
            wait(futures)
        except BaseException:  # Ctrl-C: workers stop after their current item
            failed.set()
            raise


def progress_bar(items: Any = None, *, desc: str, unit: str, total: int | None = None,
                 progress: bool | None = None, **kwargs: Any) -> Any:
    """tsj's one progress bar (tqdm; a context manager closing it), over ``items`` or a
    ``total`` updated by hand. ``progress`` None: a bar only on a terminal (the CLI passes
    :func:`tsj_lab.config.progress_enabled`, which also honours TSJ_NO_PROGRESS=1)."""
    enabled = sys.stderr.isatty() if progress is None else progress
    return tqdm(items, total=total, unit=unit, desc=desc, disable=not enabled, **kwargs)


def rows_bar(total: int, *, desc: str, progress: bool | None = None) -> Any:
    """A rows/s and ETA progress bar over ``total`` rows (see :func:`progress_bar`)."""
    return progress_bar(total=total, desc=desc, unit="rows", progress=progress, unit_scale=True)
